//! Logged-output mode: score every row with the SQL functions `el2n`/`grand` (or
//! `el2n_probs`/`grand_probs`) and average by id with one DataFusion group-by — never by
//! position, since run files come in different row orders. The group-by spills to disk under
//! the session's memory limit, so the ids need not fit in memory.
//!
//! Per id the scores of its runs are collected and averaged by `list_mean`/`list_stddev`,
//! which sort before summing: the result is bit-identical whatever order the files are read in.

use std::fs::File;
use std::path::Path;

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use datafusion::prelude::{col, SessionContext};

use super::sql::{scalar_u64, Registered};
use super::{PruneScoresParams, ScoresInput};
use crate::operators::write_stream;
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
    let grand = match &p.embedding {
        Some(_) => format!("{g_fn}(output, label, embedding)"),
        None => "CAST(NULL AS DOUBLE)".to_string(),
    };
    let (run_col, runs_expr) = match &p.run {
        Some(_) => (", run", "count(DISTINCT run)"),
        None => ("", "1"),
    };
    let rows = format!(
        "SELECT id, label, {e_fn}(output, label) AS e, {grand} AS g, \
         array_length(output) AS k{run_col} FROM {t}"
    );
    let grouped = format!(
        "SELECT id, min(label) AS label, max(label) AS label_max, \
         list_mean(array_agg(e)) AS el2n, list_stddev(array_agg(e)) AS el2n_std, \
         list_mean(array_agg(g)) AS grand, list_stddev(array_agg(g)) AS grand_std, \
         CAST({runs_expr} AS INT UNSIGNED) AS runs, CAST(count(*) AS BIGINT UNSIGNED) AS rows, \
         CAST(count(e) AS BIGINT UNSIGNED) AS scored, \
         CAST(min(k) AS INT UNSIGNED) AS k_min, CAST(max(k) AS INT UNSIGNED) AS k_max \
         FROM ({rows}) GROUP BY id"
    );
    let plan = ctx.sql(&grouped).await?.create_physical_plan().await?;
    let stream = execute_stream(Arc::clone(&plan), ctx.task_ctx())?;
    let file = File::create(by_id)
        .map_err(|e| Error::io(format!("cannot create {}", by_id.display()), e))?;
    let mut writer = ArrowWriter::try_new(file, stream.schema(), None)?;
    write_stream(stream, &mut writer)
        .await
        .map_err(|e| match e {
            Error::DataFusion(e) => {
                Error::Input(format!("scoring rows and averaging them by id: {e}"))
            }
            other => other,
        })?;
    writer.close()?;
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
