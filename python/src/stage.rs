//! A pipeline stage fed from Python: the op's own parser reads the keyword arguments as it
//! reads a stage's keys, the op's own operator or query consumes the rows, and its tables come
//! back — the same code as `sketchpipe run`, without a file in between.
//!
//! Most ops stream: each batch `update` is given goes straight into the operator, one pass,
//! in bounded memory. An op that is one query over its whole input (`prune_scores`) or that
//! rewrites its input first (`duplicate_keys = "sum"`) spools the rows to a Parquet file in a
//! temporary directory and runs when the result is asked for, as the CLI runs it over a file.
//! A shuffle, and an op that reads an earlier output, are refused with what to do instead.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray};
use arrow::compute::concat_batches;
use arrow::datatypes::UInt64Type;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::ParquetReadOptions;
use futures::StreamExt;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use sketchpipe::keys::Keys;
use sketchpipe::operators::coordinated_sketch::unique::KeyHashes;
use sketchpipe::operators::op::{Execution, InputForm, Op, StageContext, StageTables};
use sketchpipe::operators::{registry, Operator, OutputTable, PassInfo};
use sketchpipe::{Error, Result};

use crate::arrow::{for_each_batch, import, streams, ArrowStream};
use crate::errors::{check, to_py};
use crate::runtime::{block_on, OnInterrupt};

/// Bytes of key hashes a unique-key check holds before spilling to the OS temp directory.
const KEY_CHECK_MEMORY: u64 = 256 << 20;

/// Rows of one `update` fed between two checks for Ctrl-C.
const ROWS_PER_CHECK: usize = 65_536;

/// Keyword arguments as a TOML table, for the op's key parser.
pub fn toml_table(kwargs: &Bound<'_, PyDict>) -> PyResult<toml::Table> {
    let mut table = toml::Table::new();
    for (k, v) in kwargs.iter() {
        let key: String = k.extract()?;
        if v.is_none() {
            continue; // the default
        }
        table.insert(key.clone(), toml_value(&v, &key)?);
    }
    Ok(table)
}

fn toml_value(v: &Bound<'_, PyAny>, key: &str) -> PyResult<toml::Value> {
    Ok(if v.is_instance_of::<PyBool>() {
        toml::Value::Boolean(v.extract()?)
    } else if v.is_instance_of::<PyInt>() {
        toml::Value::Integer(v.extract()?)
    } else if v.is_instance_of::<PyFloat>() {
        toml::Value::Float(v.extract()?)
    } else if v.is_instance_of::<PyString>() {
        toml::Value::String(v.extract()?)
    } else if let Ok(table) = v.cast::<PyDict>() {
        toml::Value::Table(toml_table(table)?)
    } else if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items: Vec<Bound<'_, PyAny>> = v.extract()?;
        toml::Value::Array(
            items
                .iter()
                .map(|i| toml_value(i, key))
                .collect::<PyResult<_>>()?,
        )
    } else {
        return Err(to_py(Error::Config(format!(
            "argument `{key}`: expected a bool, number, string, list or dict, got {}",
            v.get_type().name()?
        ))));
    })
}

/// Parses `op`'s keys from `table`; errors say `label`.
pub fn parse_op(op: &str, label: &str, table: &toml::Table) -> Result<Box<dyn Op>> {
    let kind = registry::find(op).ok_or_else(|| Error::Config(format!("no op `{op}`")))?;
    let file = Path::new(label);
    let mut keys = Keys::new(file, "argument", table);
    let op = (kind.parse)(&mut keys)?;
    keys.finish()?;
    Ok(op)
}

/// How the rows given to `update` reach the op.
enum Feed {
    /// Straight into the op's operator (one pass).
    Stream(Running),
    /// Into a Parquet file in a temporary directory, read by the op when the result is
    /// asked for: ops that are one query over their input (`prune_scores`), that rewrite it
    /// first (`duplicate_keys`) or that keep files of their own (the proxy model) — and they
    /// may read it as many times as they need.
    Spool(Box<Spool>),
}

struct Running {
    operator: Box<dyn Operator>,
    key_check: Option<KeyHashes>,
}

struct Spool {
    dir: tempfile::TempDir,
    writer: ArrowWriter<File>,
}

