//! `uniform_hash(key, seed)`: the shared key hash `u(key) ∈ (0, 1)` of [`crate::hash`] for an
//! integer or string key column. The same key and seed give the same value on every machine.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, UInt64Type};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::hash::{uniform, Key};
use crate::rows::is_string;

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct UniformHash {
    signature: Signature,
}

impl UniformHash {
    pub(super) fn new() -> Self {
        UniformHash {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for UniformHash {
    fn name(&self) -> &str {
        "uniform_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if !(args[0].is_integer() || is_string(&args[0])) || !args[1].is_integer() {
            return plan_err!(
                "uniform_hash: got ({}, {}); expected uniform_hash(key INT | STRING, seed INT)",
                args[0],
                args[1]
            );
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let seed = match &args.args[1] {
            ColumnarValue::Scalar(s) if !s.is_null() => match s.cast_to(&DataType::UInt64)? {
                ScalarValue::UInt64(Some(v)) => v,
                _ => return exec_err!("uniform_hash: the seed must be a non-negative integer"),
            },
            // Through DataFusion's FFI (the Python package's `register`) a constant arrives
            // as an array of one repeated value.
            ColumnarValue::Array(a) => match constant_seed(a)? {
                Some(seed) => seed,
                None if a.is_empty() => 0, // no rows to hash
                None => return exec_err!("uniform_hash: the seed must be a constant integer"),
            },
            _ => return exec_err!("uniform_hash: the seed must be a constant integer"),
        };
        let keys = args.args[0].to_array(args.number_rows)?;
        Ok(ColumnarValue::Array(Arc::new(hashes(&keys, seed)?)))
    }
}

/// The one value of an array of a repeated non-negative integer, or `None` when it varies,
/// is null or the array is empty.
fn constant_seed(a: &dyn Array) -> DfResult<Option<u64>> {
    if a.is_empty() || a.null_count() > 0 || !a.data_type().is_integer() {
        return Ok(None);
    }
    if a.data_type().is_unsigned_integer() {
        let wide = cast(a, &DataType::UInt64)?;
        let values = wide.as_primitive::<UInt64Type>().values();
        return Ok(values.iter().all(|v| *v == values[0]).then_some(values[0]));
    }
    let wide = cast(a, &DataType::Int64)?;
    let values = wide.as_primitive::<Int64Type>().values();
    let first = values[0];
    Ok((first >= 0 && values.iter().all(|v| *v == first)).then_some(first as u64))
}

/// `u(key)` of every key of an integer or string array (null for a null key): the SQL
/// function's values, for callers outside SQL (the Python package's `uniform_hash`).
pub fn uniform_hashes(keys: &dyn Array, seed: u64) -> crate::Result<Float64Array> {
    let t = keys.data_type();
    if !(t.is_integer() || is_string(t)) {
        return Err(crate::Error::Input(format!(
            "uniform_hash: keys of type {t}; expected integers or strings"
        )));
    }
    Ok(hashes(keys, seed)?)
}

fn hashes(keys: &dyn Array, seed: u64) -> DfResult<Float64Array> {
    let t = keys.data_type().clone();
    let out: Float64Array = if is_string(&t) {
        let keys = cast(keys, &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        keys.iter()
            .map(|k| k.map(|k| uniform(Key::Str(k), seed)))
            .collect()
    } else if t.is_signed_integer() {
        let keys = cast(keys, &DataType::Int64)?;
        keys.as_primitive::<Int64Type>()
            .iter()
            .map(|k| k.map(|k| uniform(Key::Int(k), seed)))
            .collect()
    } else {
        let keys = cast(keys, &DataType::UInt64)?;
        keys.as_primitive::<UInt64Type>()
            .iter()
            .map(|k| k.map(|k| uniform(Key::UInt(k), seed)))
            .collect()
    };
    debug_assert_eq!(out.len(), keys.len());
    Ok(out)
}
