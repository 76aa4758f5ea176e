//! # sketchpipe
//!
//! Streams large tables (Parquet, CSV, or SQL over them) as Arrow record batches through
//! sketching operators and writes small Parquet summaries that can be queried with SQL.
//!
//! The crate is layered; each layer depends only on the ones above it in this list:
//! 1. **cores** — pure algorithms on slices ([`eigen`], [`sketch`], [`prune`], [`hash`]): the
//!    `sketchpipe-core` crate, re-exported here; no Arrow, no I/O, no async.
//! 2. **rows** — the bridge from Arrow record batches to contiguous dense rows ([`rows`]).
//! 3. **operators** — one module per op behind one trait, listed in one registry: a core + its
//!    rows adapter + its keys ([`keys`]) + its output tables ([`operators`]); SQL
//!    functions over the same cores ([`udf`]).
//! 4. **pipeline** — TOML spec → validated plan → run with tokio ([`pipeline`]).
//! 5. **front ends** — the CLI ([`cli`]; `src/main.rs` and the Python package's `sketchpipe`
//!    command call it), the SQL command ([`query`]) and the data
//!    generators ([`generate`]).

pub mod cli;
#[cfg(feature = "ballista")]
pub mod cluster;
pub mod error;
pub mod generate;
pub mod keys;
pub mod operators;
pub mod pipeline;
pub mod progress;
pub mod query;
pub mod rows;
pub mod signals;
pub mod udf;

pub use error::{Error, ExitKind, Result};
pub use sketchpipe_core::{blocks, eigen, hash, prune, sketch};

/// The program version recorded in every output table's Parquet metadata.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
