//! Coordinated sketches in SQL, backed by the `coordinated_sketch` operator and the
//! `sketch_merge` / `sketch_product` cores (Daliri, Freire, Li, Musco, *Matrix Product
//! Sketching via Coordinated Sampling*, ICLR 2025, arXiv:2501.17836):
//!
//! * `priority_sketch(key, values, k, seed)` — aggregate: a priority sample of `k` rows of the
//!   group, as one `Binary` value (the `sketch` table's format, [`table::to_bytes`]). Its
//!   state is that value: partitions' samples merge exactly as in one pass (the union's `k`
//!   smallest ranks, `τ` the (k+1)-th).
//! * `coordinated_sketch(key, values, method, size, seed [, dim] [, weights])` — aggregate: the
//!   sketch the `coordinated_sketch` stage makes, for every method that merges: `'priority'`
//!   (the same as `priority_sketch`), `'exact'` (every row), `'jl'` and `'countsketch'` (linear
//!   sketches of `size` rows: partitions' sketches add up, equal to one pass up to rounding).
//!   `threshold` is refused: its sampling level depends on the whole input's `‖A‖_F²`, so two
//!   sketches of parts do not merge into the sketch of the whole. `dim` is the width of a
//!   sparse `List<Struct<index, value>>` column's rows; `weights` (`'norm'`, the default, or
//!   `'uniform'`) how sampled rows are weighted, as the stage's key.
//! * `sketch_merge(sketch)` — aggregate: one sketch from sketches of disjoint rows (e.g. one
//!   per day), as if built in one pass.
//! * `sketch_product(left, right)` — scalar: the estimate of `AᵀB` as a `d × m` matrix (a list
//!   of `d` rows of `m` values), refusing sketches with different seeds, methods or key types.
//!
//! Rows with a NULL key or NULL values are ignored (as SQL aggregates ignore NULLs; such a
//! row could not be joined anyway); a key that appears twice among the kept rows is an error
//! naming it — aggregate the rows of a key first.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Float64Builder, ListBuilder, RecordBatch,
};
use datafusion::arrow::compute::kernels::boolean::and;
use datafusion::arrow::compute::{cast, filter_record_batch, is_not_null};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::args::{call_result, call_rows, df_err, is_binary, literal};
use crate::operators::coordinated_sketch::{table, CoordinatedSketchOp, CoordinatedSketchParams};
use crate::operators::op::Functions;
use crate::operators::{Operator, PassInfo};
use crate::rows::{is_number_list, is_sparse_list, is_string};
use crate::sketch::stored::{self, Header, StoredSketch};
use crate::sketch::{Method, Weights};

/// A sketch and its header.
type Sketch = (StoredSketch, Header);

/// `a` and `b` as one sketch (`what` names the function in errors).
fn merge_two(a: Option<Sketch>, b: Sketch, what: &str) -> DfResult<Sketch> {
    match a {
        None => Ok(b),
        Some(a) => {
            let inputs = vec![
                (a.0, a.1, format!("{what} (one part)")),
                (b.0, b.1, format!("{what} (another part)")),
            ];
            stored::merge(inputs).map_err(df_err)
        }
    }
}

fn to_scalar(s: Option<&Sketch>) -> DfResult<ScalarValue> {
    Ok(ScalarValue::Binary(match s {
        Some((s, h)) => Some(table::to_bytes(s, h).map_err(df_err)?),
        None => None,
    }))
}

/// Every non-null sketch value of `array`, merged into `acc`.
fn merge_values(acc: &mut Option<Sketch>, array: &ArrayRef, what: &str) -> DfResult<()> {
    let values = binary_values(array, what)?;
    for v in values.iter().flatten() {
        let s = table::from_bytes(v, what).map_err(df_err)?;
        *acc = Some(merge_two(acc.take(), s, what)?);
    }
    Ok(())
}

/// Sketch values as `Binary`, from any binary layout (a catalog's `sketch` column read back
/// from Parquet arrives as `BinaryView`).
fn binary_values(array: &ArrayRef, what: &str) -> DfResult<BinaryArray> {
    if !is_binary(array.data_type()) {
        return exec_err!(
            "{what}: expected sketch values (Binary), got {}",
            array.data_type()
        );
    }
    Ok(cast(array, &DataType::Binary)?.as_binary::<i32>().clone())
}

fn binary_state(args: &StateFieldsArgs) -> Vec<FieldRef> {
    vec![Arc::new(Field::new(
        format!("{}[sketch]", args.name),
        DataType::Binary,
        true,
    ))]
}

