//! The pipeline layer: a TOML file → a validated plan → a run with tokio.
//!
//! * [`spec`] parses and validates the pipeline file (no data read);
//! * [`source`] turns sources into DataFusion data frames;
//! * [`run`](mod@run) checks every stage against its input schema, has
//! * `group` scan each input once for all the stages reading it, pass by pass, and hands the
//!   results to
//! * `writer`, which writes each stage's tables uncommitted and commits them all at the end
//!   through [`sink`], atomically;
//! * [`shuffle`] gives stages that ask for it an exactly uniform row order, out of core.

mod group;
pub mod incremental;
mod interrupt;

pub mod lock;
pub mod ordered;
pub mod remote;
pub mod run;
pub mod shuffle;
pub mod sink;
pub mod source;
pub mod spec;
pub mod stores;
mod writer;

pub use run::{run, RunOptions, RunSummary, StageSummary, Stop};
pub use spec::{FileFormat, Input, PipelineSpec, SourceSpec, StageSpec};
