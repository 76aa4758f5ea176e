//! The one trait every op implements, and what the runner hands it.
//!
//! A stage of a pipeline file is `op = "NAME"` plus keys. The registry
//! ([`super::registry::OPS`]) maps each name to a parser that reads the op's keys into a
//! value implementing [`Op`]; from then on the pipeline layer knows the stage only through
//! this trait — which columns it reads, which tables it writes, how it runs — so adding an op
//! touches no runner code (the walk-through is in `docs/contributing.md`).

use std::path::{Path, PathBuf};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::Schema;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{AggregateUDF, Expr, ScalarUDF};
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;

use super::{Operator, OutputTable, TableDecl};
use crate::keys::Keys;
use crate::sketch::stored::{Header, StoredSketch};
use crate::Result;

/// One op of the registry: its name in pipeline files, how to read a stage's keys, and the SQL
/// functions over the same cores.
pub struct OpKind {
    pub name: &'static str,
    /// Reads the op's own keys (the runner reads `op`, the input keys and `incremental`);
    /// every key the parser asks for is accepted, any other is refused by the caller.
    pub parse: fn(&mut Keys<'_>) -> Result<Box<dyn Op>>,
    /// The op's SQL functions, registered in every session sketchpipe makes.
    pub functions: fn() -> Functions,
}

/// SQL functions an op brings.
#[derive(Debug, Default)]
pub struct Functions {
    pub scalar: Vec<ScalarUDF>,
    pub aggregate: Vec<AggregateUDF>,
}

/// What a stage reads, as the pipeline file spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputForm {
    /// `source = "NAME"` (a source) or `source = "stage.table"` (an earlier stage's table).
    Rows,
    /// `left` and `right`: two sketches.
    SketchPair,
    /// `inputs = [...]`: two or more sketches.
    SketchList,
    /// No rows and no sketch list: only the outputs its [`Op::uses`] names (`sketch_search`'s
    /// `query` and `catalog`).
    Uses,
}

impl InputForm {
    /// The key that names the input, for messages.
    pub fn key(&self) -> &'static str {
        match self {
            InputForm::Rows => "source",
            InputForm::SketchPair => "left",
            InputForm::SketchList => "inputs",
            InputForm::Uses => "uses",
        }
    }
}

/// The output of another stage — of this pipeline, or a directory written earlier — that a
/// stage reads besides its input (e.g. `project`'s `pca = "stage_or_path"`). A value with a
/// `/` (or starting with `.`) is a directory, relative to the pipeline file; any other value
/// names a stage of the pipeline, which then runs first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uses {
    /// The key that names it, for messages.
    pub key: &'static str,
    /// The value as written.
    pub value: String,
    /// The op the named stage must be.
    pub op: &'static str,
}

/// An out-of-core shuffle of the input before the stage's stream-order passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shuffle {
    pub seed: u64,
    /// Bytes of the input held in memory at once while reading it back.
    pub memory: u64,
}

