//! The `prune_scores` op: its keys, its tables, how it runs — one spilling DataFusion query
//! over logged model outputs, or proxy-model passes over feature rows.

use datafusion::arrow::datatypes::Schema;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;

use super::masks::{self, ScoresOutput};
use super::proxy::ProxyParams;
use super::runs::{self, Aggregated};
use super::{
    table_names, KeepSize, Mask, MaskMode, MissingRuns, ProxyScoresOp, PruneScoresParams,
    ScoreKind, ScoresInput,
};
use crate::keys::Keys;
use crate::operators::op::{Execution, Op, OpKind, Passes, Query, StageContext, StageTables};
use crate::operators::{Operator, OutputTable, TableDecl};
use crate::Result;

/// The registry's entry.
pub const KIND: OpKind = OpKind {
    name: "prune_scores",
    parse: |keys| Ok(Box::new(parse(keys)?)),
    functions: crate::udf::scores::functions,
};

/// The per-id scratch table of a stage, in its scratch directory.
const BY_ID: &str = "by_id.arrow";

fn by_id(ctx: &StageContext<'_>) -> std::path::PathBuf {
    ctx.scratch
        .expect("prune_scores stages have scratch space")
        .join(BY_ID)
}

impl Op for PruneScoresParams {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn table_names(&self) -> Vec<&'static str> {
        table_names(self)
    }

    fn tables(&self, input: &Schema) -> Result<Vec<TableDecl>> {
        PruneScoresParams::tables(self, input)
    }

    fn columns(&self) -> &[String] {
        PruneScoresParams::columns(self)
    }

    fn column_key(&self, column: &str) -> &'static str {
        self.key_of(column)
    }

    fn check_schema(&self, input: &Schema) -> Result<()> {
        PruneScoresParams::check_schema(self, input)
    }

    fn seed(&self) -> Option<u64> {
        Some(self.seed)
    }

    fn needs_scratch(&self) -> bool {
        true
    }

    fn execution(&self) -> Execution<'_> {
        match self.proxy() {
            Some(_) => Execution::Passes(self),
            None => Execution::Query(self),
        }
    }
}

/// The `scores` table streamed from its query, `stats` first among the in-memory tables.
fn stage_tables(scores: ScoresOutput, more: Vec<OutputTable>, rows_read: u64) -> StageTables {
    let mut tables = vec![OutputTable::new("stats", scores.stats)];
    tables.extend(more);
    StageTables {
        streamed: Some(("scores", scores.scores)),
        tables,
        rows_read,
    }
}

impl Passes for PruneScoresParams {
    fn operator(&self, ctx: &StageContext<'_>) -> Result<Box<dyn Operator>> {
        Ok(Box::new(ProxyScoresOp::new(
            self.clone(),
            ctx.schema,
            &by_id(ctx),
        )?))
    }

    /// The proxy's runs are in the per-id table: rank and mask them.
    fn finish<'a>(
        &'a self,
        op: Box<dyn Operator>,
        session: &'a SessionContext,
        ctx: &'a StageContext<'a>,
    ) -> BoxFuture<'a, Result<StageTables>> {
        Box::pin(async move {
            let rows_read = op.rows_read();
            let training = op.finish()?;
            let agg = Aggregated {
                runs: self.proxy().map_or(1, |x| x.seeds as u64),
                spilled_bytes: 0,
            };
            let scores = masks::finish(session, &by_id(ctx), self, agg).await?;
            Ok(stage_tables(scores, training, rows_read))
        })
    }
}

impl Query for PruneScoresParams {
    /// Scores every logged row and averages by id (on the cluster, with `--cluster`; the
    /// per-id rows come back into the local scratch file), then ranks and masks locally.
    fn run<'a>(
        &'a self,
        on: &'a SessionContext,
        local: &'a SessionContext,
        frame: DataFrame,
        ctx: &'a StageContext<'a>,
    ) -> BoxFuture<'a, Result<StageTables>> {
        Box::pin(async move {
            let by_id = by_id(ctx);
            let runs = runs::aggregate(on, frame, self, &by_id).await?;
            let scores = masks::finish(local, &by_id, self, runs).await?;
            let rows = scores.rows;
            Ok(stage_tables(scores, Vec::new(), rows))
        })
    }

    fn describe(&self, input: &str) -> String {
        format!("scoring {input} and averaging by id")
    }

    fn on_cluster(&self) -> &'static str {
        "scored and averaged by id on the cluster"
    }
}

