//! One error type for the library; the CLI prints its `Display` as a one-paragraph message.

use crate::signals::Signal;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::parquet::errors::ParquetError;

/// Everything that can go wrong in sketchpipe, grouped by who has to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file or a command-line flag is wrong; the message names the file, the
    /// stage and the key.
    #[error("{0}")]
    Config(String),
    /// The data does not fit what a stage needs (types, nulls, NaN, ragged rows, empty input);
    /// the message names the stage, the column and the row.
    #[error("{0}")]
    Input(String),
    /// A numerical routine failed (e.g. an eigensolver did not converge).
    #[error("{0}")]
    Numeric(String),
    /// A file-system operation failed; `context` says which path and what we were doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Another run holds the output directory's lock; the message names it.
    #[error("{0}")]
    Busy(String),
    /// An engine failure sketchpipe could not attribute to the user's file, data or disk
    /// (exit code 1: please report it), with where it happened.
    #[error("{0}")]
    Internal(String),
    /// The command was stopped by a signal (Ctrl-C, SIGTERM, SIGHUP); temporary files have
    /// been removed.
    #[error("interrupted by {}: the command was cancelled; no output was changed", .0.name())]
    Interrupted(Signal),
    #[error(transparent)]
    DataFusion(DataFusionError),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Parquet(#[from] ParquetError),
}

/// The process exit codes of the `sketchpipe` command, documented in `docs/reference.md` for
/// schedulers: retry on [`ExitKind::Busy`], alert a human on the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// 0.
    Success,
    /// 1: anything not below (an engine error we could not attribute).
    Internal,
    /// 2: the pipeline file or command line is wrong (also clap's usage errors).
    Config,
    /// 3: the input data does not fit (types, nulls, NaN, bad rows), or a numeric failure.
    Input,
    /// 4: reading or writing a file failed (permissions, disk full, missing path).
    Io,
    /// 5: another run holds the output directory.
    Busy,
    /// 130: interrupted by Ctrl-C / SIGINT (128 + 2, the shell convention).
    Interrupted,
    /// 143: stopped by SIGTERM (128 + 15).
    Terminated,
    /// 129: stopped by SIGHUP (128 + 1).
    HungUp,
}

impl ExitKind {
    /// The numeric exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Success => 0,
            ExitKind::Internal => 1,
            ExitKind::Config => 2,
            ExitKind::Input => 3,
            ExitKind::Io => 4,
            ExitKind::Busy => 5,
            ExitKind::Interrupted => 130,
            ExitKind::Terminated => 143,
            ExitKind::HungUp => 129,
        }
    }

    /// A short stable name, used in `--log-format json` error records.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::Success => "success",
            ExitKind::Internal => "internal",
            ExitKind::Config => "config",
            ExitKind::Input => "input",
            ExitKind::Io => "io",
            ExitKind::Busy => "busy",
            ExitKind::Interrupted => "interrupted",
            ExitKind::Terminated => "terminated",
            ExitKind::HungUp => "hangup",
        }
    }
}

impl From<DataFusionError> for Error {
    /// Our own errors come back out of DataFusion (raised inside an SQL function) as
    /// themselves: their message without DataFusion's prefix, and their exit code.
    fn from(e: DataFusionError) -> Self {
        match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::DataFusion(DataFusionError::External(other)),
            },
            DataFusionError::Context(c, inner) => match Error::from(*inner) {
                Error::DataFusion(e) => Error::DataFusion(DataFusionError::Context(c, Box::new(e))),
                ours => ours.context(c),
            },
            other => Error::DataFusion(other),
        }
    }
}

