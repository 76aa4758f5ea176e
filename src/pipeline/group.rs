//! The scan of one input group: which stages share a scan ([`group_by_input`]), and the
//! passes over the input that feed them ([`run_group`]) — ordered (file order, several
//! partitions decoding at once) or through the out-of-core shuffle, with the
//! `duplicate_keys = "error"` checks riding on the first pass and a progress line per pass.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::stats::Precision;
use datafusion::dataframe::DataFrame;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, StatisticsArgs, StatisticsContext};
use datafusion::prelude::SessionContext;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::ordered;
use super::run::{describe_input, stage_context, Interrupt};
use super::shuffle::{Spilled, Spiller};
use super::spec::{Input, OpSpec, PipelineSpec, StageSpec};
use crate::operators::coordinated_sketch::unique::KeyHashes;
use crate::operators::coordinated_sketch::{CoordinatedSketchParams, DuplicateKeys};
use crate::operators::{Operator, PassInfo, PassKind};
use crate::progress::{event, Progress, ProgressMode, Value};
use crate::{Error, Result};

/// How a group's rows are ordered: as read, or shuffled with this seed and memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shuffle {
    pub(super) seed: u64,
    pub(super) memory: u64,
}

/// All stages reading one input in the same order, scanned together.
pub(super) struct Group<'a> {
    pub(super) input: Input,
    pub(super) shuffle: Option<Shuffle>,
    pub(super) stages: Vec<&'a StageSpec>,
    /// Union of the stages' columns, in first-use order: the scan's projection.
    pub(super) columns: Vec<String>,
    /// A single stage that runs as one DataFusion query ([`OpSpec::is_query`]), not a scan.
    pub(super) query: bool,
    /// A stage that shares its scan with no other (query and incremental stages).
    pub(super) alone: bool,
    /// Rows of the same key added up or averaged before the stages see them.
    pub(super) aggregate: Option<&'a CoordinatedSketchParams>,
}

