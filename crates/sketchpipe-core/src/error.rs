//! The cores' error type: what a core can refuse on its own, grouped by who must act.
//! The `sketchpipe` crate turns it into its own error (same message, same exit code).

/// A core refused its input or could not finish.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A parameter is out of range (e.g. a sketch size of 0); the message names it.
    #[error("{0}")]
    Config(String),
    /// The rows do not fit (NaN, ragged, empty, wrong labels); the message names the row.
    #[error("{0}")]
    Input(String),
    /// A numerical routine failed (e.g. an eigensolver did not converge).
    #[error("{0}")]
    Numeric(String),
}

/// Result alias of the cores.
pub type Result<T, E = Error> = std::result::Result<T, E>;
