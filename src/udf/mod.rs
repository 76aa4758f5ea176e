//! SQL functions backed by the cores, registered in every session sketchpipe makes (pipeline
//! `sql` sources, the stages' own queries and `sketchpipe sql`):
//!
//! * pruning scores — `el2n`, `grand`, `el2n_probs`, `grand_probs` (`scores`);
//! * `uniform_hash(key, seed)` — the shared key hash `u(key) ∈ (0, 1)` of [`crate::hash`];
//! * `list_mean(list)`, `list_stddev(list)` — mean and sample standard deviation of a list of
//!   numbers, summed in sorted order so the result does not depend on the list's order
//!   (`lists`; the by-id averaging of `prune_scores` uses them);
//! * aggregates `top_eigenvector(rows [, algorithm, seed, ell])` and
//!   `top_eigenvector_stats(…)` ([`eigen`]), `priority_sketch(key, values, k, seed)`,
//!   `coordinated_sketch(key, values, method, size, seed [, dim])` and `sketch_merge(sketch)`,
//!   and the scalar `sketch_product(left, right)` (`sketches`). Each
//!   aggregate declares its state, so DataFusion runs it partition-parallel and merges.

pub mod eigen;
mod hash;
mod lists;
mod scores;
mod sketches;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Float64Type};
use datafusion::common::{plan_err, Result as DfResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::physical_expr::expressions::Literal;
use datafusion::prelude::SessionContext;

/// Registers every sketchpipe SQL function on `ctx`.
pub fn register(ctx: &SessionContext) {
    for f in scalar_functions() {
        ctx.register_udf(f);
    }
    for f in aggregate_functions() {
        ctx.register_udaf(f);
    }
}

/// Every sketchpipe scalar SQL function (also what a Ballista scheduler and executor register,
/// and what its plan codecs decode by name).
pub fn scalar_functions() -> Vec<ScalarUDF> {
    let mut out = Vec::new();
    for kind in [scores::Kind::El2n, scores::Kind::Grand] {
        for probs in [false, true] {
            out.push(ScalarUDF::from(scores::Score::new(kind, probs)));
        }
    }
    out.push(ScalarUDF::from(hash::UniformHash::new()));
    out.push(ScalarUDF::from(lists::ListStat::new(lists::Stat::Mean)));
    out.push(ScalarUDF::from(lists::ListStat::new(lists::Stat::StdDev)));
    out.push(ScalarUDF::from(sketches::SketchProduct::new()));
    out
}

/// Every sketchpipe aggregate SQL function.
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::from(eigen::TopEigenvector::new(eigen::Output::Vector)),
        AggregateUDF::from(eigen::TopEigenvector::new(eigen::Output::Stats)),
        AggregateUDF::from(eigen::TopEigenvector::new(eigen::Output::State)),
        AggregateUDF::from(sketches::SketchUdaf::priority()),
        AggregateUDF::from(sketches::SketchUdaf::general()),
        AggregateUDF::from(sketches::SketchMergeUdaf::new()),
    ]
}

/// A sketchpipe error inside DataFusion (its exit code survives the trip: see
/// [`crate::Error::exit_kind`]).
fn df_err(e: impl Into<crate::Error>) -> DataFusionError {
    DataFusionError::External(Box::new(e.into()))
}

/// Argument `i` of an aggregate call, which must be a constant (`None` when not given).
fn literal(args: &AccumulatorArgs, i: usize, name: &str) -> DfResult<Option<ScalarValue>> {
    let Some(expr) = args.exprs.get(i) else {
        return Ok(None);
    };
    match expr.downcast_ref::<Literal>() {
        Some(l) => Ok(Some(l.value().clone())),
        None => plan_err!("{name}: argument {} must be a constant, got {expr}", i + 1),
    }
}

/// Any list of numbers as `List<Float64>` (one code path for every list layout).
fn as_f64_list(array: &ArrayRef) -> DfResult<ListArray> {
    let target = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
    Ok(cast(array, &target)?.as_list::<i32>().clone())
}

/// A float list column's values, as stored.
enum DenseValues<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// A list-of-numbers argument read as row slices straight from the buffers (no per-row array
/// object). `List<Float32>` and `List<Float64>` are read as they are; other layouts are cast
/// to `List<Float64>` first.
struct FloatLists {
    list: ListArray,
    /// Whether any item (not list) is null: checked per row only then.
    item_nulls: bool,
}

impl FloatLists {
    fn new(array: &ArrayRef) -> DfResult<Self> {
        let list = match array.data_type() {
            DataType::List(f) if matches!(f.data_type(), DataType::Float32 | DataType::Float64) => {
                array.as_list::<i32>().clone()
            }
            _ => as_f64_list(array)?,
        };
        let item_nulls = list.values().null_count() > 0;
        Ok(FloatLists { list, item_nulls })
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn is_null(&self, row: usize) -> bool {
        self.list.is_null(row)
    }

    fn range(&self, row: usize) -> std::ops::Range<usize> {
        let o = self.list.value_offsets();
        o[row] as usize..o[row + 1] as usize
    }

    /// The row's values into `out` (meaningful only where [`Self::has_null_item`] is false).
    fn row_into(&self, row: usize, out: &mut Vec<f64>) {
        out.clear();
        let values = self.list.values();
        match values.data_type() {
            DataType::Float32 => out.extend(
                values.as_primitive::<Float32Type>().values()[self.range(row)]
                    .iter()
                    .map(|v| *v as f64),
            ),
            _ => out
                .extend_from_slice(&values.as_primitive::<Float64Type>().values()[self.range(row)]),
        }
    }

    /// Whether no list and no item is null.
    fn no_nulls(&self) -> bool {
        self.list.null_count() == 0 && !self.item_nulls
    }

    /// Every row's values, row-major (a slice of the child buffer), and the common width —
    /// or `None` when a list or item is null or the widths differ (then go row by row).
    fn dense(&self) -> Option<(DenseValues<'_>, usize)> {
        let offsets = self.list.value_offsets();
        let n = self.len();
        if n == 0 || !self.no_nulls() {
            return None;
        }
        let k = (offsets[1] - offsets[0]) as usize;
        if offsets.windows(2).any(|w| (w[1] - w[0]) as usize != k) {
            return None;
        }
        let range = offsets[0] as usize..offsets[n] as usize;
        let values = self.list.values();
        Some((
            match values.data_type() {
                DataType::Float32 => {
                    DenseValues::F32(&values.as_primitive::<Float32Type>().values()[range])
                }
                _ => DenseValues::F64(&values.as_primitive::<Float64Type>().values()[range]),
            },
            k,
        ))
    }

    /// Whether an item of the row is null.
    fn has_null_item(&self, row: usize) -> bool {
        match self.list.values().nulls() {
            Some(nulls) if self.item_nulls => self.range(row).any(|j| nulls.is_null(j)),
            _ => false,
        }
    }
}
