//! The pruning scores as SQL functions:
//!
//! * `el2n(logits, label)` — `‖softmax(logits) − e_label‖₂`, EL2N of Paul, Ganguli, Dziugaite,
//!   *Deep Learning on a Data Diet*, NeurIPS 2021, arXiv:2107.07075 ([`crate::prune::el2n`]);
//! * `grand(logits, label, embedding)` — last-layer GraNd `EL2N · sqrt(‖embedding‖² + 1)`
//!   ([`crate::prune::grand_last_layer`]);
//! * `el2n_probs(probs, label)`, `grand_probs(probs, label, embedding)` — the same from logged
//!   probabilities (checked: finite, in `[0, 1]`, summing to 1).
//!
//! `logits` is a list (`List`, `LargeList` or `FixedSizeList`) of floats; `label` an integer
//! class or a list of floats (a one-hot or soft label distribution). A null argument gives a
//! null score; a label outside `[0, K)`, a non-finite logit or a label list of the wrong length
//! is an error naming the row — never a silent null.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, PrimitiveArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{exec_err, plan_err, Result as DfResult};
use datafusion::logical_expr::{
    AggregateUDF, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::args::FloatLists;
use crate::operators::op::Functions;
use crate::prune::{check_probabilities, el2n, el2n_rows, grand_last_layer, softmax_into, Target};
use crate::rows::is_number_list;
use crate::rows::{Floats, ListView};

/// The `prune_scores` op's SQL functions: `el2n`, `el2n_probs`, `grand`, `grand_probs`, and
/// the by-id aggregate `run_stats`.
pub fn functions() -> Functions {
    let mut scalar = Vec::new();
    for kind in [Kind::El2n, Kind::Grand] {
        for probs in [false, true] {
            scalar.push(ScalarUDF::from(Score::new(kind, probs)));
        }
    }
    Functions {
        scalar,
        aggregate: vec![AggregateUDF::from(super::run_stats::RunStats::new())],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    El2n,
    Grand,
}

/// `el2n` or `grand`, from logits or probabilities: the same row loop, GraNd with one more
/// argument.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct Score {
    kind: Kind,
    probs: bool,
    signature: Signature,
}

impl Score {
    pub(super) fn new(kind: Kind, probs: bool) -> Self {
        let arity = match kind {
            Kind::El2n => 2,
            Kind::Grand => 3,
        };
        Score {
            kind,
            probs,
            signature: Signature::any(arity, Volatility::Immutable),
        }
    }

    fn usage(&self) -> &'static str {
        match (self.kind, self.probs) {
            (Kind::El2n, false) => "el2n(logits LIST<FLOAT>, label INT | LIST<FLOAT>)",
            (Kind::Grand, false) => {
                "grand(logits LIST<FLOAT>, label INT | LIST<FLOAT>, embedding LIST<FLOAT>)"
            }
            (Kind::El2n, true) => "el2n_probs(probs LIST<FLOAT>, label INT | LIST<FLOAT>)",
            (Kind::Grand, true) => {
                "grand_probs(probs LIST<FLOAT>, label INT | LIST<FLOAT>, embedding LIST<FLOAT>)"
            }
        }
    }

    /// The common case at batch speed: logits (not probabilities) of one width, class labels,
    /// nothing null — EL2N through [`el2n_rows`], GraNd from it and `‖h‖²` per row. `None`
    /// leaves the batch to the row-by-row path (which also names any bad row).
    fn whole_batch(
        &self,
        outputs: &ListView<'_>,
        classes: Option<&PrimitiveArray<Int64Type>>,
        embedding: Option<&ListView<'_>>,
    ) -> Option<Vec<f64>> {
        let classes = classes.filter(|c| c.null_count() == 0)?;
        if self.probs || embedding.is_some_and(|e| !e.no_nulls()) {
            return None;
        }
        let (z, k) = outputs.uniform(None)?;
        let mut scores = Vec::with_capacity(outputs.len());
        // The exponentials' scratch is kept per thread: a batch's (8192 rows × k) is past the
        // allocator's mmap threshold, fresh zeroed pages on every call. Past 8 MiB (k in the
        // hundreds) it is let go after the batch rather than held by every worker thread.
        const KEEP: usize = (8 << 20) / 8;
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|e| {
            let done = match z {
                Floats::F32(z) => el2n_rows(z, k, classes.values(), e, &mut scores),
                Floats::F64(z) => el2n_rows(z, k, classes.values(), e, &mut scores),
            };
            if e.capacity() > KEEP {
                *e = Vec::new();
            }
            done
        })?;
        if let Some(lists) = embedding {
            let mut h = Vec::new();
            for (row, score) in scores.iter_mut().enumerate() {
                *score = grand_of_row(*score, lists, row, &mut h);
            }
        }
        Some(scores)
    }
}

