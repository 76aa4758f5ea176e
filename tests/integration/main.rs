//! The integration tests, end to end through the library and the `sketchpipe` binary: one test
//! binary, so that DataFusion is linked once rather than once per file (each link of a debug
//! test binary is ~0.5 GB and several seconds).
//!
//! `cargo test --test integration MODULE::` runs one file's tests; the Ballista tests
//! (`ballista::`) are compiled only with `--features ballista`.

#[allow(dead_code)] // a helper used only by the feature-gated tests is dead without the feature
mod common;

mod bad_inputs;
#[cfg(feature = "ballista")]
mod ballista;
mod cluster_stages;
mod coordinated_sketches;
mod docs_reference;
mod ffi;
mod generate;
mod incremental;
mod join_estimates;
mod layout;
mod pca;
mod prune_scores;
mod readme_sql;
mod run;
mod scheduled_runs;
mod signals;
mod sql_aggregates;
mod sql_functions;
mod top_eigenvector_methods;