impl From<sketchpipe_core::Error> for Error {
    /// A core's refusal keeps its message and its kind (and so its exit code).
    fn from(e: sketchpipe_core::Error) -> Self {
        match e {
            sketchpipe_core::Error::Config(m) => Error::Config(m),
            sketchpipe_core::Error::Input(m) => Error::Input(m),
            sketchpipe_core::Error::Numeric(m) => Error::Numeric(m),
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path and action that failed.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Which exit code the command line returns for this error.
    pub fn exit_kind(&self) -> ExitKind {
        match self {
            Error::Config(_) => ExitKind::Config,
            Error::Input(_) | Error::Numeric(_) | Error::Arrow(_) => ExitKind::Input,
            Error::Parquet(e) => parquet_kind(e),
            Error::Io { .. } => ExitKind::Io,
            Error::Busy(_) => ExitKind::Busy,
            Error::Internal(_) => ExitKind::Internal,
            Error::Interrupted(s) => match s {
                Signal::Interrupt => ExitKind::Interrupted,
                Signal::Terminate => ExitKind::Terminated,
                Signal::Hangup => ExitKind::HungUp,
            },
            Error::DataFusion(e) => datafusion_kind(e),
        }
    }

    /// Prefixes the message with where it happened (a stage, a source), keeping the kind.
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        match self {
            Error::Config(m) => Error::Config(format!("{prefix}: {m}")),
            Error::Input(m) => Error::Input(format!("{prefix}: {m}")),
            Error::Numeric(m) => Error::Numeric(format!("{prefix}: {m}")),
            Error::Io { context, source } => Error::Io {
                context: format!("{prefix}: {context}"),
                source,
            },
            Error::Busy(m) => Error::Busy(format!("{prefix}: {m}")),
            Error::Internal(m) => Error::Internal(format!("{prefix}: {m}")),
            Error::Interrupted(s) => Error::Interrupted(s),
            // The prefix must not change who has to act: an engine-internal error stays one.
            Error::DataFusion(e) => match datafusion_kind(&e) {
                ExitKind::Io => Error::io(prefix.to_string(), std::io::Error::other(e.to_string())),
                ExitKind::Config => Error::Config(format!("{prefix}: {e}")),
                ExitKind::Input => Error::Input(format!("{prefix}: {e}")),
                _ => Error::Internal(format!("{prefix}: {e}")),
            },
            Error::Arrow(e) => Error::Input(format!("{prefix}: {e}")),
            Error::Parquet(e) => match parquet_kind(&e) {
                ExitKind::Io => Error::io(prefix.to_string(), std::io::Error::other(e.to_string())),
                _ => Error::Input(format!("{prefix}: {e}")),
            },
        }
    }
}

/// A Parquet reader's failure to get bytes (from a disk or an object store) is I/O; the rest
/// is about the data.
fn parquet_kind(e: &ParquetError) -> ExitKind {
    match e {
        ParquetError::External(inner)
            if inner.is::<std::io::Error>() || inner.is::<object_store::Error>() =>
        {
            ExitKind::Io
        }
        _ => ExitKind::Input,
    }
}

/// DataFusion wraps everything; look through to the cause.
fn datafusion_kind(e: &DataFusionError) -> ExitKind {
    match e {
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => ExitKind::Io,
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::IoError(..) => ExitKind::Io,
            _ => ExitKind::Input,
        },
        DataFusionError::ParquetError(p) => parquet_kind(p),
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => ours.exit_kind(),
            None if inner.is::<std::io::Error>() || inner.is::<object_store::Error>() => {
                ExitKind::Io
            }
            None => ExitKind::Internal,
        },
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            datafusion_kind(inner)
        }
        DataFusionError::Shared(inner) => datafusion_kind(inner),
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => ExitKind::Config,
        DataFusionError::Execution(_) | DataFusionError::ResourcesExhausted(_) => ExitKind::Input,
        _ => ExitKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage prefix keeps each error's exit code; an engine failure we cannot attribute
    /// stays "internal, please report" (1), not "bad input" (3).
    #[test]
    fn context_keeps_the_exit_code() {
        let cases = [
            (
                Error::DataFusion(DataFusionError::Internal("planner bug".into())),
                ExitKind::Internal,
            ),
            (
                Error::DataFusion(DataFusionError::Execution("bad row".into())),
                ExitKind::Input,
            ),
            (
                Error::DataFusion(DataFusionError::Plan("no column".into())),
                ExitKind::Config,
            ),
            (
                Error::DataFusion(DataFusionError::IoError(std::io::Error::other("disk"))),
                ExitKind::Io,
            ),
            (Error::Input("nan".into()), ExitKind::Input),
            (Error::Busy("held".into()), ExitKind::Busy),
        ];
        for (e, kind) in cases {
            assert_eq!(e.exit_kind(), kind, "{e}");
            let e = e.context("stage `s` (source `x`)").context("pipeline.toml");
            assert_eq!(e.exit_kind(), kind, "{e}");
            assert!(e.to_string().starts_with("pipeline.toml: stage `s`"), "{e}");
        }
    }
}
