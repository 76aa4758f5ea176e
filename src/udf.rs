//! SQL scalar functions backed by the cores, registered in every session sketchpipe makes
//! (pipeline `sql` sources and `sketchpipe sql`):
//!
//! * `el2n(logits, label)` — `‖softmax(logits) − e_label‖₂`, EL2N of Paul, Ganguli, Dziugaite,
//!   *Deep Learning on a Data Diet*, NeurIPS 2021, arXiv:2107.07075 ([`crate::prune::el2n`]);
//! * `grand(logits, label, embedding)` — last-layer GraNd `EL2N · sqrt(‖embedding‖² + 1)`
//!   ([`crate::prune::grand_last_layer`]).
//!
//! `logits` is a list (`List`, `LargeList` or `FixedSizeList`) of floats; `label` an integer
//! class or a list of floats (a one-hot or soft label distribution). A null argument gives a
//! null score; a label outside `[0, K)`, a non-finite logit or a label list of the wrong length
//! is an error naming the row — never a silent null.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use datafusion::common::{exec_err, plan_err, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::prune::{el2n, grand_last_layer, softmax_into, Target};

/// Registers every sketchpipe SQL function on `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(Score::new(Kind::El2n)));
    ctx.register_udf(ScalarUDF::from(Score::new(Kind::Grand)));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    El2n,
    Grand,
}

/// `el2n` or `grand`: the same row loop, GraNd with one more argument.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Score {
    kind: Kind,
    signature: Signature,
}

impl Score {
    fn new(kind: Kind) -> Self {
        let arity = match kind {
            Kind::El2n => 2,
            Kind::Grand => 3,
        };
        Score {
            kind,
            signature: Signature::any(arity, Volatility::Immutable),
        }
    }

    fn usage(&self) -> &'static str {
        match self.kind {
            Kind::El2n => "el2n(logits LIST<FLOAT>, label INT | LIST<FLOAT>)",
            Kind::Grand => {
                "grand(logits LIST<FLOAT>, label INT | LIST<FLOAT>, embedding LIST<FLOAT>)"
            }
        }
    }
}

fn is_float_list(t: &DataType) -> bool {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().is_floating() || f.data_type().is_integer()
        }
        _ => false,
    }
}

/// Any list of numbers as `List<Float64>` (one code path for every list layout).
fn as_f64_list(array: &ArrayRef) -> DfResult<ListArray> {
    let target = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
    Ok(cast(array, &target)?.as_list::<i32>().clone())
}

impl ScalarUDFImpl for Score {
    fn name(&self) -> &str {
        match self.kind {
            Kind::El2n => "el2n",
            Kind::Grand => "grand",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        let ok_label = args[1].is_integer() || is_float_list(&args[1]);
        let ok_embedding = args.get(2).is_none_or(is_float_list);
        if !is_float_list(&args[0]) || !ok_label || !ok_embedding {
            return plan_err!(
                "{}: got ({}); expected {}",
                self.name(),
                args.iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.usage()
            );
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let logits = as_f64_list(&arrays[0])?;
        let label = &arrays[1];
        let (classes, soft) = if label.data_type().is_integer() {
            (Some(cast(label, &DataType::Int64)?), None)
        } else {
            (None, Some(as_f64_list(label)?))
        };
        let embedding = arrays.get(2).map(as_f64_list).transpose()?;
        let n = logits.len();
        let mut out = Vec::with_capacity(n);
        let mut p = Vec::new();
        for row in 0..n {
            let null = logits.is_null(row)
                || label.is_null(row)
                || embedding.as_ref().is_some_and(|e| e.is_null(row));
            if null {
                out.push(None);
                continue;
            }
            let z = logits.value(row);
            let z = z.as_primitive::<Float64Type>();
            if z.null_count() > 0 {
                return exec_err!("{}: row {row}: the logits hold a null", self.name());
            }
            let fail = |e: crate::Error| {
                datafusion::error::DataFusionError::Execution(format!(
                    "{}: row {row}: {e}",
                    self.name()
                ))
            };
            softmax_into(z.values(), &mut p).map_err(fail)?;
            let soft_row = soft.as_ref().map(|s| s.value(row));
            let target = match (&classes, &soft_row) {
                (Some(c), _) => Target::Class(c.as_primitive::<Int64Type>().value(row)),
                (None, Some(q)) => Target::Distribution(q.as_primitive::<Float64Type>().values()),
                (None, None) => unreachable!("one of the two label forms"),
            };
            let e = el2n(&p, target).map_err(fail)?;
            out.push(Some(match &embedding {
                None => e,
                Some(h) => {
                    let h = h.value(row);
                    let h_sq: f64 = h
                        .as_primitive::<Float64Type>()
                        .values()
                        .iter()
                        .map(|v| v * v)
                        .sum();
                    grand_last_layer(e, h_sq, true)
                }
            }));
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}