/// The first batch's schema, and the op's columns' positions in it: every later batch must
/// have the same columns.
struct Shape {
    input: SchemaRef,
    projection: Vec<usize>,
}

const SPOOL: &str = "rows.parquet";

/// One stage over batches from Python; see the module docs.
#[pyclass(module = "sketchpipe._native", name = "Stage")]
pub struct Stage {
    label: String,
    op: Box<dyn Op>,
    rows: Option<u64>,
    order_randomised: bool,
    /// Behind a lock only so the class can be shared between threads (`&mut self` reaches
    /// it without locking).
    feed: Mutex<Option<Feed>>,
    shape: Option<Shape>,
    finished: Option<Vec<OutputTable>>,
    /// The keys as given (for `to_bytes`).
    keys: toml::Table,
    /// For an op whose state merges (exact and Frequent Directions eigen ops): the op as an
    /// incremental stage, whose operator writes its `state` table too.
    state_op: Option<Box<dyn Op>>,
    /// The input's schema, projected to the op's columns, once known.
    projected: Option<SchemaRef>,
    /// The finished `state` table (with `state_op`).
    state: Option<RecordBatch>,
    /// Why finishing failed, for later calls.
    failed: Option<String>,
}

/// The op again, as an incremental stage, when its state merges (a sketch merges as a sketch
/// instead): its operator also writes the `state` table that `merge` and `to_bytes` use.
fn state_op(op: &dyn Op, label: &str, keys: &toml::Table) -> Result<Option<Box<dyn Op>>> {
    if op.cluster().is_none() || op.writes_sketch() {
        return Ok(None);
    }
    let mut again = parse_op(op.name(), label, keys)?;
    Ok(again.make_incremental().ok().map(|_| again))
}

/// Whether the op spools (see [`Feed::Spool`]): a query, an input rewritten first, or an op
/// that keeps files of its own (the proxy model's per-id table, over its epochs).
fn spools(op: &dyn Op) -> bool {
    matches!(op.execution(), Execution::Query(_)) || op.rewrites_input() || op.needs_scratch()
}

#[pymethods]
impl Stage {
    /// `op` with `keys`; `label` (e.g. "TopEigenvector") names it in errors; `rows` is the
    /// number of rows it will be fed, for ops that need it up front.
    #[new]
    #[pyo3(signature = (op, label, keys, rows=None, order_randomised=false))]
    fn new(
        op: &str,
        label: &str,
        keys: &Bound<'_, PyDict>,
        rows: Option<u64>,
        order_randomised: bool,
    ) -> PyResult<Self> {
        let table = toml_table(keys)?;
        let op = check(parse_op(op, label, &table))?;
        let refuse = |why: String| check::<()>(Err(Error::Config(format!("{label}: {why}"))));
        if op.input_form() != InputForm::Rows
            || matches!(
                op.execution(),
                Execution::Sketches(_) | Execution::Outputs(_)
            )
        {
            refuse(format!(
                "op `{}` reads sketches, not rows; use CoordinatedSketch's merge, product and \
                 regression",
                op.name()
            ))?;
        }
        if op.shuffle().is_some() {
            refuse(
                "shuffle=True reads the whole input twice (a spill and shuffled read-backs); \
                 feed the rows in a random order and pass order_randomised=True, or use \
                 sketchpipe.run"
                    .into(),
            )?;
        }
        if op.incremental() || !op.uses().is_empty() {
            refuse(format!(
                "op `{}` with these settings reads an earlier output; use sketchpipe.run",
                op.name()
            ))?;
        }
        let state_op = check(state_op(op.as_ref(), label, &table))?;
        Ok(Stage {
            label: label.to_string(),
            op,
            rows,
            order_randomised,
            feed: Mutex::new(None),
            shape: None,
            finished: None,
            keys: table,
            state_op,
            projected: None,
            state: None,
            failed: None,
        })
    }

