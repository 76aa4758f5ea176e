//! Operators: a core, its rows adapter and its output tables.
//!
//! An operator is fed the record batches of its input one at a time (the pipeline may feed
//! several operators from one scan) and, at the end, returns its output tables as small
//! `RecordBatch`es. Some operators need more than one pass (see [`Operator::next_pass`]).

pub mod coordinated_sketch;
pub mod eigen_state;
pub mod op;
pub mod pca;
pub mod project;
pub mod prune_scores;
pub mod registry;
pub mod sketch_merge;
pub mod sketch_product;
pub mod sketch_regression;
pub mod sketch_search;
pub mod top_eigenvector;

use std::fs::File;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Column;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::functions_nested::expr_fn::make_array;
use datafusion::logical_expr::Expr;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::col;
use futures::StreamExt;

use crate::Result;

pub use top_eigenvector::{Algorithm, TopEigenvectorOp, TopEigenvectorParams};

/// One output table of a stage: written as `STAGE/NAME.parquet`, queried as `STAGE.NAME`.
#[derive(Debug, Clone)]
pub struct OutputTable {
    pub name: &'static str,
    pub batch: RecordBatch,
    /// Extra Parquet key-value metadata the table carries (e.g. a sketch's header).
    pub metadata: Vec<(String, String)>,
}

impl OutputTable {
    pub fn new(name: &'static str, batch: RecordBatch) -> Self {
        OutputTable {
            name,
            batch,
            metadata: Vec::new(),
        }
    }
}

/// The name and schema of a table an operator will produce, known before any data is read
/// (so a later stage reading it can be validated up front).
#[derive(Debug, Clone)]
pub struct TableDecl {
    pub name: &'static str,
    pub schema: SchemaRef,
}

/// What a pass over the input must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// Any row order will do (sums, Gram matrices, sketches that do not depend on order):
    /// the pass can share a scan with the shuffle's spill pass.
    AnyOrder,
    /// The rows in the stream order the algorithm's guarantee is about (the shuffled order
    /// when the stage asks for `shuffle = true`).
    StreamOrder,
}

/// What the runner knows about the input when a pass begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassInfo {
    /// Input rows, when known exactly (Parquet footers, a `COUNT(*)`, or the shuffle's spill).
    pub rows: Option<u64>,
    /// The rows arrive in a uniformly random order (shuffled by sketchpipe).
    pub order_randomised: bool,
    /// 1-based number of this scan of the input (the spill pass and a counting pass included).
    pub scan: u32,
}

/// A streaming operator, possibly over several passes.
///
/// The runner asks [`Operator::next_pass`]; while it says `Some`, it calls `begin_pass`, feeds
/// every batch of the input through `update`, and calls `end_pass`. Then `finish`.
pub trait Operator: Send {
    /// The kind of the next pass this operator needs, or `None` when it is done.
    fn next_pass(&self) -> Option<PassKind>;
    /// Whether the next pass needs the exact input row count in [`PassInfo::rows`].
    fn needs_row_count(&self) -> bool {
        false
    }
    /// What the next pass does, for progress lines of multi-pass stages (e.g. "epoch 2 of
    /// 3"); `None` when the scan number says enough.
    fn pass_name(&self) -> Option<String> {
        None
    }
    /// Starts a pass.
    fn begin_pass(&mut self, info: &PassInfo) -> Result<()>;
    /// Consumes one batch of the stage's input.
    fn update(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Ends the current pass.
    fn end_pass(&mut self) -> Result<()>;
    /// Rows of input seen in the main pass (valid or not): recorded in the output metadata.
    fn rows_read(&self) -> u64;
    /// Returns the output tables.
    fn finish(self: Box<Self>) -> Result<Vec<OutputTable>>;
}

/// Writes every batch of `stream` with `writer` as it arrives (the writer holds one row group
/// at a time, outside DataFusion's memory pool); returns the rows written.
pub async fn write_stream(
    mut stream: SendableRecordBatchStream,
    writer: &mut ArrowWriter<File>,
) -> Result<u64> {
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    Ok(rows)
}

/// The mergeable state of an incremental stage (the top eigenvector's, PCA's).
pub trait MergeState {
    fn dim(&self) -> usize;
    fn merge(&mut self, other: &Self) -> Result<()>;
}

/// The previous run's state with this run's merged in; either may be missing (no new files,
/// or a first run), and `None` when both are. Rows of another dimension are refused.
pub fn merge_into_previous<T: MergeState>(
    previous: Option<T>,
    mine: Option<T>,
) -> Result<Option<T>> {
    Ok(match (previous, mine) {
        (Some(mut prev), Some(mine)) => {
            if prev.dim() != mine.dim() {
                return Err(crate::Error::Input(format!(
                    "the new rows have dimension {} and the previous state {}",
                    mine.dim(),
                    prev.dim()
                )));
            }
            prev.merge(&mine)?;
            Some(prev)
        }
        (prev, mine) => prev.or(mine),
    })
}

/// Two one-row state structs (the layout of a stage's `state` table) merged: each read by
/// `read`, merged as [`merge_into_previous`] merges, written back by `write`.
pub fn merge_state_structs<T: MergeState>(
    a: &datafusion::arrow::array::ArrayRef,
    b: &datafusion::arrow::array::ArrayRef,
    read: impl Fn(&[datafusion::arrow::array::ArrayRef]) -> Result<Option<T>>,
    write: impl Fn(&T) -> Vec<datafusion::arrow::array::ArrayRef>,
) -> Result<datafusion::arrow::array::ArrayRef> {
    use datafusion::arrow::array::{AsArray, StructArray};
    let merged = merge_into_previous(
        read(a.as_struct().columns())?,
        read(b.as_struct().columns())?,
    )?;
    Ok(match merged {
        Some(m) => std::sync::Arc::new(StructArray::try_new(
            a.as_struct().fields().clone(),
            write(&m),
            None,
        )?),
        None => std::sync::Arc::clone(a),
    })
}

/// Parquet key-value metadata, in file order.
pub type KeyValues = Vec<(String, String)>;

/// A small Parquet table read whole (a state table, a basis): its batches and its key-value
/// metadata.
pub fn read_small_table(path: &std::path::Path) -> Result<(Vec<RecordBatch>, KeyValues)> {
    let file = File::open(path)
        .map_err(|e| crate::Error::io(format!("cannot open {}", path.display()), e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let metadata = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let batches = builder
        .build()?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((batches, metadata))
}

/// The one-row `state` table an incremental stage wrote into `dir`, read by `parse` from its
/// columns (row 0); errors name the file.
pub fn read_state<T>(
    dir: &std::path::Path,
    parse: impl FnOnce(&[datafusion::arrow::array::ArrayRef]) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let path = dir.join("state.parquet");
    let (batches, _) = read_small_table(&path)?;
    match batches.first() {
        Some(b) if b.num_rows() == 1 => parse(b.columns()).map_err(|e| e.context(path.display())),
        _ => Err(crate::Error::Input(format!(
            "{}: a state table holds one row",
            path.display()
        ))),
    }
}

/// A stage's rows as one expression: its list column, or its numeric columns as a list (the
/// `rows` argument of the SQL aggregates).
pub fn rows_expr(columns: &[String]) -> Expr {
    let column = |c: &String| col(Column::from_name(c));
    match columns {
        [one] => column(one),
        many => make_array(many.iter().map(column).collect()),
    }
}