/// The `coordinated_sketch` op's SQL functions: the aggregates `priority_sketch` and
/// `coordinated_sketch`.
pub fn sketch_functions() -> Functions {
    Functions {
        scalar: Vec::new(),
        aggregate: vec![
            AggregateUDF::from(SketchUdaf::priority()),
            AggregateUDF::from(SketchUdaf::general()),
        ],
    }
}

/// The `sketch_merge` op's SQL function: the aggregate `sketch_merge`.
pub fn merge_functions() -> Functions {
    Functions {
        scalar: Vec::new(),
        aggregate: vec![AggregateUDF::from(SketchMergeUdaf::new())],
    }
}

/// The `sketch_product` op's SQL functions: the scalar `sketch_product`, and the estimates
/// over a join with intervals (`join_size`, `join_inner_product`, `join_correlation`,
/// `join_r2`: [`super::join`]).
pub fn product_functions() -> Functions {
    let mut scalar = vec![ScalarUDF::from(SketchProduct::new())];
    scalar.extend(super::join::join_functions());
    Functions {
        scalar,
        aggregate: Vec::new(),
    }
}

/// `priority_sketch` (priority only, four arguments) or `coordinated_sketch` (any method that
/// merges, five or six arguments).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct SketchUdaf {
    general: bool,
    signature: Signature,
}

impl SketchUdaf {
    /// `priority_sketch(key, values, k, seed)`.
    pub(super) fn priority() -> Self {
        SketchUdaf {
            general: false,
            signature: Signature::any(4, Volatility::Immutable),
        }
    }

    /// `coordinated_sketch(key, values, method, size, seed [, dim] [, weights])`.
    pub(super) fn general() -> Self {
        SketchUdaf {
            general: true,
            signature: Signature::one_of(
                vec![
                    TypeSignature::Any(5),
                    TypeSignature::Any(6),
                    TypeSignature::Any(7),
                ],
                Volatility::Immutable,
            ),
        }
    }

    fn usage(&self) -> &'static str {
        match self.general {
            false => {
                "priority_sketch(key INT | STRING, values LIST<number> | number, k INT, seed \
                 INT) — several columns go in as make_array(x1, x2, …)"
            }
            true => {
                "coordinated_sketch(key INT | STRING, values LIST<number> | number | \
                 LIST<STRUCT<index, value>>, method 'priority' | 'exact' | 'jl' | \
                 'countsketch', size INT, seed INT [, dim INT for sparse rows] [, weights \
                 'norm' | 'uniform']) — several columns go in as make_array(x1, x2, …)"
            }
        }
    }

    fn static_name(&self) -> &'static str {
        match self.general {
            false => "priority_sketch",
            true => "coordinated_sketch",
        }
    }
}

