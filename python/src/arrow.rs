//! Arrow data across the boundary, zero-copy, through the Arrow PyCapsule interface: anything
//! with `__arrow_c_stream__` (pyarrow tables and readers, polars frames, DuckDB results) or
//! `__arrow_c_array__` (pyarrow record batches and arrays) comes in as Arrow arrays over the
//! same buffers; results go out as objects with `__arrow_c_stream__`, which `pyarrow.table`
//! takes over without a copy.

use std::ffi::CStr;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use crate::errors::InputError;

use arrow::array::{
    make_array, Array, ArrayRef, RecordBatch, RecordBatchIterator, RecordBatchReader, StructArray,
};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ffi::{from_ffi, to_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use sketchpipe::operators::OutputTable;

/// Arrow data that does not fit (a failed import, a bad stream): an `InputError`.
fn bad(what: &str, e: impl std::fmt::Display) -> PyErr {
    InputError::new_err(format!("{what}: {e}"))
}

const STREAM: &CStr = c"arrow_array_stream";
const ARRAY: &CStr = c"arrow_array";
const SCHEMA: &CStr = c"arrow_schema";

/// What a Python object holds: a stream of record batches, or one array.
pub enum Imported {
    Stream(ArrowArrayStreamReader),
    Array(ArrayRef),
}

/// Takes `obj`'s Arrow data through its `__arrow_c_stream__` (preferred) or
/// `__arrow_c_array__`; `what` names the argument in the error for any other object.
pub fn import(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Imported> {
    if obj.hasattr("__arrow_c_stream__")? {
        let capsule = obj.call_method0("__arrow_c_stream__")?;
        let capsule = capsule.cast::<PyCapsule>()?;
        let ptr = capsule.pointer_checked(Some(STREAM))?;
        // SAFETY: the capsule holds an ArrowArrayStream (its name says so); `from_raw` moves it
        // out and leaves a released one behind, as the PyCapsule protocol asks of consumers.
        let reader = unsafe { ArrowArrayStreamReader::from_raw(ptr.as_ptr().cast()) }
            .map_err(|e| bad(what, e))?;
        return Ok(Imported::Stream(reader));
    }
    if obj.hasattr("__arrow_c_array__")? {
        let pair = obj.call_method0("__arrow_c_array__")?;
        let pair = pair.cast::<PyTuple>()?;
        let schema = pair.get_item(0)?;
        let schema = schema.cast::<PyCapsule>()?;
        let array = pair.get_item(1)?;
        let array = array.cast::<PyCapsule>()?;
        let schema_ptr = schema.pointer_checked(Some(SCHEMA))?;
        let array_ptr = array.pointer_checked(Some(ARRAY))?;
        // SAFETY: the capsules hold an ArrowSchema and an ArrowArray (their names say so); the
        // array is moved out (the capsule keeps a released one), the schema only borrowed.
        let data = unsafe {
            let array = FFI_ArrowArray::from_raw(array_ptr.as_ptr().cast());
            let schema = &*(schema_ptr.as_ptr() as *const FFI_ArrowSchema);
            from_ffi(array, schema)
        }
        .map_err(|e| bad(what, e))?;
        return Ok(Imported::Array(make_array(data)));
    }
    Err(InputError::new_err(format!(
        "{what}: expected Arrow data (a pyarrow Table, RecordBatch, RecordBatchReader or Array, \
         a polars DataFrame, or anything with __arrow_c_stream__ / __arrow_c_array__), got {}",
        obj.get_type().name()?
    )))
}

/// `obj` as record batches, read one at a time by `each` (a stream is not collected first).
pub fn for_each_batch(
    imported: Imported,
    what: &str,
    mut each: impl FnMut(RecordBatch) -> PyResult<()>,
) -> PyResult<()> {
    match imported {
        Imported::Stream(reader) => {
            for batch in reader {
                each(batch.map_err(|e| bad(what, e))?)?;
            }
            Ok(())
        }
        Imported::Array(array) => match array.as_any().downcast_ref::<StructArray>() {
            Some(s) => each(RecordBatch::from(s.clone())),
            None => Err(bad(
                what,
                format!(
                    "expected a table or record batch with named columns, got a single {} array",
                    array.data_type()
                ),
            )),
        },
    }
}

/// One column: an array, or the only column of a table, batch or stream (concatenated).
pub fn column(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ArrayRef> {
    match import(obj, what)? {
        Imported::Array(a) => Ok(a),
        Imported::Stream(reader) => {
            let schema = reader.schema();
            if schema.fields().len() != 1 {
                return Err(InputError::new_err(format!(
                    "{what}: expected one column, got {} ({})",
                    schema.fields().len(),
                    names(&schema)
                )));
            }
            let batches = reader
                .collect::<Result<Vec<_>, ArrowError>>()
                .map_err(|e| bad(what, e))?;
            let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(0).as_ref()).collect();
            match parts.len() {
                1 => Ok(batches[0].column(0).clone()),
                _ => arrow::compute::concat(&parts).map_err(|e| bad(what, e)),
            }
        }
    }
}

fn names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Record batches handed to Python: `pyarrow.table(stream)` takes them without a copy.
#[pyclass(module = "sketchpipe._native", name = "ArrowStream")]
pub struct ArrowStream(Mutex<Option<FFI_ArrowArrayStream>>);

impl ArrowStream {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
        ArrowStream(Mutex::new(Some(FFI_ArrowArrayStream::new(Box::new(
            reader,
        )))))
    }
}

#[pymethods]
impl ArrowStream {
    /// The Arrow PyCapsule stream protocol; the stream can be taken once.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema; // the schema is the result's own
        let stream = self
            .0
            .lock()
            .map_err(|_| PyValueError::new_err("the stream's lock is poisoned"))?
            .take()
            .ok_or_else(|| PyValueError::new_err("this Arrow stream was already consumed"))?;
        PyCapsule::new_with_value(py, stream, STREAM)
    }
}

/// An array handed to Python (one column), through `__arrow_c_array__`.
#[pyclass(module = "sketchpipe._native", name = "ArrowArray")]
pub struct ArrowArray(pub ArrayRef);

#[pymethods]
impl ArrowArray {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema;
        let (array, schema) =
            to_ffi(&self.0.to_data()).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let schema = PyCapsule::new_with_value(py, schema, SCHEMA)?;
        let array = PyCapsule::new_with_value(py, array, ARRAY)?;
        PyTuple::new(py, [schema.into_any(), array.into_any()])
    }
}

/// The address of the first value of a primitive array's data buffer, or of a list array's
/// child values, as this side of the boundary sees it (the tests check a numpy array's
/// memory arrives here uncopied).
pub fn values_address(array: &ArrayRef) -> Option<usize> {
    let data = array.to_data();
    let data = match data.child_data().first() {
        Some(child) if data.buffers().len() <= 1 => child.clone(),
        _ => data,
    };
    let buffer = data.buffers().first()?;
    let width = data.data_type().primitive_width()?;
    Some(buffer.as_ptr() as usize + data.offset() * width)
}

/// A stage's tables for Python, `[(name, ArrowStream)]`, each with its Parquet key-value
/// metadata (e.g. a sketch's header) as its schema's metadata.
pub fn streams(tables: Vec<OutputTable>) -> Vec<(String, ArrowStream)> {
    tables
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            let (schema, batch) = with_metadata(t);
            (name, ArrowStream::new(schema, vec![batch]))
        })
        .collect()
}

/// A table's batch with its key-value metadata in the schema, and that schema.
fn with_metadata(t: OutputTable) -> (SchemaRef, RecordBatch) {
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
