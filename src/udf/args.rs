//! What the SQL functions share: errors that keep their exit code, constant arguments, and
//! list-of-numbers arguments read in place.

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, ListArray, RecordBatch, RecordBatchOptions,
};
use datafusion::arrow::compute::{cast, filter, is_not_null};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{plan_err, Result as DfResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};
use datafusion::physical_expr::expressions::Literal;
use std::sync::Arc;

use crate::operators::Algorithm;
use crate::rows::{DenseRowReader, DenseRows, ListView, OnInvalid};

/// A sketchpipe error inside DataFusion (its exit code survives the trip: see
/// [`crate::Error::exit_kind`]).
pub(super) fn df_err(e: impl Into<crate::Error>) -> DataFusionError {
    DataFusionError::External(Box::new(e.into()))
}

/// Whether values of type `t` can be sketch values (any binary layout: a catalog's `sketch`
/// column read back from Parquet arrives as `BinaryView`).
pub(super) fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::Null
    )
}

/// Argument `i` of an aggregate call, which must be a constant (`None` when not given).
pub(super) fn literal(
    args: &AccumulatorArgs,
    i: usize,
    name: &str,
) -> DfResult<Option<ScalarValue>> {
    let Some(expr) = args.exprs.get(i) else {
        return Ok(None);
    };
    if let Some(l) = expr.downcast_ref::<Literal>() {
        return Ok(Some(l.value().clone()));
    }
    // A constant from another library (the `datafusion` Python package, through DataFusion's
    // FFI) is not our `Literal` type: it is still a constant if it evaluates without columns.
    let no_columns = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let value = match expr.evaluate(&no_columns) {
        Ok(ColumnarValue::Scalar(s)) => Some(s),
        Ok(ColumnarValue::Array(a)) if a.len() == 1 => Some(ScalarValue::try_from_array(&a, 0)?),
        _ => None,
    };
    match value {
        Some(v) => Ok(Some(v)),
        None => plan_err!("{name}: argument {} must be a constant, got {expr}", i + 1),
    }
}

/// Any list of numbers as `List<Float64>` (one code path for every list layout).
pub(super) fn as_f64_list(array: &ArrayRef) -> DfResult<ListArray> {
    let target = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
    Ok(cast(array, &target)?.as_list::<i32>().clone())
}

/// A list-of-numbers argument, read as row slices straight from the buffers (no per-row array
/// object) through the rows adapter's [`ListView`] — taken once per batch, not per row.
/// `List<Float32>` and `List<Float64>` are read as they are; other layouts are cast to
/// `List<Float64>` first.
pub(super) struct FloatLists {
    list: ListArray,
}

impl FloatLists {
    pub(super) fn new(array: &ArrayRef) -> DfResult<Self> {
        let list = match array.data_type() {
            DataType::List(f) if matches!(f.data_type(), DataType::Float32 | DataType::Float64) => {
                array.as_list::<i32>().clone()
            }
            _ => as_f64_list(array)?,
        };
        Ok(FloatLists { list })
    }

    /// The rows, in place.
    pub(super) fn view(&self) -> ListView<'_> {
        ListView::of(&self.list).expect("a list of Float32 or Float64")
    }
}

/// The rows a scalar function's call computes, and whether every argument is a constant (then
/// one row, and the result is a constant too: [`call_result`]).
pub(super) fn call_rows(args: &ScalarFunctionArgs) -> (usize, bool) {
    let scalar = args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)));
    (if scalar { 1 } else { args.number_rows }, scalar)
}

/// The result of a call [`call_rows`] sized: a constant when every argument was one.
pub(super) fn call_result(array: ArrayRef, scalar: bool) -> DfResult<ColumnarValue> {
    Ok(if scalar {
        ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
    } else {
        ColumnarValue::Array(array)
    })
}

