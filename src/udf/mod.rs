//! SQL functions backed by the cores, registered in every session sketchpipe makes (pipeline
//! `sql` sources, the stages' own queries and `sketchpipe sql`). Each op's functions come from
//! its registry entry ([`crate::operators::op::OpKind::functions`]); the general ones
//! (`uniform_hash`, `list_mean`, `list_stddev`) are added here:
//!
//! * pruning scores — `el2n`, `grand`, `el2n_probs`, `grand_probs` (`scores`), and the
//!   aggregate `run_stats(score, run)` that averages them by id (`run_stats`);
//! * `uniform_hash(key, seed)` — the shared key hash `u(key) ∈ (0, 1)` of [`crate::hash`];
//! * `list_mean(list)`, `list_stddev(list)` — mean and sample standard deviation of a list of
//!   numbers, summed in sorted order so the result does not depend on the list's order
//!   (`lists`);
//! * aggregates `top_eigenvector(rows [, algorithm, seed, ell])` and
//!   `top_eigenvector_stats(…)` ([`eigen`]), `priority_sketch(key, values, k, seed)`,
//!   `coordinated_sketch(key, values, method, size, seed [, dim])` and `sketch_merge(sketch)`,
//!   and the scalar `sketch_product(left, right)` (`sketches`);
//! * `join_size`, `join_inner_product`, `join_correlation`, `join_r2` — estimates with
//!   intervals over the join of two sketches ([`join`]). Each
//!   aggregate declares its state, so DataFusion runs it partition-parallel and merges.

mod args;
pub mod eigen;
mod hash;
pub use hash::uniform_hashes;
pub mod join;
mod lists;
pub mod pca;
pub mod run_stats;
pub mod scores;
pub mod sketches;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

use crate::operators::registry::OPS;

/// Registers every sketchpipe SQL function on `ctx`.
pub fn register(ctx: &SessionContext) {
    for f in scalar_functions() {
        ctx.register_udf(f);
    }
    for f in aggregate_functions() {
        ctx.register_udaf(f);
    }
}

/// Every sketchpipe scalar SQL function (also what a Ballista scheduler and executor register,
/// and what its plan codecs decode by name): each op's (the registry), then the general ones.
pub fn scalar_functions() -> Vec<ScalarUDF> {
    let mut out: Vec<ScalarUDF> = OPS.iter().flat_map(|k| (k.functions)().scalar).collect();
    out.push(ScalarUDF::from(hash::UniformHash::new()));
    out.push(ScalarUDF::from(lists::ListStat::new(lists::Stat::Mean)));
    out.push(ScalarUDF::from(lists::ListStat::new(lists::Stat::StdDev)));
    out
}

/// Every sketchpipe aggregate SQL function: each op's (the registry).
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    OPS.iter().flat_map(|k| (k.functions)().aggregate).collect()
}

/// The names of every sketchpipe SQL function, scalars first.
pub fn names() -> Vec<String> {
    scalar_functions()
        .iter()
        .map(|f| f.name().to_string())
        .chain(aggregate_functions().iter().map(|f| f.name().to_string()))
        .collect()
}
