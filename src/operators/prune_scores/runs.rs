//! Logged-output mode: score every row with the SQL functions `el2n`/`grand` (or
//! `el2n_probs`/`grand_probs`) and average by id with one DataFusion group-by — never by
//! position, since run files come in different row orders. The group-by spills to disk under
//! the session's memory limit, so the ids need not fit in memory.
//!
//! Per id one `run_stats` aggregate keeps the scores of its rows and the distinct runs; it
//! sorts the scores before summing, so the result is bit-identical whatever order the files
//! are read in.

use std::path::Path;

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use datafusion::prelude::{col, SessionContext};
use futures::StreamExt;

use super::sql::{scalar_u64, ByIdWriter, Registered};
use super::{PruneScoresParams, ScoresInput};
use crate::udf::run_stats;
use crate::{Error, Result};

/// What the by-id aggregation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregated {
    /// Distinct runs in the input (1 without a `run` column).
    pub runs: u64,
    /// Bytes the group-by spilled to disk (0 when the ids fit in memory).
    pub spilled_bytes: u64,
}

/// Scores `input` and writes one row per id to `by_id` (a Parquet file of
/// [`super::by_id_schema`]).
pub async fn aggregate(
    ctx: &SessionContext,
    input: DataFrame,
    p: &PruneScoresParams,
    by_id: &Path,
) -> Result<Aggregated> {
    let (output, e_fn, g_fn) = match &p.input {
        ScoresInput::Logits(c) => (c, "el2n", "grand"),
        ScoresInput::Probs(c) => (c, "el2n_probs", "grand_probs"),
        ScoresInput::Features { .. } => unreachable!("proxy mode scores in its operator"),
    };
    // The user's columns under fixed names (DataFrame API), so the SQL below names only
    // columns and a table of ours and needs no quoting.
    let column = |name: &String, alias: &str| col(Column::from_name(name)).alias(alias);
    let mut columns = vec![
        column(&p.id, "id"),
        column(&p.label, "label"),
        column(output, "output"),
    ];
    columns.extend(p.embedding.iter().map(|h| column(h, "embedding")));
    columns.extend(p.run.iter().map(|r| column(r, "run")));
    let table = Registered::new(ctx, "prune_input", input.select(columns)?)?;
    let t = &table.name;
    let stats = run_stats::NAME;
    // Without a run column every row is of one run (a constant key).
    let (run, run_col) = match &p.run {
        Some(_) => ("run", ", run"),
        None => ("0", ""),
    };
    let (grand_rows, grand_stats, grand_cols) = match &p.embedding {
        Some(_) => (
            format!(", {g_fn}(output, label, embedding) AS g"),
            format!(", {stats}(g, {run}) AS gs"),
            "gs['mean'] AS grand, gs['std'] AS grand_std",
        ),
        None => (
            String::new(),
            String::new(),
            "CAST(NULL AS DOUBLE) AS grand, CAST(NULL AS DOUBLE) AS grand_std",
        ),
    };
    let rows = format!(
        "SELECT id, label, {e_fn}(output, label) AS e{grand_rows}, array_length(output) AS k\
         {run_col} FROM {t}"
    );
    let grouped = format!(
        "SELECT id, label, label_max, es['mean'] AS el2n, es['std'] AS el2n_std, {grand_cols}, \
         es['runs'] AS runs, es['rows'] AS rows, es['scored'] AS scored, k_min, k_max FROM (\
         SELECT id, min(label) AS label, max(label) AS label_max, {stats}(e, {run}) AS es\
         {grand_stats}, CAST(min(k) AS INT UNSIGNED) AS k_min, CAST(max(k) AS INT UNSIGNED) AS k_max \
         FROM ({rows}) GROUP BY id)"
    );
    let plan = ctx.sql(&grouped).await?.create_physical_plan().await?;
    let mut stream = execute_stream(Arc::clone(&plan), ctx.task_ctx())?;
    let mut writer = ByIdWriter::create(by_id, &stream.schema())?;
    while let Some(batch) = stream.next().await {
        let batch = batch
            .map_err(|e| Error::Input(format!("scoring rows and averaging them by id: {e}")))?;
        writer.write(&batch)?;
    }
    writer.finish()?;
    let spilled = spilled_bytes(plan.as_ref());
    let runs = match &p.run {
        Some(_) => {
            let q = format!("SELECT count(DISTINCT run) AS n FROM {t}");
            scalar_u64(ctx, &q).await?.unwrap_or(0)
        }
        None => 1,
    };
    Ok(Aggregated {
        runs,
        spilled_bytes: spilled,
    })
}

/// Bytes the operators of `plan` spilled to disk.
fn spilled_bytes(plan: &dyn ExecutionPlan) -> u64 {
    let own = plan.metrics().and_then(|m| m.spilled_bytes()).unwrap_or(0) as u64;
    own + plan
        .children()
        .into_iter()
        .map(|c| spilled_bytes(c.as_ref()))
        .sum::<u64>()
}
