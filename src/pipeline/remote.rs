//! Stages that run as one SQL aggregate on another session — a DataFusion Ballista cluster
//! with `sketchpipe run --cluster`: the executors scan the files and build partial states, the
//! scheduler merges them, and the client finishes the merged state with the same code as a
//! local run, so the tables are the ones a local run writes.
//!
//! Which stages: those whose op offers a [`ClusterAggregate`] (the mergeable ones:
//! `top_eigenvector` with `exact` or `frequent-directions` through `top_eigenvector_state`,
//! `coordinated_sketch` with `priority`, `exact`, `jl` or `countsketch` through the
//! `coordinated_sketch` aggregate — each op says when it can) reading a source. The other
//! stages reading a source (not incremental) still use the cluster, from `run`: a query
//! stage's query (`prune_scores`' scores and by-id group-by) runs there, and the stream-order
//! stages read their source as a stream the executors decode, fetched partition by partition
//! in file order ([`super::ordered`]).

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Int64Type, Schema};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::lit;
use datafusion::prelude::SessionContext;

use super::source::source_frame;
use super::spec::{Input, PipelineSpec, StageSpec};
use crate::operators::coordinated_sketch::unique::check_unique_keys;
use crate::operators::op::ClusterAggregate;
use crate::operators::OutputTable;
use crate::{Error, Result};

/// Whether `stage` runs as an aggregate on the cluster (see the module docs).
pub fn eligible(stage: &StageSpec) -> bool {
    matches!(stage.input, Input::Source(_)) && stage.op.cluster().is_some()
}

/// Runs `stage` as the aggregate `agg` on `cluster` (where the pipeline's sources are
/// registered); `schema` is its input's projected schema.
pub async fn run_stage(
    cluster: &SessionContext,
    spec: &PipelineSpec,
    stage: &StageSpec,
    agg: &dyn ClusterAggregate,
    schema: &Schema,
) -> Result<Vec<OutputTable>> {
    let Input::Source(source) = &stage.input else {
        unreachable!("cluster stages read a source")
    };
    let frame = source_frame(cluster, spec, source).await?;
    if let Some(key) = stage.op.unique_key() {
        check_unique_keys(&frame, key, stage.op.unique_within()).await?;
    }
    let batches = frame
        .aggregate(
            vec![],
            vec![agg.aggregate(cluster)?.alias("s"), count(lit(1)).alias("n")],
        )?
        .collect()
        .await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| Error::Input("the cluster returned no result".into()))?;
    let rows = batch.column(1).as_primitive::<Int64Type>().value(0) as u64;
    let shuffled = spec.shuffled_sources.contains(source);
    agg.finish(batch.column(0), rows, schema, shuffled)
}