impl AggregateUDFImpl for SketchUdaf {
    fn name(&self) -> &str {
        self.static_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        // The constants after the values: (k, seed) or (method, size, seed [, dim]).
        let (values, constants) = (&args[1], &args[2..]);
        let key_ok = args[0].is_integer() || is_string(&args[0]);
        let sparse = is_sparse_list(values);
        let values_ok = is_number_list(values) || values.is_numeric() || (self.general && sparse);
        // A trailing string is the weights; an integer after the seed is the dim.
        let weights = self.general && args.len() > 5 && is_string(&args[args.len() - 1]);
        let has_dim = self.general && args.len() - usize::from(weights) == 6;
        let constants_ok = match self.general {
            false => constants.iter().all(DataType::is_integer),
            true => {
                is_string(&constants[0])
                    && constants[1..constants.len() - usize::from(weights)]
                        .iter()
                        .all(DataType::is_integer)
            }
        };
        let dim_ok = !self.general || sparse == has_dim;
        if !key_ok || !values_ok || !constants_ok || !dim_ok {
            let got = args.iter().map(|t| t.to_string()).collect::<Vec<_>>();
            let why = match (sparse, has_dim) {
                (true, false) if self.general => " (sparse rows need dim, the row width)",
                (false, true) => " (dim applies to a sparse List<Struct<index, value>> column)",
                _ => "",
            };
            return plan_err!(
                "{}: got ({}){why}; expected {}",
                self.name(),
                got.join(", "),
                self.usage()
            );
        }
        Ok(DataType::Binary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(binary_state(&args))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let name = self.static_name();
        let mut params_weights = Weights::Norm;
        let constant = |i: usize, what: &str| -> DfResult<u64> {
            match literal(&args, i, name)?.map(|v| v.cast_to(&DataType::UInt64)) {
                Some(Ok(ScalarValue::UInt64(Some(v)))) => Ok(v),
                _ => plan_err!("{name}: {what} must be a non-negative integer constant"),
            }
        };
        let (method, size, seed, dim) = match self.general {
            false => (
                Method::Priority,
                constant(2, "k")?,
                constant(3, "seed")?,
                None,
            ),
            true => {
                let method = match literal(&args, 2, name)? {
                    Some(
                        ScalarValue::Utf8(Some(m))
                        | ScalarValue::LargeUtf8(Some(m))
                        | ScalarValue::Utf8View(Some(m)),
                    ) => m,
                    _ => return plan_err!("{name}: method must be a string constant"),
                };
                let method = match Method::parse(&method) {
                    Some(Method::Threshold) => {
                        return plan_err!(
                            "{name}: 'threshold' sketches do not merge (their sampling level \
                             depends on the whole input's ‖A‖_F²); use 'priority', or the \
                             coordinated_sketch stage"
                        )
                    }
                    Some(m) => m,
                    None => {
                        return plan_err!(
                            "{name}: unknown method '{method}'; expected 'priority', 'exact', \
                             'jl' or 'countsketch'"
                        )
                    }
                };
                let last = args.exprs.len() - 1;
                let weights = match literal(&args, last, name)? {
                    Some(
                        ScalarValue::Utf8(Some(w))
                        | ScalarValue::LargeUtf8(Some(w))
                        | ScalarValue::Utf8View(Some(w)),
                    ) if last >= 5 => Some(w),
                    _ => None,
                };
                let dim = match args.exprs.len() - usize::from(weights.is_some()) {
                    6 => Some(constant(5, "dim")? as usize),
                    _ => None,
                };
                if let Some(w) = weights {
                    params_weights = match Weights::parse(&w) {
                        Some(_) if !method.is_sampling() => {
                            return plan_err!(
                                "{name}: weights apply to sampling methods ('priority', \
                                 'exact'); '{}' sketches every row linearly",
                                method.as_str()
                            )
                        }
                        Some(w) => w,
                        None => {
                            return plan_err!(
                                "{name}: unknown weights '{w}'; expected 'norm' or 'uniform'"
                            )
                        }
                    };
                }
                (method, constant(3, "size")?, constant(4, "seed")?, dim)
            }
        };
        if size == 0 && method != Method::Exact {
            let what = if self.general { "size" } else { "k" };
            return plan_err!("{name}: {what} must be at least 1");
        }
        let key = args.expr_fields[0].as_ref().clone().with_name("key");
        let values_name = args.expr_fields[1].name().clone();
        let values = args.expr_fields[1].as_ref().clone();
        let schema: SchemaRef = Arc::new(Schema::new(vec![key, values]));
        let mut params = CoordinatedSketchParams::new("key".into(), vec![values_name], method);
        params.size = size as usize;
        params.seed = seed;
        params.dim = dim;
        params.weights = params_weights;
        // Checked now, so a bad column fails at planning rather than on the first batch.
        CoordinatedSketchOp::new(params.clone(), &schema).map_err(|e| df_err(e.context(name)))?;
        Ok(Box::new(SketchAccumulator {
            name,
            params,
            schema,
            op: None,
            done: None,
        }))
    }
}

struct SketchAccumulator {
    /// The function's name, for errors.
    name: &'static str,
    params: CoordinatedSketchParams,
    schema: SchemaRef,
    /// Rows of this accumulator still being sampled.
    op: Option<CoordinatedSketchOp>,
    /// Finished parts: merged states, and rows already sampled.
    done: Option<Sketch>,
}

impl std::fmt::Debug for SketchAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SketchAccumulator")
            .field("params", &self.params)
            .field("sampling", &self.op.is_some())
            .field("done", &self.done.is_some())
            .finish()
    }
}

impl SketchAccumulator {
    /// Everything so far as one sketch.
    fn current(&mut self) -> DfResult<Option<&Sketch>> {
        if let Some(part) = self.op.take().and_then(CoordinatedSketchOp::into_sketch) {
            check_unique(&part.0, self.name)?;
            self.done = Some(merge_two(self.done.take(), part, self.name)?);
        }
        Ok(self.done.as_ref())
    }
}