/// The `rows` argument of a rows aggregate (`top_eigenvector`, `pca`): a list column or one
/// number, read through the rows adapter; NULL rows are skipped as SQL aggregates skip NULLs.
#[derive(Debug)]
pub(super) struct RowsArg {
    schema: SchemaRef,
    reader: DenseRowReader,
}

impl RowsArg {
    pub(super) fn new(args: &AccumulatorArgs, name: &str) -> DfResult<Self> {
        let field = args.expr_fields[0].as_ref().clone().with_name("rows");
        let schema: SchemaRef = Arc::new(Schema::new(vec![field]));
        let reader = DenseRowReader::new(&schema, &["rows".to_string()], OnInvalid::Error)
            .map_err(|e| df_err(e.context(name)))?;
        Ok(RowsArg { schema, reader })
    }

    /// Hands `f` the batch's non-null rows, when there are any.
    pub(super) fn with_rows(
        &mut self,
        values: &[ArrayRef],
        name: &str,
        f: impl FnOnce(DenseRows<'_>) -> DfResult<()>,
    ) -> DfResult<()> {
        let mut column = Arc::clone(&values[0]);
        if column.null_count() > 0 {
            column = filter(&column, &is_not_null(&column)?)?;
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), vec![column])?;
        let rows = self
            .reader
            .read(&batch)
            .map_err(|e| df_err(e.context(name)))?;
        if rows.rows == 0 {
            return Ok(());
        }
        f(rows)
    }
}

/// An aggregate's state as scalars: row 0 of `columns`, or nulls of `fields` for an empty
/// state.
pub(super) fn state_scalars(
    fields: &[Field],
    columns: Option<Vec<ArrayRef>>,
) -> DfResult<Vec<ScalarValue>> {
    match columns {
        None => fields
            .iter()
            .map(|f| ScalarValue::try_from(f.data_type()))
            .collect(),
        Some(c) => c
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect(),
    }
}

/// A constant argument of a given kind, or `None` when not given.
pub(super) fn constant<T>(
    args: &AccumulatorArgs,
    i: usize,
    name: &str,
    what: &str,
    read: impl Fn(&ScalarValue) -> Option<T>,
) -> DfResult<Option<T>> {
    match literal(args, i, name)? {
        None | Some(ScalarValue::Null) => Ok(None),
        Some(v) => match read(&v) {
            Some(x) => Ok(Some(x)),
            None => plan_err!("{name}: argument {} must be {what}, got {v}", i + 1),
        },
    }
}

pub(super) fn as_u64(v: &ScalarValue) -> Option<u64> {
    match v.cast_to(&DataType::UInt64).ok()? {
        ScalarValue::UInt64(Some(x)) => Some(x),
        _ => None,
    }
}

pub(super) fn as_bool(v: &ScalarValue) -> Option<bool> {
    match v {
        ScalarValue::Boolean(Some(b)) => Some(*b),
        _ => None,
    }
}

pub(super) fn as_string(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The `algorithm` argument (position `i`) of a rows aggregate: `exact` (the default) or
/// `frequent-directions`, the algorithms that merge; `stage` names the op whose pipeline stage
/// runs the others.
pub(super) fn sql_algorithm(
    args: &AccumulatorArgs,
    i: usize,
    name: &str,
    stage: &str,
) -> DfResult<Algorithm> {
    let Some(s) = constant(args, i, name, "a string", as_string)? else {
        return Ok(Algorithm::Exact);
    };
    match Algorithm::parse(&s) {
        Some(a @ (Algorithm::Exact | Algorithm::FrequentDirections)) => Ok(a),
        Some(a) => plan_err!(
            "{name}: algorithm '{}' needs one pass over the rows in a random order and does not \
             merge, so it cannot run as an SQL aggregate (DataFusion runs those \
             partition-parallel and merges); use 'exact' or 'frequent-directions' here, or a \
             {stage} pipeline stage",
            a.as_str()
        ),
        None => {
            plan_err!("{name}: unknown algorithm '{s}'; SQL runs 'exact' and 'frequent-directions'")
        }
    }
}
