//! From one row per id to the output tables: the checks that need every id (numbers of
//! classes, missing runs, repeated ids, runs that disagree on a label), the rank, the prune
//! mask, and the `stats` row.
//!
//! Ranking follows Paul et al. (arXiv:2107.07075, §2 and the pruning experiments): sort by
//! score ascending, ties broken by id; `keep_max` keeps the highest-scoring ("hardest") ids,
//! `offset` skips the `offset` highest and keeps the next ones, `class_balanced` keeps the
//! highest of every class with each class keeping its share (largest-remainder rounding, so
//! the shares add up to the requested count exactly), and `random` keeps the ids with the
//! smallest `uniform_hash(id, seed)` — a seeded, reproducible control. The rank and the masks
//! are window functions over DataFusion sorts, which spill under the memory limit.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt64Type};
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;

use super::runs::Aggregated;
use super::sql::{read_by_id, Registered};
use super::{KeepSize, Mask, MaskMode, MissingRuns, PruneScoresParams, ScoresInput};
use crate::{Error, Result};

static STATS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("ids", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("runs", DataType::UInt32, false),
        Field::new("ids_missing_runs", DataType::UInt64, false),
        Field::new("missing_runs", DataType::Utf8, false),
        Field::new("classes", DataType::UInt32, false),
        Field::new("score", DataType::Utf8, false),
        Field::new("mask", DataType::Utf8, true),
        Field::new("offset", DataType::UInt64, true),
        Field::new("kept", DataType::UInt64, false),
        Field::new("seed", DataType::UInt64, false),
        Field::new("spilled_bytes", DataType::UInt64, false),
    ]))
});

/// The `stats` table.
pub fn stats_schema() -> SchemaRef {
    Arc::clone(&STATS)
}

/// The outputs of a `prune_scores` stage, ready to be written.
pub struct ScoresOutput {
    /// The `scores` table as a plan (it can be as large as the input's ids: written streaming).
    pub scores: DataFrame,
    pub stats: RecordBatch,
    /// Input rows behind the scores.
    pub rows: u64,
}

