//! What the SQL functions share: errors that keep their exit code, constant arguments, and
//! list-of-numbers arguments read in place.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{plan_err, Result as DfResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};
use datafusion::physical_expr::expressions::Literal;
use std::sync::Arc;

use crate::rows::ListView;

/// A sketchpipe error inside DataFusion (its exit code survives the trip: see
/// [`crate::Error::exit_kind`]).
pub(super) fn df_err(e: impl Into<crate::Error>) -> DataFusionError {
    DataFusionError::External(Box::new(e.into()))
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
    match expr.downcast_ref::<Literal>() {
        Some(l) => Ok(Some(l.value().clone())),
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