/// Groups stages by input, ordered so that a group comes after the stages it reads from
/// (the spec's stages are already in dependency order).
pub(super) fn group_by_input(spec: &PipelineSpec) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for stage in &spec.stages {
        let shuffle = stage
            .op
            .shuffle()
            .map(|(seed, memory)| Shuffle { seed, memory });
        // Query stages and incremental ones (which read only some files) scan alone.
        let query = stage.op.is_query();
        let alone = query || stage.op.incremental();
        let aggregate = match &stage.op {
            OpSpec::CoordinatedSketch(p) if p.duplicate_keys != DuplicateKeys::Error => Some(p),
            _ => None,
        };
        let group = match groups.iter_mut().find(|g| {
            !alone
                && !g.alone
                && aggregate.is_none()
                && g.aggregate.is_none()
                && g.input == stage.input
                && g.shuffle == shuffle
        }) {
            Some(g) => g,
            None => {
                groups.push(Group {
                    input: stage.input.clone(),
                    shuffle,
                    stages: Vec::new(),
                    columns: Vec::new(),
                    query,
                    alone,
                    aggregate,
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group.stages.push(stage);
        for c in stage.op.columns() {
            if !group.columns.contains(c) {
                group.columns.push(c.clone());
            }
        }
    }
    // A group joined by a later stage may now sit before its producer: order by producer.
    let position = |g: &Group<'_>| {
        g.input
            .stages()
            .iter()
            .map(|stage| {
                1 + spec
                    .stages
                    .iter()
                    .position(|s| &s.name == stage)
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    };
    groups.sort_by_key(position);
    groups
}

/// Ends the key checks fed by a group's first scan: a repeated hash (a repeated key, or rarely a
/// collision) runs the exact check, which names the key.
async fn finish_key_checks(
    hashes: Vec<KeyHashes>,
    key_checks: &[(&StageSpec, &str)],
    spec: &PipelineSpec,
    frame: &DataFrame,
    mode: ProgressMode,
) -> Result<()> {
    for (h, (stage, key)) in hashes.into_iter().zip(key_checks) {
        let context = |e: Error| e.context(stage_context(spec, stage));
        let spilled = h.spilled_bytes();
        if spilled > 0 {
            event(
                mode,
                "key_check_spilled",
                &format!(
                    "stage `{}`: the duplicate-key check of `{key}` held more hashes than half \
                     of [pipeline] memory and spilled {:.1} MB of them to disk",
                    stage.name,
                    spilled as f64 / 1e6
                ),
                &[
                    ("stage", Value::from(stage.name.as_str())),
                    ("spilled_bytes", Value::from(spilled)),
                ],
            );
        }
        if h.repeats().map_err(context)? {
            check_unique_keys(frame, key).await.map_err(context)?;
        }
    }
    Ok(())
}

/// Fails, naming a key, when a key appears on more than one row (a spilling group-by over the
/// key column alone).
pub(crate) async fn check_unique_keys(frame: &DataFrame, key: &str) -> Result<()> {
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::prelude::{col, lit};
    let k = col(datafusion::common::Column::from_name(key));
    let dup = frame
        .clone()
        .select(vec![k.clone()])?
        .aggregate(vec![k], vec![count(lit(1)).alias("n")])?
        .filter(col("n").gt(lit(1)))?
        .limit(0, Some(1))?
        .collect()
        .await?;
    if let Some(b) = dup.iter().find(|b| b.num_rows() > 0) {
        let key_value = datafusion::arrow::util::display::array_value_to_string(b.column(0), 0)?;
        let n = datafusion::arrow::util::display::array_value_to_string(b.column(1), 0)?;
        return Err(Error::Input(format!(
            "key `{key}` = {key_value} appears on {n} rows; a sketch's key identifies one row. \
             Set duplicate_keys = \"sum\" or \"mean\" to combine the rows of a key first"
        )));
    }
    Ok(())
}

/// Runs every pass the group's operators ask for; see the module docs.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_group(
    ctx: &SessionContext,
    cluster: Option<&SessionContext>,
    spec: &PipelineSpec,
    group: &Group<'_>,
    frame: DataFrame,
    ops: &mut [(&StageSpec, Box<dyn Operator>)],
    key_checks: &[(&StageSpec, &str)],
    mode: ProgressMode,
    interrupt: &Interrupt,
    tmp_root: &Path,
) -> Result<()> {
    let what = describe_input(spec, &group.input);
    let label = match &group.input {
        Input::Source(name) => format!("source `{name}`"),
        other => other.to_string(),
    };
    // Every pass reads the input in file order, several partitions decoding at once
    // (`ordered`) — on the cluster when there is one: the executors decode, the batches stream
    // here in partition order. A physical plan is planned afresh for every scan: some (CSV,
    // repartitioned SQL) yield nothing when executed a second time.
    let plan = frame.clone().create_physical_plan().await?;
    let (mut rows, estimated_bytes) = statistics(&plan);
    let schema = plan.schema();
    let state = ordered::ordered_state(cluster.unwrap_or(ctx), &plan, rows, ordered::CHUNK_BYTES);
    let task_ctx = Arc::new(TaskContext::from(&state));
    let scan = async || -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let plan = state.create_physical_plan(frame.logical_plan()).await?;
        let stream = ordered::in_file_order(
            plan,
            Arc::clone(&task_ctx),
            ordered::decoders(),
            ordered::READ_AHEAD_BYTES,
        );
        Ok(stream.map(|b| b.map_err(Error::from)).boxed())
    };
    let mut spilled: Option<Spilled> = None;
    let mut scans = 0u32;
    // The `duplicate_keys = "error"` checks ride on the first scan of the whole input.
    let mut key_hashes = key_checks
        .iter()
        .map(|(stage, key)| {
            KeyHashes::new(&schema, key, spec.memory / 2, tmp_root)
                .map_err(|e| e.context(stage_context(spec, stage)))
        })
        .collect::<Result<Vec<_>>>()?;
    let feed_checks = |hashes: &mut Vec<KeyHashes>, batch: &RecordBatch| -> Result<()> {
        for (h, (stage, _)) in hashes.iter_mut().zip(key_checks) {
            h.update(batch)
                .map_err(|e| e.context(stage_context(spec, stage)))?;
        }
        Ok(())
    };
    loop {
        let wanting: Vec<(usize, PassKind)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, (_, op))| op.next_pass().map(|k| (i, k)))
            .collect();
        if !key_hashes.is_empty() && scans > 0 {
            let hashes = std::mem::take(&mut key_hashes);
            finish_key_checks(hashes, key_checks, spec, &frame, mode).await?;
        }
        if wanting.is_empty() {
            return Ok(());
        }
        if let (Some(shuffle), None) = (group.shuffle, &spilled) {
            // Spill pass: also serves every pass that does not care about the order.
            let fed: Vec<usize> = wanting
                .iter()
                .filter(|(_, k)| *k == PassKind::AnyOrder)
                .map(|(i, _)| *i)
                .collect();
            scans += 1;
            let info = PassInfo {
                rows,
                order_randomised: false,
                scan: scans,
            };
            let doing = pass_names(ops, &fed);
            each(ops, &fed, &what, |op| op.begin_pass(&info))?;
            let mut spiller = Spiller::new(
                tmp_root,
                schema.clone(),
                shuffle.seed,
                shuffle.memory,
                estimated_bytes,
            )?;
            let pass = format!("{label}, spilling for the shuffle{doing}");
            drive(
                scan().await?,
                rows,
                &pass,
                mode,
                interrupt,
                &what,
                |batch| {
                    spiller.push(batch)?;
                    feed_checks(&mut key_hashes, batch)?;
                    each(ops, &fed, &what, |op| op.update(batch))
                },
            )
            .await?;
            let done = spiller.finish()?;
            rows = Some(done.rows());
            spilled = Some(done);
            each(ops, &fed, &what, |op| op.end_pass())?;
            continue;
        }
        let fed: Vec<usize> = wanting.iter().map(|(i, _)| *i).collect();
        if rows.is_none() && fed.iter().any(|&i| ops[i].1.needs_row_count()) {
            scans += 1;
            rows = Some(frame.clone().count().await? as u64);
        }
        scans += 1;
        let declared =
            matches!(&group.input, Input::Source(n) if spec.shuffled_sources.contains(n));
        let info = PassInfo {
            rows,
            order_randomised: spilled.is_some() || declared,
            scan: scans,
        };
        let doing = pass_names(ops, &fed);
        each(ops, &fed, &what, |op| op.begin_pass(&info))?;
        let (pass, what, stream) = match (&spilled, scans) {
            (Some(s), _) => (
                format!("{label}, shuffled (scan {scans}{doing})"),
                format!("{what}, read in shuffled order: row numbers are shuffled positions"),
                futures::stream::iter(s.replay()).boxed(),
            ),
            (None, 1) if doing.is_empty() => (label.clone(), what.clone(), scan().await?),
            (None, n) => (
                format!("{label} (scan {n}{doing})"),
                what.clone(),
                scan().await?,
            ),
        };
        let seen = drive(stream, rows, &pass, mode, interrupt, &what, |batch| {
            feed_checks(&mut key_hashes, batch)?;
            each(ops, &fed, &what, |op| op.update(batch))
        })
        .await?;
        // A full pass counts the rows: a later stream-order pass needs no COUNT(*) scan.
        rows.get_or_insert(seen);
        each(ops, &fed, &what, |op| op.end_pass())?;
    }
}