/// How a stage runs.
pub enum Execution<'a> {
    /// Passes of an [`Operator`] over a scan of its input, shared with the other stages
    /// reading that input.
    Passes(&'a dyn Passes),
    /// One DataFusion query over its input (it scans alone).
    Query(&'a dyn Query),
    /// From stored sketches (`left`/`right` or `inputs`); reads no rows.
    Sketches(&'a dyn FromSketches),
    /// From the outputs its [`Op::uses`] names ([`InputForm::Uses`]); reads no rows.
    Outputs(&'a dyn FromOutputs),
}

/// A validated stage's op: see the module docs.
pub trait Op: std::fmt::Debug + Send + Sync {
    /// The op's name, as written in pipeline files.
    fn name(&self) -> &'static str;
    /// How the stage's input is named in the pipeline file.
    fn input_form(&self) -> InputForm {
        InputForm::Rows
    }
    /// The names of the tables the stage writes, known from its keys alone (for validating
    /// `source = "stage.table"` before any schema is read). The runner adds the incremental
    /// manifest.
    fn table_names(&self) -> Vec<&'static str>;
    /// The tables the stage writes, with their schemas, for an input of schema `input`.
    fn tables(&self, input: &Schema) -> Result<Vec<TableDecl>>;
    /// The input columns the stage reads (the scan projects only these).
    fn columns(&self) -> &[String] {
        &[]
    }
    /// The pipeline-file key that names input column `column` (for messages).
    fn column_key(&self, _column: &str) -> &'static str {
        "columns"
    }
    /// Checks the projected input schema (column types) before any row is read.
    fn check_schema(&self, _input: &Schema) -> Result<()> {
        Ok(())
    }
    /// The seed recorded in output metadata.
    fn seed(&self) -> Option<u64> {
        None
    }
    /// Whether the input is read through the out-of-core shuffle first.
    fn shuffle(&self) -> Option<Shuffle> {
        None
    }
    /// Whether the stage resumes from its previous output and reads only new files.
    fn incremental(&self) -> bool {
        false
    }
    /// Makes the stage incremental (`incremental = true`), or says why it cannot be.
    fn make_incremental(&mut self) -> std::result::Result<(), String> {
        Err(
            "only mergeable stages can be incremental: top_eigenvector and pca (exact, \
             frequent-directions) and coordinated_sketch (priority, exact, jl, countsketch)"
                .into(),
        )
    }
    /// Whether the stage's output is a sketch (`left`/`right`/`inputs` of a later stage).
    fn writes_sketch(&self) -> bool {
        false
    }
    /// A key column whose values must be unique: checked during the first scan of the input.
    fn unique_key(&self) -> Option<&str> {
        None
    }
    /// For a stage whose `path` source's files are each one table (`table_from = "file"`):
    /// the column the runner fills with each row's file stem, and whether a file that lacks a
    /// column the stage reads is skipped (else refused).
    fn tables_from_files(&self) -> Option<(&str, bool)> {
        None
    }
    /// The column within whose values [`Op::unique_key`] must be unique (a corpus's table),
    /// when not over the whole input.
    fn unique_within(&self) -> Option<&str> {
        None
    }
    /// Whether the stage rewrites its input before reading it ([`Op::prepare`]): such a
    /// stage scans alone.
    fn rewrites_input(&self) -> bool {
        false
    }
    /// The input as the stage reads it (e.g. the rows of a key added up first).
    fn prepare(&self, frame: DataFrame) -> Result<DataFrame> {
        Ok(frame)
    }
    /// Whether the stage gets a scratch directory (removed when the run ends).
    fn needs_scratch(&self) -> bool {
        false
    }
    /// For a stage whose guarantee assumes rows in a random order: what else it offers when
    /// they come in file order, beside a shuffle (e.g. "`verify = true` measures the answer in
    /// one more pass"), for the warning the runner prints then.
    fn file_order_remedy(&self) -> Option<&'static str> {
        None
    }
    /// Other stages' outputs the stage reads ([`Uses`]); their directories are in
    /// [`StageContext::uses`], in this order, when the stage's query runs or its operator
    /// finishes.
    fn uses(&self) -> Vec<Uses> {
        Vec::new()
    }
    /// How the stage runs.
    fn execution(&self) -> Execution<'_>;
    /// The stage as one aggregate over its source, when it can run on a cluster.
    fn cluster(&self) -> Option<&dyn ClusterAggregate> {
        None
    }
}

/// What a stage has when its operator is built or its query runs.
pub struct StageContext<'a> {
    /// The input's schema, projected to the stage group's columns.
    pub schema: &'a Schema,
    /// The stage's scratch directory, when [`Op::needs_scratch`].
    pub scratch: Option<&'a Path>,
    /// The output an incremental stage resumes from.
    pub previous: Option<&'a Path>,
    /// The output directories of [`Op::uses`], in order (empty while operators are built,
    /// before any stage has run).
    pub uses: Vec<PathBuf>,
}

