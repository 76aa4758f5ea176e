//! One error type for the library; the CLI prints its `Display` as a one-paragraph message.

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
    /// The run was interrupted (Ctrl-C); temporary files have been removed.
    #[error("interrupted: the run was cancelled; no output was changed")]
    Interrupted,
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Parquet(#[from] ParquetError),
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
            Error::Interrupted => Error::Interrupted,
            Error::DataFusion(e) => Error::Input(format!("{prefix}: {e}")),
            Error::Arrow(e) => Error::Input(format!("{prefix}: {e}")),
            Error::Parquet(e) => Error::Input(format!("{prefix}: {e}")),
        }
    }
}