/// What the stages at `fed` do in their next pass, for the progress line — `": NAME — `a`,
/// `b`; NAME2 — `c`"`, each description once with the stages doing it — or `""` when none
/// says (single-pass stages).
fn pass_names(ops: &[(&StageSpec, Box<dyn Operator>)], fed: &[usize]) -> String {
    let mut doing: Vec<(String, Vec<String>)> = Vec::new();
    for &i in fed {
        let Some(name) = ops[i].1.pass_name() else {
            continue;
        };
        let stage = format!("`{}`", ops[i].0.name);
        match doing.iter_mut().find(|(n, _)| *n == name) {
            Some((_, stages)) => stages.push(stage),
            None => doing.push((name, vec![stage])),
        }
    }
    if doing.is_empty() {
        return String::new();
    }
    let doing: Vec<String> = doing
        .iter()
        .map(|(name, stages)| format!("{name} — {}", stages.join(", ")))
        .collect();
    format!(": {}", doing.join("; "))
}

/// The input's exact row count (Parquet footers give it for free; estimates after a filter
/// are not used: they would show a wrong 100 % and size blocks wrongly) and estimated bytes.
pub(super) fn statistics(plan: &Arc<dyn ExecutionPlan>) -> (Option<u64>, Option<u64>) {
    let stats = StatisticsContext::new()
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .ok();
    let rows = stats.as_ref().and_then(|s| match s.num_rows {
        Precision::Exact(n) => Some(n as u64),
        _ => None,
    });
    let bytes = stats
        .as_ref()
        .and_then(|s| s.total_byte_size.get_value().map(|b| *b as u64));
    (rows, bytes)
}

/// Applies `f` to the operators at `which`, naming the stage in any error.
pub(super) fn each(
    ops: &mut [(&StageSpec, Box<dyn Operator>)],
    which: &[usize],
    what: &str,
    mut f: impl FnMut(&mut dyn Operator) -> Result<()>,
) -> Result<()> {
    for &i in which {
        let (stage, op) = &mut ops[i];
        f(op.as_mut()).map_err(|e| e.context(format!("stage `{}` ({what})", stage.name)))?;
    }
    Ok(())
}

/// Streams one pass through `on_batch`, with progress and Ctrl-C handling; returns the rows
/// it saw.
pub(super) async fn drive(
    mut stream: BoxStream<'_, Result<RecordBatch>>,
    total: Option<u64>,
    label: &str,
    mode: ProgressMode,
    interrupt: &Interrupt,
    what: &str,
    mut on_batch: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<u64> {
    let mut rows = 0u64;
    let mut progress = Progress::new(label.to_string(), total, mode);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = interrupt.wait() => return Err(Error::Interrupted),
        };
        let Some(batch) = next else { break };
        let batch = batch.map_err(|e| match e {
            Error::DataFusion(_) | Error::Arrow(_) => Error::Input(format!("reading {what}: {e}")),
            other => other,
        })?;
        on_batch(&batch)?;
        rows += batch.num_rows() as u64;
        progress.inc(
            batch.num_rows() as u64,
            batch.get_array_memory_size() as u64,
        );
    }
    progress.finish();
    Ok(rows)
}