/// What a stage wrote: small tables in memory, and possibly one large table streamed from a
/// query (written first).
pub struct StageTables {
    pub streamed: Option<(&'static str, DataFrame)>,
    pub tables: Vec<OutputTable>,
    /// Input rows read (valid or not): recorded in the output metadata.
    pub rows_read: u64,
}

impl StageTables {
    /// Tables that are all in memory.
    pub fn in_memory(tables: Vec<OutputTable>, rows_read: u64) -> Self {
        StageTables {
            streamed: None,
            tables,
            rows_read,
        }
    }
}

/// A stage made of operator passes over a shared scan.
pub trait Passes: Sync {
    /// The operator, for an input of the context's schema.
    fn operator(&self, ctx: &StageContext<'_>) -> Result<Box<dyn Operator>>;
    /// Turns the finished operator into the stage's tables.
    fn finish<'a>(
        &'a self,
        op: Box<dyn Operator>,
        _session: &'a SessionContext,
        _ctx: &'a StageContext<'a>,
    ) -> BoxFuture<'a, Result<StageTables>> {
        Box::pin(async move {
            let rows = op.rows_read();
            Ok(StageTables::in_memory(op.finish()?, rows))
        })
    }
}

/// A stage that is one DataFusion query over its input.
pub trait Query: Sync {
    /// Runs the query over `frame`. The heavy part runs on `on` (a cluster session with
    /// `--cluster`, else `local`); what comes back is finished on `local`.
    fn run<'a>(
        &'a self,
        on: &'a SessionContext,
        local: &'a SessionContext,
        frame: DataFrame,
        ctx: &'a StageContext<'a>,
    ) -> BoxFuture<'a, Result<StageTables>>;
    /// What the progress line says the stage does (e.g. "scoring … and averaging by id").
    fn describe(&self, input: &str) -> String;
    /// What the cluster does for it, for the log line (`--cluster`).
    fn on_cluster(&self) -> &'static str;
}

/// A stage computed from stored sketches.
pub trait FromSketches: Sync {
    /// `sketches` in the order the pipeline file names them, each with a name for messages.
    fn compute(&self, sketches: Vec<(StoredSketch, Header, String)>) -> Result<Vec<OutputTable>>;
}

/// A stage computed from other stages' output directories.
pub trait FromOutputs: Sync {
    /// `dirs`: the directory of each [`Op::uses`] reference, in that order.
    fn compute(&self, dirs: &[std::path::PathBuf]) -> Result<Vec<OutputTable>>;
}

/// The two sketches of an [`InputForm::SketchPair`] stage, named `left (…)` and `right (…)`
/// for messages.
pub fn sketch_pair(
    sketches: Vec<(StoredSketch, Header, String)>,
) -> [(StoredSketch, Header, String); 2] {
    let [(ls, lh, ln), (rs, rh, rn)]: [_; 2] =
        sketches.try_into().expect("a sketch pair is two sketches");
    [
        (ls, lh, format!("left ({ln})")),
        (rs, rh, format!("right ({rn})")),
    ]
}

/// A stage as one SQL aggregate over its source (`run --cluster`): the executors build
/// partial states, the scheduler merges them, and [`ClusterAggregate::finish`] turns the merged
/// state into the tables a local run writes.
pub trait ClusterAggregate: Sync {
    /// The aggregate expression over the source's columns; `session` resolves the function.
    fn aggregate(&self, session: &SessionContext) -> Result<Expr>;
    /// The stage's tables from the merged state and the input's row count `rows`; `schema`
    /// is the input's projected schema, `order_randomised` whether its source is declared
    /// `shuffled`.
    fn finish(
        &self,
        state: &ArrayRef,
        rows: u64,
        schema: &Schema,
        order_randomised: bool,
    ) -> Result<Vec<OutputTable>>;
    /// Two states of disjoint rows — each a one-row struct in the layout of the stage's
    /// `state` table — as one, as the aggregate merges partitions' states (the Python
    /// package's `merge`). Ops whose output merges another way (a sketch) say so.
    fn merge_states(&self, _a: &ArrayRef, _b: &ArrayRef) -> Result<ArrayRef> {
        Err(crate::Error::Config(
            "this op's outputs merge as sketches (sketch_merge), not as states".into(),
        ))
    }
}

/// SQL aggregates skip rows with a null; a stage refuses them: fails when the aggregate folded
/// in fewer rows than the input has.
pub fn check_folded(folded: u64, rows: u64, columns: &[String]) -> Result<()> {
    if folded < rows {
        return Err(crate::Error::Input(format!(
            "{} of {rows} rows have a null in column(s) {} (a stage refuses null rows; run \
             without --cluster to see which rows)",
            rows - folded,
            columns.join(", ")
        )));
    }
    Ok(())
}
