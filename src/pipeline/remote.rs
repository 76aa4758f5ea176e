//! Mergeable stages run as SQL aggregates on another session — a DataFusion Ballista cluster
//! with `sketchpipe run --cluster`: the executors scan the files and build partial states, the
//! scheduler merges them, and the client finishes the merged state with the same code as a
//! local run, so the tables are the ones a local run writes.
//!
//! Which stages: `top_eigenvector` with `exact` or `frequent-directions` (through
//! `top_eigenvector_state`) and `coordinated_sketch` with `priority`, `exact`, `jl` or
//! `countsketch`, dense or sparse rows (through the `coordinated_sketch` aggregate), reading a
//! source, without `verify`, `shuffle`, `incremental`, `on_invalid = "skip"` or
//! `duplicate_keys` aggregation (`threshold` needs two passes: it streams to the client). The
//! other stages reading a source (not incremental) still use the cluster, from `run`: `prune_scores`' query
//! (scores and the by-id group-by) runs there, and the stream-order stages read their source
//! as a stream the executors decode, fetched partition by partition in file order
//! ([`super::ordered`]).

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Int64Type, Schema};
use datafusion::prelude::SessionContext;

use super::spec::{Input, OpSpec, PipelineSpec, SourceSpec, StageSpec};
use crate::operators::coordinated_sketch::{output_tables, table, DuplicateKeys, StoredSketch};
use crate::operators::eigen_state::MergeableEigen;
use crate::operators::{Algorithm, OutputTable, PassInfo, TopEigenvectorOp};
use crate::rows::OnInvalid;
use crate::sketch::Method;
use crate::{Error, Result};

/// Whether `stage` runs as an aggregate on the cluster (see the module docs).
pub fn eligible(stage: &StageSpec) -> bool {
    if !matches!(stage.input, Input::Source(_)) {
        return false;
    }
    match &stage.op {
        OpSpec::TopEigenvector(p) => {
            matches!(
                p.algorithm,
                Algorithm::Exact | Algorithm::FrequentDirections
            ) && !p.verify
                && !p.shuffle
                && !p.incremental
                && p.on_invalid == OnInvalid::Error
        }
        OpSpec::CoordinatedSketch(p) => {
            p.method != Method::Threshold
                && !p.incremental
                && p.duplicate_keys == DuplicateKeys::Error
        }
        _ => false,
    }
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The rows as one SQL expression: the list column, or the numeric columns as a list.
fn rows_expr(columns: &[String]) -> String {
    match columns {
        [one] => ident(one),
        many => format!(
            "make_array({})",
            many.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Runs an [`eligible`] stage on `cluster` (where the pipeline's sources are registered);
/// `schema` is its input's projected schema.
pub async fn run_stage(
    cluster: &SessionContext,
    spec: &PipelineSpec,
    stage: &StageSpec,
    schema: &Schema,
) -> Result<Vec<OutputTable>> {
    let Input::Source(source) = &stage.input else {
        unreachable!("eligible stages read a source")
    };
    // A path source is a table of the session; an SQL source is its query.
    let from = match &spec.sources[source] {
        SourceSpec::Path { .. } => ident(source),
        SourceSpec::Sql { query } => format!("({query}) AS {}", ident(source)),
    };
    let (sql, columns) = match &stage.op {
        OpSpec::TopEigenvector(p) => {
            let ell = match p.algorithm {
                Algorithm::FrequentDirections => format!(", {}", p.ell),
                _ => String::new(),
            };
            let sql = format!(
                "SELECT top_eigenvector_state({}, '{}', {}{ell}) AS s, count(*) AS n FROM {from}",
                rows_expr(&p.columns),
                p.algorithm.as_str(),
                p.seed,
            );
            (sql, p.columns.clone())
        }
        OpSpec::CoordinatedSketch(p) => {
            let frame = super::source::source_frame(cluster, spec, source).await?;
            super::group::check_unique_keys(&frame, &p.key).await?;
            let dim = p.dim.map(|d| format!(", {d}")).unwrap_or_default();
            let sql = format!(
                "SELECT coordinated_sketch({}, {}, '{}', {}, {}{dim}) AS s, count(*) AS n \
                 FROM {from}",
                ident(&p.key),
                rows_expr(&p.columns),
                p.method.as_str(),
                p.size,
                p.seed,
            );
            (sql, p.columns.clone())
        }
        _ => unreachable!("eligible"),
    };
    let batches = cluster.sql(&sql).await?.collect().await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| Error::Input("the cluster returned no result".into()))?;
    let n = batch.column(1).as_primitive::<Int64Type>().value(0) as u64;
    let state = batch.column(0);
    // SQL aggregates skip NULL rows; a stage refuses them: compare what was folded in.
    let nulls = |folded: u64| -> Result<()> {
        if folded < n {
            return Err(Error::Input(format!(
                "{} of {n} rows have a null in column(s) {} (a stage refuses null rows; run \
                 without --cluster to see which rows)",
                n - folded,
                columns.join(", ")
            )));
        }
        Ok(())
    };
    match &stage.op {
        OpSpec::TopEigenvector(p) => {
            let ell = (p.algorithm == Algorithm::FrequentDirections).then_some(p.ell);
            let fields = state.as_struct();
            let merged = if fields.is_null(0) {
                None
            } else {
                MergeableEigen::from_columns(fields.columns(), 0, ell)?
            };
            let Some(merged) = merged else {
                return Err(Error::Input("the input has no rows".into()));
            };
            nulls(merged.rows())?;
            let info = PassInfo {
                rows: Some(n),
                order_randomised: spec.shuffled_sources.contains(source),
                scan: 1,
            };
            TopEigenvectorOp::new(p.clone(), schema)?.finish_from_state(merged, info)
        }
        OpSpec::CoordinatedSketch(p) => {
            let bytes = state.as_binary::<i32>();
            if bytes.is_null(0) {
                return Err(Error::Input(
                    "the input has no rows: nothing to sketch".into(),
                ));
            }
            let (stored, mut header) = table::from_bytes(bytes.value(0), "the cluster's sketch")?;
            nulls(match &stored {
                StoredSketch::Sample(s) => s.rows_seen,
                StoredSketch::Linear(l) => l.rows_seen,
            })?;
            // Named by the stage's columns, as locally (SQL names the expression).
            header.columns = p.columns.clone();
            output_tables(&stored, &header)
        }
        _ => unreachable!("eligible"),
    }
}