/// Checks the per-id table at `by_id`, ranks and masks it. `agg.runs` is the number of
/// distinct runs in the input (seeds in proxy mode).
pub async fn finish(
    ctx: &SessionContext,
    by_id: &Path,
    p: &PruneScoresParams,
    agg: Aggregated,
) -> Result<ScoresOutput> {
    let runs = agg.runs;
    let frame = read_by_id(ctx, by_id).await?;
    let table = Registered::new(ctx, "prune_by_id", frame)?;
    let t = table.name.clone();
    let summary = ctx
        .sql(&format!(
            "SELECT count(*) AS ids, sum(rows) AS rows, min(k_min) AS k_lo, max(k_max) AS k_hi, \
             sum(CASE WHEN rows > runs THEN 1 ELSE 0 END) AS repeated, \
             sum(CASE WHEN scored < rows THEN 1 ELSE 0 END) AS unscored, \
             sum(CASE WHEN label IS DISTINCT FROM label_max THEN 1 ELSE 0 END) AS mixed, \
             sum(CASE WHEN runs < {runs} THEN 1 ELSE 0 END) AS missing FROM {t}"
        ))
        .await?
        .collect()
        .await?;
    let get = |name: &str| -> Result<u64> {
        let b = &summary[0];
        let col = cast(b.column_by_name(name).expect("selected"), &DataType::UInt64)?;
        let col = col.as_primitive::<UInt64Type>();
        Ok(if col.is_null(0) { 0 } else { col.value(0) })
    };
    let ids = get("ids")?;
    if ids == 0 {
        return Err(Error::Input(
            "the input has no rows: nothing to score".into(),
        ));
    }
    let example = |cond: String| example(ctx, &t, cond);
    if get("unscored")? > 0 {
        let (id, ..) = example("scored < rows".into()).await?;
        return Err(Error::Input(format!(
            "{} ids have rows with a null {} or label (e.g. id {id}): every row needs both",
            get("unscored")?,
            output_name(p)
        )));
    }
    if get("repeated")? > 0 {
        let (id, runs_of, rows, ..) = example("rows > runs".into()).await?;
        return Err(Error::Input(match &p.run {
            Some(r) => format!(
                "id {id} has {rows} rows over {runs_of} distinct values of `{r}`: an (id, run) \
                 pair repeats ({} ids affected)",
                get("repeated")?
            ),
            None => format!(
                "id {id} appears {rows} times ({} ids repeat): without a `run` column every id \
                 must appear once — name the column that tells runs apart with `run = \"…\"`",
                get("repeated")?
            ),
        }));
    }
    if get("mixed")? > 0 {
        let (id, ..) = example("label IS DISTINCT FROM label_max".into()).await?;
        return Err(Error::Input(format!(
            "id {id} has different labels in different runs ({} ids affected): the label of \
             an example must be the same in every run",
            get("mixed")?
        )));
    }
    let (k_lo, k_hi) = (get("k_lo")?, get("k_hi")?);
    if k_lo != k_hi {
        let (a, ..) = example(format!("k_min = {k_lo}")).await?;
        let (b, ..) = example(format!("k_max = {k_hi}")).await?;
        return Err(Error::Input(format!(
            "rows have different numbers of classes: id {a} has {k_lo}, id {b} has {k_hi}; \
             every {} must have the same length",
            output_name(p)
        )));
    }
    if let Some(k) = p.classes {
        if k as u64 != k_lo {
            return Err(Error::Input(format!(
                "the stage says classes = {k}, but the {} have {k_lo} entries",
                output_name(p)
            )));
        }
    }
    let missing = get("missing")?;
    if missing > 0 && p.missing_runs == MissingRuns::Error {
        let (id, runs_of, ..) = example(format!("runs < {runs}")).await?;
        return Err(Error::Input(format!(
            "{missing} of {ids} ids are missing from some of the {runs} runs (e.g. id {id} is in \
             {runs_of}); their scores would be averaged over fewer runs. Set \
             missing_runs = \"average-available\" to accept that (the `runs` column says how \
             many each id has), or score complete runs only"
        )));
    }

    let score = p.score.as_str();
    // Ranked in one sort: the output is ordered by the rank window's own order, which
    // DataFusion sees is already met (`ORDER BY rank` would be a second sort of every id),
    // and `rn` stays an unsigned integer (no cast through a decimal).
    let order = format!("{score} ASC, id ASC");
    let mut windows = format!("row_number() OVER (ORDER BY {order}) AS rn");
    let (keep, kept) = match p.mask {
        None => ("true".to_string(), ids),
        Some(mask) => {
            let k = keep_count(mask, ids)?;
            let keep = match mask.mode {
                MaskMode::KeepMax => format!("rn > {}", ids - k),
                MaskMode::Offset(o) => {
                    if o + k > ids {
                        return Err(Error::Input(format!(
                            "offset {o} + {k} kept ids exceed the {ids} ids of the input"
                        )));
                    }
                    format!("rn > {} AND rn <= {}", ids - o - k, ids - o)
                }
                MaskMode::Random => {
                    windows.push_str(&format!(
                        ", row_number() OVER (ORDER BY uniform_hash(id, {}), id) AS rr",
                        p.seed
                    ));
                    format!("rr <= {k}")
                }
                MaskMode::ClassBalanced => {
                    windows.push_str(&format!(
                        ", row_number() OVER (PARTITION BY label ORDER BY {score} DESC, \
                         id DESC) AS rc"
                    ));
                    let counts = class_counts(ctx, &t).await?;
                    let quotas = class_quotas(&counts, k);
                    let arms: String = counts
                        .iter()
                        .zip(&quotas)
                        .map(|((label, _), q)| format!(" WHEN {label} THEN {q}"))
                        .collect();
                    format!("rc <= CASE label{arms} ELSE 0 END")
                }
            };
            (keep, k)
        }
    };
    let scores = ctx
        .sql(&format!(
            "SELECT id, label, el2n, el2n_std, grand, grand_std, runs, \
             rn - CAST(1 AS BIGINT UNSIGNED) AS rank, {keep} AS keep \
             FROM (SELECT *, {windows} FROM {t}) ORDER BY {order}"
        ))
        .await?;
    let counts = Counts {
        ids,
        rows: get("rows")?,
        runs,
        missing,
        classes: k_lo,
        kept,
        spilled_bytes: agg.spilled_bytes,
    };
    let stats = stats_batch(p, &counts)?;
    Ok(ScoresOutput {
        scores,
        stats,
        rows: get("rows")?,
    })
}

/// The first id (by id) meeting `cond`, with its runs, rows and numbers of classes.
async fn example(
    ctx: &SessionContext,
    t: &str,
    cond: String,
) -> Result<(String, u64, u64, u64, u64)> {
    let q = format!(
        "SELECT CAST(id AS VARCHAR) AS id, runs, rows, k_min, k_max FROM {t} \
         WHERE {cond} ORDER BY id LIMIT 1"
    );
    let b = ctx.sql(&q).await?.collect().await?;
    let b = b
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| Error::Input(format!("internal: no example row for `{cond}`")))?;
    let u = |i: usize| -> Result<u64> {
        let c = cast(b.column(i), &DataType::UInt64)?;
        let c = c.as_primitive::<UInt64Type>();
        Ok(if c.is_null(0) { 0 } else { c.value(0) })
    };
    let id = cast(b.column(0), &DataType::Utf8)?;
    Ok((
        id.as_string::<i32>().value(0).to_string(),
        u(1)?,
        u(2)?,
        u(3)?,
        u(4)?,
    ))
}