/// A key kept twice in one partition's sample (the merge checks across partitions).
fn check_unique(s: &StoredSketch, name: &str) -> DfResult<()> {
    if let StoredSketch::Sample(s) = s {
        if let Some(w) = s.rows.windows(2).find(|w| w[0].key == w[1].key) {
            return Err(df_err(crate::Error::Input(format!(
                "{name}: key {} appears in more than one row; a sketch needs one row \
                 per key — aggregate the rows of a key first (e.g. GROUP BY key)",
                w[0].key
            ))));
        }
    }
    Ok(())
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let (key, rows) = (&values[0], &values[1]);
        let batch = RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![Arc::clone(key), Arc::clone(rows)],
        )?;
        let batch = if key.null_count() + rows.null_count() > 0 {
            filter_record_batch(&batch, &and(&is_not_null(key)?, &is_not_null(rows)?)?)?
        } else {
            batch
        };
        if self.op.is_none() {
            let mut op =
                CoordinatedSketchOp::new(self.params.clone(), &self.schema).map_err(df_err)?;
            op.begin_pass(&PassInfo {
                rows: None,
                order_randomised: false,
                scan: 1,
            })
            .map_err(df_err)?;
            self.op = Some(op);
        }
        let op = self.op.as_mut().expect("just set");
        op.update(&batch).map_err(|e| df_err(e.context(self.name)))
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![to_scalar(self.current()?)?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.current()?;
        merge_values(&mut self.done, &states[0], self.name)
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        to_scalar(self.current()?)
    }

    fn size(&self) -> usize {
        // The kept rows dominate: the finished part's stored words, plus the rows of the part
        // still being sketched (their width is known once rows arrive; counted at the finished
        // part's width, or one value, as an estimate).
        let done = self.done.as_ref().map_or(0.0, |(s, _)| match s {
            StoredSketch::Sample(s) => s.stored_words(),
            StoredSketch::Linear(l) => l.stored_words(),
        });
        let width = self.done.as_ref().map_or(1, |(s, _)| s.dim());
        // Rows held while sketching: up to k + 1 for priority, every row for exact; a linear
        // sketch holds `size` rows of width d.
        let sampling = match &self.op {
            Some(op) if self.params.method == Method::Exact => op.rows_read() as usize,
            Some(_) => self.params.size + 1,
            None => 0,
        } * (width + 2)
            * 8;
        std::mem::size_of::<Self>() + done as usize * 8 + sampling
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct SketchMergeUdaf {
    signature: Signature,
}

impl SketchMergeUdaf {
    pub(super) fn new() -> Self {
        SketchMergeUdaf {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for SketchMergeUdaf {
    fn name(&self) -> &str {
        "sketch_merge"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if !is_binary(&args[0]) {
            return plan_err!(
                "sketch_merge(sketch): expected sketch values (Binary), got {}",
                args[0]
            );
        }
        Ok(DataType::Binary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(binary_state(&args))
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(MergeAccumulator { acc: None }))
    }
}

#[derive(Debug)]
struct MergeAccumulator {
    acc: Option<Sketch>,
}

impl Accumulator for MergeAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        merge_values(&mut self.acc, &values[0], "sketch_merge")
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![to_scalar(self.acc.as_ref())?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        merge_values(&mut self.acc, &states[0], "sketch_merge")
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        to_scalar(self.acc.as_ref())
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + match &self.acc {
                Some((StoredSketch::Sample(s), _)) => s.stored_words() as usize * 8,
                Some((StoredSketch::Linear(l), _)) => l.stored_words() as usize * 8,
                None => 0,
            }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct SketchProduct {
    signature: Signature,
}

impl SketchProduct {
    pub(super) fn new() -> Self {
        SketchProduct {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

fn matrix_type() -> DataType {
    let row = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
    DataType::List(Arc::new(Field::new("item", row, true)))
}

impl ScalarUDFImpl for SketchProduct {
    fn name(&self) -> &str {
        "sketch_product"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if let Some(t) = args.iter().find(|t| !is_binary(t)) {
            return plan_err!(
                "sketch_product(left, right): expected sketch values (Binary), got {t}"
            );
        }
        Ok(matrix_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (n, scalar) = call_rows(&args);
        let left = args.args[0].to_array(n)?;
        let right = args.args[1].to_array(n)?;
        let (left, right) = (
            binary_values(&left, "sketch_product")?,
            binary_values(&right, "sketch_product")?,
        );
        let mut out = ListBuilder::new(ListBuilder::new(Float64Builder::new()));
        let mut dense = Vec::new();
        for i in 0..n {
            if left.is_null(i) || right.is_null(i) {
                out.append(false);
                continue;
            }
            let a =
                table::from_bytes(left.value(i), "sketch_product's left sketch").map_err(df_err)?;
            let b = table::from_bytes(right.value(i), "sketch_product's right sketch")
                .map_err(df_err)?;
            let names = ("the first argument", "the second argument");
            let e = stored::estimate((&a.0, &a.1, names.0), (&b.0, &b.1, names.1))
                .map_err(|e| df_err(crate::Error::from(e).context("sketch_product")))?;
            let m = e.w.cols();
            for row in e.w.outer_iterator() {
                dense.clear();
                dense.resize(m, 0.0);
                for (j, v) in row.iter() {
                    dense[j] = *v;
                }
                out.values().values().append_slice(&dense);
                out.values().append(true);
            }
            out.append(true);
        }
        call_result(Arc::new(out.finish()), scalar)
    }
}
