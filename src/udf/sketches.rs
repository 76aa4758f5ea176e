//! Coordinated sketches in SQL, backed by the `coordinated_sketch` operator and the
//! `sketch_merge` / `sketch_product` cores (Daliri, Freire, Li, Musco, *Matrix Product
//! Sketching via Coordinated Sampling*, ICLR 2025, arXiv:2501.17836):
//!
//! * `priority_sketch(key, values, k, seed)` — aggregate: a priority sample of `k` rows of the
//!   group, as one `Binary` value (the `sketch` table's format, [`table::to_bytes`]). Its
//!   state is that value: partitions' samples merge exactly as in one pass (the union's `k`
//!   smallest ranks, `τ` the (k+1)-th).
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
use datafusion::arrow::compute::{filter_record_batch, is_not_null};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use super::{df_err, literal};
use crate::operators::coordinated_sketch::{
    table, CoordinatedSketchOp, CoordinatedSketchParams, Header, StoredSketch,
};
use crate::operators::{sketch_merge, sketch_product, Operator, PassInfo};
use crate::rows::{is_number_list, is_string};
use crate::sketch::Method;

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
            sketch_merge::merge(inputs).map_err(df_err)
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
    let Some(values) = array.as_binary_opt::<i32>() else {
        return exec_err!(
            "{what}: expected sketch values (Binary), got {}",
            array.data_type()
        );
    };
    for v in values.iter().flatten() {
        let s = table::from_bytes(v, what).map_err(df_err)?;
        *acc = Some(merge_two(acc.take(), s, what)?);
    }
    Ok(())
}

fn binary_state(args: &StateFieldsArgs) -> Vec<FieldRef> {
    vec![Arc::new(Field::new(
        format!("{}[sketch]", args.name),
        DataType::Binary,
        true,
    ))]
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct PrioritySketchUdaf {
    signature: Signature,
}

impl PrioritySketchUdaf {
    pub(super) fn new() -> Self {
        PrioritySketchUdaf {
            signature: Signature::any(4, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for PrioritySketchUdaf {
    fn name(&self) -> &str {
        "priority_sketch"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        let key_ok = args[0].is_integer() || is_string(&args[0]);
        let values_ok = is_number_list(&args[1]) || args[1].is_numeric();
        if !key_ok || !values_ok || !args[2].is_integer() || !args[3].is_integer() {
            return plan_err!(
                "priority_sketch: got ({}, {}, {}, {}); expected priority_sketch(key INT | \
                 STRING, values LIST<number> | number, k INT, seed INT) — several columns go in \
                 as make_array(x1, x2, …)",
                args[0],
                args[1],
                args[2],
                args[3]
            );
        }
        Ok(DataType::Binary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(binary_state(&args))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let name = self.name();
        let constant = |i: usize, what: &str| -> DfResult<u64> {
            match literal(&args, i, name)?.map(|v| v.cast_to(&DataType::UInt64)) {
                Some(Ok(ScalarValue::UInt64(Some(v)))) => Ok(v),
                _ => plan_err!("{name}: {what} must be a non-negative integer constant"),
            }
        };
        let k = constant(2, "k")?;
        let seed = constant(3, "seed")?;
        if k == 0 {
            return plan_err!("{name}: k must be at least 1");
        }
        let key = args.expr_fields[0].as_ref().clone().with_name("key");
        let values_name = args.expr_fields[1].name().clone();
        let values = args.expr_fields[1].as_ref().clone();
        let schema: SchemaRef = Arc::new(Schema::new(vec![key, values]));
        let mut params =
            CoordinatedSketchParams::new("key".into(), vec![values_name], Method::Priority);
        params.size = k as usize;
        params.seed = seed;
        // Checked now, so a bad column fails at planning rather than on the first batch.
        CoordinatedSketchOp::new(params.clone(), &schema).map_err(|e| df_err(e.context(name)))?;
        Ok(Box::new(PriorityAccumulator {
            params,
            schema,
            op: None,
            done: None,
        }))
    }
}

struct PriorityAccumulator {
    params: CoordinatedSketchParams,
    schema: SchemaRef,
    /// Rows of this accumulator still being sampled.
    op: Option<CoordinatedSketchOp>,
    /// Finished parts: merged states, and rows already sampled.
    done: Option<Sketch>,
}

impl std::fmt::Debug for PriorityAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriorityAccumulator")
            .field("params", &self.params)
            .field("sampling", &self.op.is_some())
            .field("done", &self.done.is_some())
            .finish()
    }
}

impl PriorityAccumulator {
    /// Everything so far as one sketch.
    fn current(&mut self) -> DfResult<Option<&Sketch>> {
        if let Some(part) = self.op.take().and_then(CoordinatedSketchOp::into_sketch) {
            check_unique(&part.0)?;
            self.done = Some(merge_two(self.done.take(), part, "priority_sketch")?);
        }
        Ok(self.done.as_ref())
    }
}

/// A key kept twice in one partition's sample (the merge checks across partitions).
fn check_unique(s: &StoredSketch) -> DfResult<()> {
    if let StoredSketch::Sample(s) = s {
        if let Some(w) = s.rows.windows(2).find(|w| w[0].key == w[1].key) {
            return Err(df_err(crate::Error::Input(format!(
                "priority_sketch: key {} appears in more than one row; a sketch needs one row \
                 per key — aggregate the rows of a key first (e.g. GROUP BY key)",
                w[0].key
            ))));
        }
    }
    Ok(())
}

impl Accumulator for PriorityAccumulator {
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
        op.update(&batch)
            .map_err(|e| df_err(e.context("priority_sketch")))
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![to_scalar(self.current()?)?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.current()?;
        merge_values(&mut self.done, &states[0], "priority_sketch")
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        to_scalar(self.current()?)
    }

    fn size(&self) -> usize {
        // The kept rows dominate: the finished part's stored words, plus the heap of up to
        // k + 1 rows still being sampled (their width is known once rows arrive; counted at
        // the finished part's width, or one value, as an estimate).
        let done = self.done.as_ref().map_or(0.0, |(s, _)| match s {
            StoredSketch::Sample(s) => s.stored_words(),
            StoredSketch::Linear(l) => l.stored_words(),
        });
        let width = self.done.as_ref().map_or(1, |(s, _)| s.dim());
        let sampling = if self.op.is_some() {
            (self.params.size + 1) * (width + 2) * 8
        } else {
            0
        };
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
            signature: Signature::exact(vec![DataType::Binary], Volatility::Immutable),
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

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
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
            signature: Signature::exact(
                vec![DataType::Binary, DataType::Binary],
                Volatility::Immutable,
            ),
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

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(matrix_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if scalar { 1 } else { args.number_rows };
        let left = args.args[0].to_array(n)?;
        let right = args.args[1].to_array(n)?;
        let (left, right): (&BinaryArray, &BinaryArray) = (left.as_binary(), right.as_binary());
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
            let e = sketch_product::estimate((&a.0, &a.1), (&b.0, &b.1), names)
                .map_err(|e| df_err(e.context("sketch_product")))?;
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
        let array: ArrayRef = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}