fn output_name(p: &PruneScoresParams) -> &'static str {
    match p.input {
        ScoresInput::Logits(_) => "logits",
        ScoresInput::Probs(_) => "probabilities",
        ScoresInput::Features { .. } => "model outputs",
    }
}

/// The number of ids a mask keeps out of `ids`.
fn keep_count(mask: Mask, ids: u64) -> Result<u64> {
    match mask.size {
        KeepSize::Fraction(f) => Ok((f * ids as f64).round() as u64),
        KeepSize::Count(k) if k > ids => Err(Error::Input(format!(
            "keep_count = {k} exceeds the {ids} ids of the input"
        ))),
        KeepSize::Count(k) => Ok(k),
    }
}

/// `(label, ids)` per class, by label.
async fn class_counts(ctx: &SessionContext, t: &str) -> Result<Vec<(i64, u64)>> {
    let batches = ctx
        .sql(&format!(
            "SELECT CAST(label AS BIGINT) AS label, count(*) AS n FROM {t} \
             GROUP BY label ORDER BY label"
        ))
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let labels = b.column(0).as_primitive::<Int64Type>();
        let n = cast(b.column(1), &DataType::UInt64)?;
        let n = n.as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            if labels.is_null(i) {
                return Err(Error::Input(
                    "class_balanced: some ids have a null label".into(),
                ));
            }
            out.push((labels.value(i), n.value(i)));
        }
    }
    Ok(out)
}

/// Each class's share of `k` (proportional to its size), rounded by largest remainder so the
/// shares sum to `k` exactly; ties go to the smaller label. No class gets more than it has.
pub fn class_quotas(counts: &[(i64, u64)], k: u64) -> Vec<u64> {
    let total: u64 = counts.iter().map(|c| c.1).sum();
    if total == 0 {
        return vec![0; counts.len()];
    }
    let exact: Vec<f64> = counts
        .iter()
        .map(|c| k as f64 * c.1 as f64 / total as f64)
        .collect();
    let mut quotas: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut left = k - quotas.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for i in order.into_iter().cycle() {
        if left == 0 {
            break;
        }
        if quotas[i] < counts[i].1 {
            quotas[i] += 1;
            left -= 1;
        }
    }
    quotas
}

/// The numbers of the `stats` row.
struct Counts {
    ids: u64,
    rows: u64,
    runs: u64,
    missing: u64,
    classes: u64,
    kept: u64,
    spilled_bytes: u64,
}

fn stats_batch(p: &PruneScoresParams, c: &Counts) -> Result<RecordBatch> {
    let source = match p.input {
        ScoresInput::Logits(_) => "logits",
        ScoresInput::Probs(_) => "probs",
        ScoresInput::Features { .. } => "proxy",
    };
    let missing_policy = match p.missing_runs {
        MissingRuns::Error => "error",
        MissingRuns::AverageAvailable => "average-available",
    };
    let offset = match p.mask {
        Some(Mask {
            mode: MaskMode::Offset(o),
            ..
        }) => Some(o),
        _ => None,
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![source])),
        Arc::new(UInt64Array::from(vec![c.ids])),
        Arc::new(UInt64Array::from(vec![c.rows])),
        Arc::new(UInt32Array::from(vec![c.runs as u32])),
        Arc::new(UInt64Array::from(vec![c.missing])),
        Arc::new(StringArray::from(vec![missing_policy])),
        Arc::new(UInt32Array::from(vec![c.classes as u32])),
        Arc::new(StringArray::from(vec![p.score.as_str()])),
        Arc::new(StringArray::from(vec![p.mask.map(|m| m.mode.as_str())])),
        Arc::new(UInt64Array::from(vec![offset])),
        Arc::new(UInt64Array::from(vec![c.kept])),
        Arc::new(UInt64Array::from(vec![p.seed])),
        Arc::new(UInt64Array::from(vec![c.spilled_bytes])),
    ];
    Ok(RecordBatch::try_new(stats_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::class_quotas;
    use proptest::prelude::*;

    proptest! {
        /// Quotas add up to the requested count, never exceed a class, and stay within one of
        /// the exact proportional share.
        #[test]
        fn quotas_are_exact_and_proportional(
            counts in proptest::collection::vec(0u64..500, 1..12),
            frac in 0.0f64..1.0,
        ) {
            let counts: Vec<(i64, u64)> = counts.into_iter().enumerate().map(|(i, n)| (i as i64, n)).collect();
            let total: u64 = counts.iter().map(|c| c.1).sum();
            let k = (frac * total as f64).round() as u64;
            let q = class_quotas(&counts, k);
            prop_assert_eq!(q.iter().sum::<u64>(), k);
            for (c, q) in counts.iter().zip(&q) {
                prop_assert!(*q <= c.1);
                let share = k as f64 * c.1 as f64 / total.max(1) as f64;
                prop_assert!((*q as f64 - share).abs() < 1.0 + 1e-9, "{} vs {share}", q);
            }
        }
    }
}
