//! # sketchpipe-core
//!
//! The algorithms of sketchpipe, on plain slices: no Arrow, no I/O, no async. Each core has
//! the same shape — `update` with rows, `merge` where the math allows, `finish` — and is
//! wrapped by thin adapters in the `sketchpipe` crate (the pipeline's operators, the SQL
//! functions). The math, its citations and the deviations from the papers are in
//! `docs/algorithms.md` at the root of the repository.
//!
//! * [`eigen`] — the top eigenvector of `AᵀA`: random-order (Kacham–Woodruff), Oja
//!   (Price–Xun), exact, Frequent Directions;
//! * [`sketch`] — coordinated sampling sketches for `AᵀB` (Daliri–Freire–Li–Musco), their
//!   stored image, merge and the one compatibility check;
//! * [`prune`] — EL2N / GraNd data-pruning scores (Paul–Ganguli–Dziugaite) and the proxy model;
//! * [`hash`] — the shared key hash `u(key)` every coordinated sketch is built on;
//! * [`blocks`] — rows re-chunked into fixed blocks, so sums do not depend on batch sizes.

pub mod blocks;
pub mod eigen;
pub mod error;
pub mod hash;
pub mod prune;
pub mod sketch;

pub use error::{Error, Result};
