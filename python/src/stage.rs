//! A pipeline stage fed from Python: the op's own parser reads the keyword arguments as it
//! reads a stage's keys, the op's own operator consumes the batches, and its tables come back
//! — the same code as `sketchpipe run`, without a file in between. One pass over what
//! `update` is given; an op that needs the whole input first (a shuffle, a second pass, rows
//! added up by key) is refused with what to do instead.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use sketchpipe::keys::Keys;
use sketchpipe::operators::coordinated_sketch::unique::KeyHashes;
use sketchpipe::operators::op::{Execution, InputForm, Op, StageContext};
use sketchpipe::operators::{registry, Operator, OutputTable, PassInfo};
use sketchpipe::{Error, Result};

use crate::arrow::{for_each_batch, import, ArrowStream};
use crate::errors::check;
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
    } else if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items: Vec<Bound<'_, PyAny>> = v.extract()?;
        toml::Value::Array(
            items
                .iter()
                .map(|i| toml_value(i, key))
                .collect::<PyResult<_>>()?,
        )
    } else {
        return Err(check::<()>(Err(Error::Config(format!(
            "argument `{key}`: expected a bool, number, string or list, got {}",
            v.get_type().name()?
        ))))
        .unwrap_err());
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

struct Running {
    operator: Box<dyn Operator>,
    /// The batches' schema, and the op's columns' positions in it.
    input: SchemaRef,
    projection: Vec<usize>,
    projected: SchemaRef,
    key_check: Option<KeyHashes>,
}

/// One stage over batches from Python; see the module docs.
#[pyclass(module = "sketchpipe._native", name = "Stage")]
pub struct Stage {
    label: String,
    op: Box<dyn Op>,
    rows: Option<u64>,
    order_randomised: bool,
    /// Behind a lock only so the class can be shared between threads (`&mut self` reaches
    /// it without locking).
    running: Mutex<Option<Running>>,
    done: bool,
    finished: Option<Vec<OutputTable>>,
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
        if op.input_form() != InputForm::Rows || !matches!(op.execution(), Execution::Passes(_)) {
            refuse(format!(
                "op `{}` does not run batch by batch; use sketchpipe.run",
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
        if op.rewrites_input() {
            refuse(
                "this setting rewrites the whole input before the sketch reads it (e.g. \
                 duplicate_keys adds up each key's rows first); add the rows up before \
                 update (e.g. with a group_by), or use sketchpipe.run"
                    .into(),
            )?;
        }
        if op.needs_scratch() || op.incremental() || !op.uses().is_empty() {
            refuse(format!(
                "op `{}` with these settings needs files (scratch space, an earlier output); \
                 use sketchpipe.run",
                op.name()
            ))?;
        }
        Ok(Stage {
            label: label.to_string(),
            op,
            rows,
            order_randomised,
            running: Mutex::new(None),
            done: false,
            finished: None,
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
        if self.done {
            return check(Err(Error::Config(format!(
                "{}: result() was already called; start a new one for more rows",
                self.label
            ))));
        }
        let imported = import(data, &format!("{}.update", self.label))?;
        for_each_batch(imported, &self.label.clone(), |batch| {
            if running_of(&mut self.running).is_none() {
                let started = check(self.start(batch.schema()))?;
                *running_of(&mut self.running) = Some(started);
            }
            let mut start = 0;
            while start < batch.num_rows() {
                let len = ROWS_PER_CHECK.min(batch.num_rows() - start);
                let piece = batch.slice(start, len);
                let running = running_of(&mut self.running).as_mut().expect("started");
                let label = &self.label;
                py.detach(|| feed(running, &piece, label))
                    .map_err(crate::errors::to_py)?;
                py.check_signals()?;
                start += len;
            }
            Ok(())
        })
    }

    /// Ends the pass and returns the stage's tables as `[(name, ArrowStream)]`, each with its
    /// Parquet key-value metadata as schema metadata. Later calls return the same tables.
    fn result(&mut self, py: Python<'_>) -> PyResult<Vec<(String, ArrowStream)>> {
        Ok(self
            .tables(py)?
            .iter()
            .map(|t| {
                let (schema, batch) = with_metadata(t.clone());
                (t.name.to_string(), ArrowStream::new(schema, vec![batch]))
            })
            .collect())
    }
}

impl Stage {
    /// The finished tables (finishing the stage the first time).
    pub fn tables(&mut self, py: Python<'_>) -> PyResult<&[OutputTable]> {
        if self.finished.is_none() {
            let running = running_of(&mut self.running).take().ok_or_else(|| {
                crate::errors::to_py(Error::Input(format!(
                    "{}: no rows were given (call update first)",
                    self.label
                )))
            })?;
            self.done = true;
            self.finished = Some(self.finish(py, running)?);
        }
        Ok(self.finished.as_deref().expect("just finished"))
    }

    fn start(&self, input: SchemaRef) -> Result<Running> {
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
        let Execution::Passes(passes) = self.op.execution() else {
            unreachable!("checked when made");
        };
        let ctx = StageContext {
            schema: &projected,
            scratch: None,
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
        if operator.needs_row_count() && self.rows.is_none() {
            return Err(Error::Config(format!(
                "{}: these settings need the number of rows up front (the CLI reads it from \
                 the files' footers): pass rows=N, the rows you will feed in all",
                self.label
            )));
        }
        operator.begin_pass(&PassInfo {
            rows: self.rows,
            order_randomised: self.order_randomised,
            scan: 1,
        })?;
        let key_check = match self.op.unique_key() {
            Some(key) => Some(KeyHashes::new(
                &projected,
                key,
                KEY_CHECK_MEMORY,
                &std::env::temp_dir(),
            )?),
            None => None,
        };
        Ok(Running {
            operator,
            input,
            projection,
            projected,
            key_check,
        })
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
        if let Some(keys) = running.key_check.take() {
            if check(keys.repeats())? {
                let key = self.op.unique_key().unwrap_or_default();
                return check(Err(Error::Input(format!(
                    "{label}: key column `{key}` repeats a key over the rows given (a key is \
                     a row identity); make the keys unique, or add each key's rows up first"
                ))));
            }
        }
        let Execution::Passes(passes) = self.op.execution() else {
            unreachable!("checked when made");
        };
        let session = sketchpipe::pipeline::source::session();
        let projected = Arc::clone(&running.projected);
        let operator = running.operator;
        let work = async {
            let ctx = StageContext {
                schema: &projected,
                scratch: None,
                previous: None,
                uses: Vec::new(),
            };
            let tables = passes.finish(operator, &session, &ctx).await?;
            Ok(tables.tables)
        };
        block_on(py, OnInterrupt::Drop, work)
    }
}

fn running_of(m: &mut Mutex<Option<Running>>) -> &mut Option<Running> {
    m.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn feed(running: &mut Running, batch: &RecordBatch, label: &str) -> Result<()> {
    if batch.schema().fields() != running.input.fields() {
        return Err(Error::Input(format!(
            "{label}: a batch's columns differ from the first batch's ({} vs {})",
            batch.schema(),
            running.input
        )));
    }
    let projected = batch.project(&running.projection)?;
    if let Some(keys) = &mut running.key_check {
        keys.update(&projected)?;
    }
    running.operator.update(&projected)
}

/// A table's batch with its key-value metadata in the schema, and that schema.
pub fn with_metadata(t: OutputTable) -> (SchemaRef, RecordBatch) {
    let schema = t.batch.schema();
    let mut metadata = schema.metadata().clone();
    metadata.extend(t.metadata);
    let schema = Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata));
    let batch = t
        .batch
        .with_schema(Arc::clone(&schema))
        .expect("the same fields");
    (schema, batch)
}