/// GraNd of row `row` from its EL2N and its embedding `h` (read into the scratch `h`).
fn grand_of_row(el2n: f64, embedding: &ListView<'_>, row: usize, h: &mut Vec<f64>) -> f64 {
    embedding.row_into(row, h);
    let h_sq: f64 = h.iter().map(|v| v * v).sum();
    grand_last_layer(el2n, h_sq, true)
}

impl ScalarUDFImpl for Score {
    fn name(&self) -> &str {
        match (self.kind, self.probs) {
            (Kind::El2n, false) => "el2n",
            (Kind::Grand, false) => "grand",
            (Kind::El2n, true) => "el2n_probs",
            (Kind::Grand, true) => "grand_probs",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        let ok_label = args[1].is_integer() || is_number_list(&args[1]);
        let ok_embedding = args.get(2).is_none_or(is_number_list);
        if !is_number_list(&args[0]) || !ok_label || !ok_embedding {
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
        self.scores(&arrays).map(ColumnarValue::Array)
    }
}

/// One of the four score functions (`el2n`, `grand`, `el2n_probs`, `grand_probs`) over whole
/// arrays, outside SQL — the Python package's `el2n`/`grand`: the same code and the same
/// messages as the SQL function, its arguments as the SQL function takes them.
pub fn evaluate(name: &str, args: &[ArrayRef]) -> crate::Result<ArrayRef> {
    let score = [Kind::El2n, Kind::Grand]
        .into_iter()
        .flat_map(|kind| [false, true].map(|probs| Score::new(kind, probs)))
        .find(|s| s.name() == name)
        .ok_or_else(|| crate::Error::Config(format!("no score function `{name}`")))?;
    let arity = match score.kind {
        Kind::El2n => 2,
        Kind::Grand => 3,
    };
    if args.len() != arity {
        return Err(crate::Error::Config(format!(
            "{name} takes {arity} arguments: {}",
            score.usage()
        )));
    }
    let types: Vec<DataType> = args.iter().map(|a| a.data_type().clone()).collect();
    score.return_type(&types)?;
    if let Some(other) = args.iter().find(|a| a.len() != args[0].len()) {
        return Err(crate::Error::Input(format!(
            "{name}: the arguments have {} and {} rows",
            args[0].len(),
            other.len()
        )));
    }
    Ok(score.scores(args)?)
}

impl Score {
    fn scores(&self, arrays: &[ArrayRef]) -> DfResult<ArrayRef> {
        let outputs = FloatLists::new(&arrays[0])?;
        let outputs = outputs.view();
        let label = &arrays[1];
        let (classes, soft) = if label.data_type().is_integer() {
            (Some(cast(label, &DataType::Int64)?), None)
        } else {
            (None, Some(FloatLists::new(label)?))
        };
        let soft = soft.as_ref().map(FloatLists::view);
        let classes = classes.as_ref().map(|c| c.as_primitive::<Int64Type>());
        let embedding = arrays.get(2).map(FloatLists::new).transpose()?;
        let embedding = embedding.as_ref().map(FloatLists::view);
        let n = outputs.len();
        if let Some(scores) = self.whole_batch(&outputs, classes, embedding.as_ref()) {
            return Ok(Arc::new(Float64Array::from(scores)));
        }
        let mut out = Vec::with_capacity(n);
        let (mut p, mut z, mut q, mut h) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in 0..n {
            let null = outputs.is_null(row)
                || label.is_null(row)
                || embedding.as_ref().is_some_and(|e| e.is_null(row));
            if null {
                out.push(None);
                continue;
            }
            if outputs.null_value(row).is_some() {
                return exec_err!("{}: row {row}: the model output holds a null", self.name());
            }
            outputs.row_into(row, &mut z);
            let fail = |e: sketchpipe_core::Error| {
                datafusion::error::DataFusionError::Execution(format!(
                    "{}: row {row}: {e}",
                    self.name()
                ))
            };
            if self.probs {
                check_probabilities(&z).map_err(fail)?;
                std::mem::swap(&mut p, &mut z);
            } else {
                softmax_into(&z, &mut p).map_err(fail)?;
            }
            let target = match (&classes, &soft) {
                (Some(c), _) => Target::Class(c.value(row)),
                (None, Some(labels)) => {
                    labels.row_into(row, &mut q);
                    Target::Distribution(&q)
                }
                (None, None) => unreachable!("one of the two label forms"),
            };
            let e = el2n(&p, target).map_err(fail)?;
            out.push(Some(match &embedding {
                None => e,
                Some(lists) => grand_of_row(e, lists, row, &mut h),
            }));
        }
        Ok(Arc::new(Float64Array::from(out)))
    }
}
