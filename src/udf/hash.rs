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
            _ => return exec_err!("uniform_hash: the seed must be a constant integer"),
        };
        let keys = args.args[0].to_array(args.number_rows)?;
        let t = keys.data_type().clone();
        let out: Float64Array = if is_string(&t) {
            let keys = cast(&keys, &DataType::Utf8)?;
            let keys = keys.as_string::<i32>();
            keys.iter()
                .map(|k| k.map(|k| uniform(Key::Str(k), seed)))
                .collect()
        } else if t.is_signed_integer() {
            let keys = cast(&keys, &DataType::Int64)?;
            keys.as_primitive::<Int64Type>()
                .iter()
                .map(|k| k.map(|k| uniform(Key::Int(k), seed)))
                .collect()
        } else {
            let keys = cast(&keys, &DataType::UInt64)?;
            keys.as_primitive::<UInt64Type>()
                .iter()
                .map(|k| k.map(|k| uniform(Key::UInt(k), seed)))
                .collect()
        };
        debug_assert_eq!(out.len(), keys.len());
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