/// Reads a `prune_scores` stage's keys (and its `proxy` table).
pub fn parse(keys: &mut Keys<'_>) -> Result<PruneScoresParams> {
    let id = keys.required_string("id")?;
    let label = keys.string("label")?.unwrap_or_else(|| "label".into());
    let logits = keys.string("logits")?;
    let probs = keys.string("probs")?;
    let features = match keys.table_value("features") {
        Some(_) => Some(keys.string_list("features")?),
        None => None,
    };
    let proxy = match keys.table("proxy")? {
        None => None,
        Some(proxy_keys) => Some(parse_proxy(proxy_keys)?),
    };
    let run = keys.string("run")?;
    let embedding = keys.string("embedding")?;
    let given = [
        ("logits", logits.is_some()),
        ("probs", probs.is_some()),
        ("features", features.is_some()),
    ];
    let named: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
    let has_proxy = proxy.is_some();
    let input = match (logits, probs, features) {
        (Some(c), None, None) => ScoresInput::Logits(c),
        (None, Some(c), None) => ScoresInput::Probs(c),
        (None, None, Some(columns)) => ScoresInput::Features {
            columns,
            proxy: proxy.unwrap_or_default(),
        },
        _ => {
            return Err(keys.error(
                if named.is_empty() { "logits" } else { named[1] },
                format!(
                    "give exactly one of `logits`, `probs` (logged model outputs) or \
                     `features` (train a proxy model){}",
                    if named.is_empty() {
                        String::new()
                    } else {
                        format!("; got {}", named.join(" and "))
                    }
                ),
            ))
        }
    };
    let proxy_mode = matches!(input, ScoresInput::Features { .. });
    if has_proxy && !proxy_mode {
        return Err(keys.error(
            "proxy",
            "a proxy model needs `features = [...]` to train on",
        ));
    }
    if proxy_mode {
        if run.is_some() {
            return Err(keys.error(
                "run",
                "proxy mode makes its own runs (the proxy's `seeds`); `run` is for logged outputs",
            ));
        }
        if embedding.is_some() {
            return Err(keys.error(
                "embedding",
                "proxy mode computes exact GraNd from its own model; `embedding` is for logged outputs",
            ));
        }
    }
    let mut p = PruneScoresParams::new(id, label, input, run, embedding);
    if let Some(m) = keys.choice("missing_runs", &["error", "average-available"])? {
        p.missing_runs = if m == "error" {
            MissingRuns::Error
        } else {
            MissingRuns::AverageAvailable
        };
    }
    if let Some(score) = keys.choice("score", &["el2n", "grand"])? {
        p.score = if score == "grand" {
            ScoreKind::Grand
        } else {
            ScoreKind::El2n
        };
        if p.score == ScoreKind::Grand && !proxy_mode && p.embedding.is_none() {
            return Err(keys.error(
                "score",
                "\"grand\" needs `embedding` (the penultimate features) or proxy mode",
            ));
        }
    }
    if let Some(k) = keys.unsigned("classes")? {
        if k < 2 {
            return Err(keys.error("classes", format!("must be at least 2, got {k}")));
        }
        p.classes = Some(k as usize);
    }
    if let Some(seed) = keys.unsigned("seed")? {
        p.seed = seed;
    }
    let fraction = keys.float("keep_fraction")?;
    let count = keys.unsigned("keep_count")?;
    let mode = keys.choice("mode", &MaskMode::NAMES)?;
    let mode_given = mode.is_some();
    let offset = keys.unsigned("offset")?;
    let size = match (fraction, count) {
        (Some(_), Some(_)) => {
            return Err(keys.error(
                "keep_count",
                "give `keep_fraction` or `keep_count`, not both",
            ))
        }
        (Some(f), None) if !(f > 0.0 && f <= 1.0) => {
            return Err(keys.error("keep_fraction", format!("must be in (0, 1], got {f}")))
        }
        (Some(f), None) => Some(KeepSize::Fraction(f)),
        (None, Some(0)) => return Err(keys.error("keep_count", "must be at least 1")),
        (None, Some(k)) => Some(KeepSize::Count(k)),
        (None, None) => None,
    };
    let mode = match (mode.as_deref(), offset) {
        (Some("offset"), Some(o)) => MaskMode::Offset(o),
        (Some("offset"), None) => {
            return Err(keys.error(
                "offset",
                "mode = \"offset\" needs `offset` (how many of the highest scores to skip)",
            ))
        }
        (_, Some(_)) => return Err(keys.error("offset", "only applies with mode = \"offset\"")),
        (Some("class_balanced"), None) => MaskMode::ClassBalanced,
        (Some("random"), None) => MaskMode::Random,
        (Some(_) | None, None) => MaskMode::KeepMax,
    };
    match size {
        Some(size) => p.mask = Some(Mask { size, mode }),
        None if mode_given => {
            return Err(keys.error("mode", "a mask needs `keep_fraction` or `keep_count`"))
        }
        None => {}
    }
    Ok(p)
}

fn parse_proxy(mut keys: Keys<'_>) -> Result<ProxyParams> {
    let mut p = ProxyParams::default();
    if let Some(h) = keys.unsigned("hidden")? {
        if h == 0 {
            return Err(keys.error(
                "hidden",
                "must be at least 1 (omit it for logistic regression)",
            ));
        }
        p.hidden = Some(h as usize);
    }
    let positive = |keys: &mut Keys<'_>, key: &'static str| -> Result<Option<u64>> {
        match keys.unsigned(key)? {
            Some(0) => Err(keys.error(key, "must be at least 1")),
            v => Ok(v),
        }
    };
    if let Some(e) = keys.unsigned("epochs")? {
        p.epochs = e as u32;
    }
    if let Some(s) = positive(&mut keys, "seeds")? {
        p.seeds = s as u32;
    }
    if let Some(b) = positive(&mut keys, "batch_size")? {
        p.batch_size = b as usize;
    }
    if let Some(b) = positive(&mut keys, "shuffle_buffer")? {
        p.shuffle_buffer = b as usize;
    }
    if let Some(lr) = keys.float("learning_rate")? {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(keys.error("learning_rate", format!("must be positive, got {lr}")));
        }
        p.learning_rate = lr;
    }
    keys.finish()?;
    Ok(p)
}
