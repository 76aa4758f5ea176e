//! # sketchpipe
//!
//! Streams large tables (Parquet, CSV, or SQL over them) as Arrow record batches through
//! sketching operators and writes small Parquet summaries that can be queried with SQL.
//!
//! The crate is layered; each layer depends only on the ones above it in this list:
//! 1. **cores** — pure algorithms on slices ([`eigen`], [`prune`]): no Arrow, no I/O, no async.
//! 2. **rows** — the bridge from Arrow record batches to contiguous dense rows ([`rows`]).
//! 3. **operators** — a core + its rows adapter + its output tables ([`operators`]); SQL
//!    functions over the same cores ([`udf`]).
//! 4. **pipeline** — TOML spec → validated plan → run with tokio ([`pipeline`]).
//! 5. **front ends** — the CLI (`src/main.rs`), the SQL command ([`query`]) and the data
//!    generators ([`generate`]).

#[cfg(feature = "ballista")]
pub mod cluster;
pub mod eigen;
pub mod error;
pub mod generate;
pub mod hash;
pub mod operators;
pub mod pipeline;
pub mod progress;
pub mod prune;
pub mod query;
pub mod rows;
pub mod sketch;
pub mod udf;

pub use error::{Error, ExitKind, Result};

/// The program version recorded in every output table's Parquet metadata.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
