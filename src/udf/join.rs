//! Estimates over the join of two coordinated sketches, in SQL (the cores:
//! [`crate::sketch::join`]; Daliri, Freire, Musco, Santos, Zhang, VLDB 2024, arXiv:2309.16157):
//!
//! * `join_size(a, b [, confidence])` — the number of keys both tables have;
//! * `join_inner_product(a, b, i, j [, confidence])` — `Σ a_i b_j` over the shared keys;
//! * `join_correlation(a, b, i, j [, confidence])` — the Pearson correlation over the shared
//!   keys of column `i` of `a` with column `j` of `b`;
//! * `join_r2(a, b, target [, lambda [, confidence]])` — the R² of the ridge regression (with
//!   an intercept) of column `target` of `a` on every column of `b` over the shared keys.
//!
//! `a` and `b` are sketch values (`coordinated_sketch`, `priority_sketch`, a catalog's
//! `sketch` column) made with the same method and seed; column positions start at 1, as in
//! `sketch_product`'s matrix; `confidence` defaults to 0.95 and `lambda` to 0. Each returns a
//! struct `{estimate, lower_bound, upper_bound, note}`: the estimate and its interval, or nulls
//! and the reason in `note` (a join too small to estimate, a constant column, a sketch that
//! cannot see every key). A NULL sketch gives a NULL struct. Sketches of other seeds, methods
//! or key types, and linear sketches, are errors naming the cause.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Float64Array, StringArray, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type};
use datafusion::common::{exec_err, plan_err, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::args::{call_result, call_rows, df_err, is_binary};
use crate::operators::coordinated_sketch::table;
use crate::sketch::join::{Estimate, JoinEstimator};
use crate::sketch::stored::{self, Header, StoredSketch};

/// Which estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinStat {
    Size,
    InnerProduct,
    Correlation,
    R2,
}

impl JoinStat {
    fn name(&self) -> &'static str {
        match self {
            JoinStat::Size => "join_size",
            JoinStat::InnerProduct => "join_inner_product",
            JoinStat::Correlation => "join_correlation",
            JoinStat::R2 => "join_r2",
        }
    }

    /// The numeric arguments after the two sketches: required, then optional.
    fn arguments(&self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            JoinStat::Size => (&[], &["confidence"]),
            JoinStat::InnerProduct | JoinStat::Correlation => (&["i", "j"], &["confidence"]),
            JoinStat::R2 => (&["target"], &["lambda", "confidence"]),
        }
    }

    fn usage(&self) -> String {
        let (req, opt) = self.arguments();
        let mut s = format!("{}(a, b", self.name());
        for a in req {
            s.push_str(&format!(", {a}"));
        }
        for a in opt {
            s.push_str(&format!(" [, {a}"));
        }
        s.push_str(&"]".repeat(opt.len()));
        s.push(')');
        s
    }
}

/// The result struct's fields.
pub static RESULT_FIELDS: LazyLock<Fields> = LazyLock::new(|| {
    Fields::from(vec![
        Field::new("estimate", DataType::Float64, true),
        Field::new("lower_bound", DataType::Float64, true),
        Field::new("upper_bound", DataType::Float64, true),
        Field::new("note", DataType::Utf8, true),
    ])
});