    /// The columns the stage reads.
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.op.columns().to_vec()
    }

    /// Feeds every batch of `data` (anything with `__arrow_c_stream__` or
    /// `__arrow_c_array__`).
    fn update(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.finished.is_some() || self.failed.is_some() {
            return check(Err(Error::Config(format!(
                "{}: result() was already called; start a new one for more rows",
                self.label
            ))));
        }
        let imported = import(data, &format!("{}.update", self.label))?;
        for_each_batch(imported, &self.label.clone(), |batch| {
            if feed_of(&mut self.feed).is_none() {
                let started = check(self.start(batch.schema()))?;
                *feed_of(&mut self.feed) = Some(started);
            }
            let mut start = 0;
            while start < batch.num_rows() {
                let len = ROWS_PER_CHECK.min(batch.num_rows() - start);
                let piece = batch.slice(start, len);
                let feed = feed_of(&mut self.feed).as_mut().expect("started");
                let (shape, label) = (self.shape.as_ref().expect("started"), &self.label);
                py.detach(|| feed_rows(feed, shape, &piece, label))
                    .map_err(to_py)?;
                py.check_signals()?;
                start += len;
            }
            Ok(())
        })
    }

    /// Whether the stage's state merges and serialises (`merge`, `to_bytes`).
    #[getter]
    fn mergeable(&self) -> bool {
        self.state_op.is_some()
    }

    /// The finished state as one value: an Arrow IPC stream of the `state` table an
    /// incremental stage writes, with the op, its keys and its input's schema in the schema
    /// metadata.
    #[pyo3(name = "to_bytes")]
    fn state_value<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.tables(py)?;
        let bytes = check(self.state_bytes())?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The stage `to_bytes` wrote, finished.
    #[staticmethod]
    fn from_bytes(label: &str, data: &[u8]) -> PyResult<Stage> {
        check(Stage::decode(label, data))
    }

    /// This stage's rows and `other`'s (disjoint rows, the same op and keys) as one finished
    /// stage, as partitions' states merge; both are finished first.
    fn merge(&mut self, py: Python<'_>, other: &mut Stage) -> PyResult<Stage> {
        self.tables(py)?;
        other.tables(py)?;
        check(self.merged(other))
    }

    /// Ends the pass and returns the stage's tables as `[(name, ArrowStream)]`, each with its
    /// Parquet key-value metadata as schema metadata. Later calls return the same tables.
    fn result(&mut self, py: Python<'_>) -> PyResult<Vec<(String, ArrowStream)>> {
        Ok(streams(self.tables(py)?.to_vec()))
    }
}

impl Stage {
    /// The finished tables (finishing the stage the first time).
    pub fn tables(&mut self, py: Python<'_>) -> PyResult<&[OutputTable]> {
        if self.finished.is_none() {
            let feed = feed_of(&mut self.feed).take().ok_or_else(|| {
                to_py(Error::Input(match &self.failed {
                    Some(why) => format!("{}: the result failed earlier: {why}", self.label),
                    None => format!("{}: no rows were given (call update first)", self.label),
                }))
            })?;
            let finished = match feed {
                Feed::Stream(running) => self.finish(py, running),
                Feed::Spool(spool) => {
                    let work = self.run_spooled(spool);
                    block_on(py, OnInterrupt::Drop, work)
                }
            };
            let mut tables = finished.inspect_err(|e| self.failed = Some(e.to_string()))?;
            if self.state_op.is_some() {
                if let Some(i) = tables.iter().position(|t| t.name == "state") {
                    self.state = Some(tables.remove(i).batch);
                }
            }
            self.finished = Some(tables);
        }
        Ok(self.finished.as_deref().expect("just finished"))
    }

    fn mergeable_parts(&self) -> Result<(&RecordBatch, &SchemaRef)> {
        match (&self.state, &self.projected) {
            (Some(state), Some(projected)) => Ok((state, projected)),
            _ => Err(Error::Config(format!(
                "{}: merge and to_bytes need a state that merges: algorithm \"exact\" or \
                 \"frequent-directions\", without verify, shuffle or on_invalid",
                self.label
            ))),
        }
    }

    fn state_bytes(&self) -> Result<Vec<u8>> {
        let (state, projected) = self.mergeable_parts()?;
        let mut metadata = state.schema().metadata().clone();
        metadata.insert(META_OP.into(), self.op.name().into());
        metadata.insert(
            META_KEYS.into(),
            toml::to_string(&self.keys).map_err(|e| Error::Internal(e.to_string()))?,
        );
        metadata.insert(META_INPUT.into(), hex(&ipc_bytes(projected, &[])?));
        metadata.insert(META_VERSION.into(), sketchpipe::VERSION.into());
        let schema = Arc::new(Schema::new_with_metadata(
            state.schema().fields().clone(),
            metadata,
        ));
        ipc_bytes(&schema, &[state.clone().with_schema(Arc::clone(&schema))?])
    }

