//! Operators: a core, its rows adapter and its output tables.
//!
//! An operator is fed the record batches of its input one at a time (the pipeline may feed
//! several operators from one scan) and, at the end, returns its output tables as small
//! `RecordBatch`es. [`consume`] drives one operator from a DataFusion stream directly.

pub mod top_eigenvector;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use crate::Result;

pub use top_eigenvector::{Algorithm, TopEigenvectorOp, TopEigenvectorParams};

/// One output table of a stage: written as `STAGE/NAME.parquet`, queried as `STAGE.NAME`.
#[derive(Debug, Clone)]
pub struct OutputTable {
    pub name: &'static str,
    pub batch: RecordBatch,
}

/// The name and schema of a table an operator will produce, known before any data is read
/// (so a later stage reading it can be validated up front).
#[derive(Debug, Clone)]
pub struct TableDecl {
    pub name: &'static str,
    pub schema: SchemaRef,
}

/// A streaming operator.
pub trait Operator: Send {
    /// Consumes one batch of the stage's input.
    fn update(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Rows of input seen so far (valid or not): recorded in the output metadata.
    fn rows_read(&self) -> u64;
    /// Ends the pass and returns the output tables.
    fn finish(self: Box<Self>) -> Result<Vec<OutputTable>>;
}

/// Drives `op` over a whole stream and returns its output tables.
pub async fn consume(
    mut op: Box<dyn Operator>,
    mut stream: SendableRecordBatchStream,
) -> Result<Vec<OutputTable>> {
    while let Some(batch) = stream.next().await {
        op.update(&batch?)?;
    }
    op.finish()
}