/// The join estimators' SQL functions.
pub fn join_functions() -> Vec<ScalarUDF> {
    [
        JoinStat::Size,
        JoinStat::InnerProduct,
        JoinStat::Correlation,
        JoinStat::R2,
    ]
    .into_iter()
    .map(|s| ScalarUDF::from(JoinUdf::new(s)))
    .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JoinUdf {
    stat: JoinStat,
    signature: Signature,
}

impl JoinUdf {
    fn new(stat: JoinStat) -> Self {
        let (req, opt) = stat.arguments();
        let arities = (0..=opt.len())
            .map(|o| TypeSignature::Any(2 + req.len() + o))
            .collect();
        JoinUdf {
            stat,
            signature: Signature::one_of(arities, Volatility::Immutable),
        }
    }
}

/// One sketch value, decoded once for a run of equal values (a query sketch repeated down a
/// cross join with a catalog is decoded once).
#[derive(Default)]
struct Decoded {
    bytes: Vec<u8>,
    sketch: Option<(StoredSketch, Header)>,
}

impl Decoded {
    fn get(&mut self, bytes: &[u8], what: &str) -> DfResult<&(StoredSketch, Header)> {
        if self.sketch.is_none() || self.bytes != bytes {
            let (s, h) = table::from_bytes(bytes, what).map_err(df_err)?;
            self.bytes = bytes.to_vec();
            self.sketch = Some((s, h));
        }
        Ok(self.sketch.as_ref().expect("just decoded"))
    }
}

impl ScalarUDFImpl for JoinUdf {
    fn name(&self) -> &str {
        self.stat.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        for (i, t) in args.iter().enumerate() {
            let ok = if i < 2 {
                is_binary(t)
            } else {
                t.is_numeric() || *t == DataType::Null
            };
            if !ok {
                let what = if i < 2 {
                    "a sketch value (Binary)"
                } else {
                    "a number"
                };
                return plan_err!(
                    "{}: argument {} must be {what}, got {t}",
                    self.stat.usage(),
                    i + 1
                );
            }
        }
        Ok(DataType::Struct(RESULT_FIELDS.clone()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (n, scalar) = call_rows(&args);
        let usage = self.stat.usage();
        let binary = |k: usize| -> DfResult<BinaryArray> {
            let a = args.args[k].to_array(n)?;
            Ok(cast(&a, &DataType::Binary)?.as_binary::<i32>().clone())
        };
        let (left, right) = (binary(0)?, binary(1)?);
        let numbers: Vec<Float64Array> = args.args[2..]
            .iter()
            .map(|a| -> DfResult<Float64Array> {
                let a = a.to_array(n)?;
                Ok(cast(&a, &DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone())
            })
            .collect::<DfResult<_>>()?;
        // Column positions must be whole numbers; read them as integers too.
        let positions: Vec<Option<ArrayRef>> = args.args[2..]
            .iter()
            .map(|a| {
                a.to_array(n)
                    .ok()
                    .and_then(|a| cast(&a, &DataType::Int64).ok())
            })
            .collect();
        let (req, opt) = self.stat.arguments();
        let mut est = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut notes: Vec<Option<String>> = Vec::with_capacity(n);
        let mut valid = Vec::with_capacity(n);
        let (mut da, mut db) = (Decoded::default(), Decoded::default());
        for i in 0..n {
            let number = |k: usize| -> Option<f64> {
                numbers.get(k).filter(|a| a.is_valid(i)).map(|a| a.value(i))
            };
            if left.is_null(i) || right.is_null(i) || (0..req.len()).any(|k| number(k).is_none()) {
                est.0.push(None);
                est.1.push(None);
                est.2.push(None);
                notes.push(None);
                valid.push(false);
                continue;
            }
            let position = |k: usize| -> DfResult<usize> {
                let v = number(k).expect("checked");
                let whole = positions[k]
                    .as_ref()
                    .map(|a| a.as_primitive::<Int64Type>().value(i) as f64 == v)
                    .unwrap_or(false);
                if !whole || v < 1.0 {
                    return exec_err!(
                        "{usage}: `{}` is a column position, a whole number from 1; got {v}",
                        req[k]
                    );
                }
                Ok(v as usize - 1)
            };
            let optional = |name: &str, default: f64| -> f64 {
                opt.iter()
                    .position(|o| *o == name)
                    .and_then(|k| number(req.len() + k))
                    .unwrap_or(default)
            };
            let confidence = optional("confidence", 0.95);
            let what = |side: &str| format!("{}'s {side} sketch", self.stat.name());
            let (sa, ha) = da.get(left.value(i), &what("first"))?;
            let (sb, hb) = db.get(right.value(i), &what("second"))?;
            stored::check_compatible(
                (sa, ha, "the first argument"),
                (sb, hb, "the second argument"),
            )
            .map_err(|e| df_err(crate::Error::from(e).context(self.stat.name())))?;
            let samples = sa
                .sample(&what("first"))
                .and_then(|a| Ok((a, sb.sample(&what("second"))?)))
                .map_err(|e| df_err(crate::Error::from(e)))?;
            let e = JoinEstimator::new(samples.0, samples.1, confidence)
                .map_err(|e| df_err(crate::Error::from(e).context(&usage)))?;
            let estimate: Estimate = match self.stat {
                JoinStat::Size => Ok(e.join_size()),
                JoinStat::InnerProduct => e.inner_product(position(0)?, position(1)?),
                JoinStat::Correlation => e.correlation(position(0)?, position(1)?),
                JoinStat::R2 => e.r2(position(0)?, optional("lambda", 0.0)),
            }
            .map_err(|e| df_err(crate::Error::from(e).context(&usage)))?;
            match estimate {
                Ok(v) => {
                    est.0.push(Some(v.estimate));
                    est.1.push(Some(v.lower));
                    est.2.push(Some(v.upper));
                    notes.push(None);
                }
                Err(why) => {
                    est.0.push(None);
                    est.1.push(None);
                    est.2.push(None);
                    notes.push(Some(why));
                }
            }
            valid.push(true);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Float64Array::from(est.0)),
            Arc::new(Float64Array::from(est.1)),
            Arc::new(Float64Array::from(est.2)),
            Arc::new(StringArray::from(notes)),
        ];
        let nulls = NullBuffer::from(valid);
        let out = StructArray::try_new(RESULT_FIELDS.clone(), columns, Some(nulls))?;
        call_result(Arc::new(out), scalar)
    }
}