    fn decode(label: &str, data: &[u8]) -> Result<Stage> {
        let bad = |why: &str| Error::Input(format!("{label}.from_bytes: {why}"));
        let (schema, batches) = read_ipc(data).map_err(|e| bad(&e.to_string()))?;
        let meta = schema.metadata();
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(&format!("no `{k}` in the value")))
        };
        let keys: toml::Table = toml::from_str(get(META_KEYS)?).map_err(|e| bad(&e.to_string()))?;
        let input = unhex(get(META_INPUT)?).ok_or_else(|| bad("a malformed input schema"))?;
        let (projected, _) = read_ipc(&input).map_err(|e| bad(&e.to_string()))?;
        let state = match batches.as_slice() {
            [one] if one.num_rows() == 1 => one.clone(),
            _ => return Err(bad("not one state row")),
        };
        let op = parse_op(get(META_OP)?, label, &keys)?;
        Stage::finished(label, op, keys, projected, state)
    }

    fn merged(&self, other: &Stage) -> Result<Stage> {
        let (a, projected) = self.mergeable_parts()?;
        let (b, other_projected) = other.mergeable_parts()?;
        if self.op.name() != other.op.name() || self.keys != other.keys {
            return Err(Error::Config(format!(
                "{}: merge needs the same op and keys on both sides",
                self.label
            )));
        }
        if projected.fields() != other_projected.fields() {
            return Err(Error::Input(format!(
                "{}: merge needs rows of the same columns and types ({projected} vs \
                 {other_projected})",
                self.label
            )));
        }
        let cluster = self
            .op
            .cluster()
            .expect("a state op has a cluster aggregate");
        let merged = cluster.merge_states(
            &(Arc::new(StructArray::from(a.clone())) as ArrayRef),
            &(Arc::new(StructArray::from(b.clone())) as ArrayRef),
        )?;
        let state = RecordBatch::from(merged.as_struct().clone());
        let op = parse_op(self.op.name(), &self.label, &self.keys)?;
        Stage::finished(
            &self.label,
            op,
            self.keys.clone(),
            Arc::clone(projected),
            state,
        )
    }

    /// A finished stage from its state: its tables as `run --cluster` makes them from a
    /// merged state.
    fn finished(
        label: &str,
        op: Box<dyn Op>,
        keys: toml::Table,
        projected: SchemaRef,
        state: RecordBatch,
    ) -> Result<Stage> {
        let cluster = op.cluster().ok_or_else(|| {
            Error::Config(format!(
                "{label}: these keys give a state that does not merge"
            ))
        })?;
        let rows = state
            .column_by_name("rows")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .filter(|c| !c.is_null(0))
            .map(|c| c.value(0))
            .ok_or_else(|| Error::Input(format!("{label}: the state has no rows")))?;
        let as_struct: ArrayRef = Arc::new(StructArray::from(state.clone()));
        let tables = cluster.finish(&as_struct, rows, &projected, false)?;
        let state_op = state_op(op.as_ref(), label, &keys)?;
        Ok(Stage {
            label: label.to_string(),
            op,
            rows: Some(rows),
            order_randomised: false,
            feed: Mutex::new(None),
            shape: None,
            finished: Some(tables),
            keys,
            state_op,
            projected: Some(projected),
            state: Some(state),
            failed: None,
        })
    }

    /// The op whose operator reads the rows.
    fn feeding_op(&self) -> &dyn Op {
        self.state_op.as_deref().unwrap_or(self.op.as_ref())
    }

    /// The op's columns in `input`, and the projected schema, checked by the op.
    fn project(&self, input: &SchemaRef) -> Result<(Vec<usize>, SchemaRef)> {
        let projection = self
            .op
            .columns()
            .iter()
            .map(|c| {
                input.index_of(c).map_err(|_| {
                    Error::Config(format!(
                        "{}: argument `{}`: no column `{c}` in the data (it has: {})",
                        self.label,
                        self.op.column_key(c),
                        input
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let projected = Arc::new(input.project(&projection)?);
        self.op.check_schema(&projected)?;
        Ok((projection, projected))
    }

    fn start(&mut self, input: SchemaRef) -> Result<Feed> {
        let (projection, projected) = self.project(&input)?;
        self.projected = Some(Arc::clone(&projected));
        self.shape = Some(Shape { input, projection });
        if spools(self.op.as_ref()) {
            let dir = tempfile::Builder::new()
                .prefix("sketchpipe-python-")
                .tempdir()
                .map_err(|e| Error::io("cannot make a temporary directory", e))?;
            let path = dir.path().join(SPOOL);
            let file = File::create(&path)
                .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
            let writer = ArrowWriter::try_new(file, Arc::clone(&projected), None)?;
            return Ok(Feed::Spool(Box::new(Spool { dir, writer })));
        }
        let (operator, key_check) = self.operator(&projected, None, self.rows)?;
        Ok(Feed::Stream(Running {
            operator,
            key_check,
        }))
    }

    /// The op's operator with its first pass begun, and its key check.
    fn operator(
        &self,
        projected: &SchemaRef,
        scratch: Option<&Path>,
        rows: Option<u64>,
    ) -> Result<(Box<dyn Operator>, Option<KeyHashes>)> {
        let Execution::Passes(passes) = self.feeding_op().execution() else {
            unreachable!("a query spools");
        };
        let ctx = StageContext {
            schema: projected,
            scratch,
            previous: None,
            uses: Vec::new(),
        };
        let mut operator = passes.operator(&ctx)?;
        if operator.next_pass().is_none() {
            return Err(Error::Internal(format!(
                "{}: the op reads no rows",
                self.label
            )));
        }
        if operator.needs_row_count() && rows.is_none() {
            return Err(Error::Config(format!(
                "{}: these settings need the number of rows up front (the CLI reads it from \
                 the files' footers): pass rows=N, the rows you will feed in all",
                self.label
            )));
        }
        operator.begin_pass(&PassInfo {
            rows,
            order_randomised: self.order_randomised,
            scan: 1,
        })?;
        let key_check = match self.op.unique_key() {
            Some(key) => Some(KeyHashes::new(
                projected,
                key,
                KEY_CHECK_MEMORY,
                &std::env::temp_dir(),
            )?),
            None => None,
        };
        Ok((operator, key_check))
    }

    fn check_keys(&self, key_check: Option<KeyHashes>) -> Result<()> {
        if let Some(keys) = key_check {
            if keys.repeats()? {
                let key = self.op.unique_key().unwrap_or_default();
                return Err(Error::Input(format!(
                    "{}: key column `{key}` repeats a key over the rows given (a key is a row \
                     identity); make the keys unique, or pass duplicate_keys=\"sum\" or \"mean\"",
                    self.label
                )));
            }
        }
        Ok(())
    }

    fn finish(&self, py: Python<'_>, mut running: Running) -> PyResult<Vec<OutputTable>> {
        let label = &self.label;
        check(running.operator.end_pass())?;
        if let Some(what) = running
            .operator
            .next_pass()
            .map(|_| running.operator.pass_name())
        {
            return check(Err(Error::Config(format!(
                "{label}: these settings need another pass over the rows ({}), which a \
                 stream fed by update cannot give; drop the setting that asks for it (verify, \
                 frobenius=\"exact\") or use sketchpipe.run",
                what.unwrap_or_else(|| "a second scan".into())
            ))));
        }
        check(self.check_keys(running.key_check.take()))?;
        let projected = self.projected.clone().expect("started");
        let work = self.finish_operator(running.operator, projected, None);
        block_on(py, OnInterrupt::Drop, work)
    }

    async fn finish_operator(
        &self,
        operator: Box<dyn Operator>,
        projected: SchemaRef,
        scratch: Option<&Path>,
    ) -> Result<Vec<OutputTable>> {
        let Execution::Passes(passes) = self.feeding_op().execution() else {
            unreachable!("only operators finish here");
        };
        let session = sketchpipe::pipeline::source::session();
        let ctx = StageContext {
            schema: &projected,
            scratch,
            previous: None,
            uses: Vec::new(),
        };
        let tables = passes.finish(operator, &session, &ctx).await?;
        collect(tables).await
    }

    /// The op over the spooled rows: its query, or its operator's passes over them (as
    /// prepared by the op).
    async fn run_spooled(&self, spool: Box<Spool>) -> Result<Vec<OutputTable>> {
        let Spool { dir, writer } = *spool;
        let projected = self.projected.clone().expect("started");
        let meta = writer.close()?;
        let rows = meta.file_metadata().num_rows() as u64;
        let session = sketchpipe::pipeline::source::session();
        let path = dir.path().join(SPOOL);
        let frame = session
            .read_parquet(path.display().to_string(), ParquetReadOptions::default())
            .await?;
        let frame = self.op.prepare(frame)?;
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch)
            .map_err(|e| Error::io(format!("cannot create {}", scratch.display()), e))?;
        let scratch = self.op.needs_scratch().then_some(scratch.as_path());
        let ctx = StageContext {
            schema: &projected,
            scratch,
            previous: None,
            uses: Vec::new(),
        };
        match self.op.execution() {
            Execution::Query(query) => {
                let tables = query.run(&session, &session, frame, &ctx).await?;
                collect(tables).await
            }
            Execution::Passes(_) => {
                let (mut operator, mut key_check) =
                    self.operator(&projected, scratch, Some(rows))?;
                let mut scan = 1;
                loop {
                    let mut stream = frame.clone().execute_stream().await?;
                    while let Some(batch) = stream.next().await {
                        let batch = batch?;
                        if let Some(keys) = &mut key_check {
                            keys.update(&batch)?;
                        }
                        operator.update(&batch)?;
                    }
                    operator.end_pass()?;
                    if let Some(keys) = key_check.take() {
                        // The spool can be read again: the CLI's exact check, naming the key.
                        let key = self.op.unique_key().expect("a key check has a key");
                        keys.finish(&frame, key).await?;
                    }
                    if operator.next_pass().is_none() {
                        break;
                    }
                    scan += 1;
                    operator.begin_pass(&PassInfo {
                        rows: Some(rows),
                        order_randomised: self.order_randomised,
                        scan,
                    })?;
                }
                self.finish_operator(operator, projected, scratch).await
            }
            Execution::Sketches(_) | Execution::Outputs(_) => unreachable!("refused when made"),
        }
    }
}

/// A stage's tables with its streamed table (if any) collected, first.
async fn collect(tables: StageTables) -> Result<Vec<OutputTable>> {
    let mut out = Vec::new();
    if let Some((name, frame)) = tables.streamed {
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        out.push(OutputTable::new(name, concat_batches(&schema, &batches)?));
    }
    out.extend(tables.tables);
    Ok(out)
}

fn feed_of(m: &mut Mutex<Option<Feed>>) -> &mut Option<Feed> {
    m.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn feed_rows(feed: &mut Feed, shape: &Shape, batch: &RecordBatch, label: &str) -> Result<()> {
    if batch.schema().fields() != shape.input.fields() {
        return Err(Error::Input(format!(
            "{label}: a batch's columns differ from the first batch's ({} vs {})",
            batch.schema(),
            shape.input
        )));
    }
    let projected = batch.project(&shape.projection)?;
    match feed {
        Feed::Stream(running) => {
            if let Some(keys) = &mut running.key_check {
                keys.update(&projected)?;
            }
            running.operator.update(&projected)
        }
        Feed::Spool(spool) => Ok(spool.writer.write(&projected)?),
    }
}

const META_OP: &str = "sketchpipe.op";
const META_KEYS: &str = "sketchpipe.keys";
const META_INPUT: &str = "sketchpipe.input_schema";
const META_VERSION: &str = "sketchpipe.version";

/// `batches` of `schema` as an Arrow IPC stream.
fn ipc_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    drop(w);
    Ok(out)
}

fn read_ipc(data: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader = arrow::ipc::reader::StreamReader::try_new(data, None)?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Bytes as lowercase hex (a schema inside another schema's string metadata).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    s.len()
        .is_multiple_of(2)
        .then(|| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}
