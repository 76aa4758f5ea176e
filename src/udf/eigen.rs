//! `top_eigenvector(col [, algorithm [, seed [, ell]]])` and `top_eigenvector_stats(…)`: the
//! top eigenvector of `AᵀA` over the rows of a list (or numeric) column, as SQL aggregates,
//! backed by the same cores as the `top_eigenvector` stage ([`crate::eigen`]).
//!
//! Only the mergeable algorithms run here: `exact` (the default; the Gram matrix, merged by
//! summing) and `frequent-directions` (Liberty, KDD 2013 / Ghashami et al., arXiv:1501.01711;
//! merged by stacking and shrinking, its bound `Δ` adding up). DataFusion runs an aggregate
//! partition-parallel and merges the partitions' states, so an algorithm that needs one
//! ordered pass (`random-order`, `oja`) is refused with a message pointing at the stage.
//!
//! NULL rows are ignored, as every SQL aggregate ignores NULL inputs; a NaN, infinite or
//! ragged row is an error, as in the stage. No rows gives NULL.

use crate::blocks::Blocks;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, StringArray, StructArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use super::args::{as_u64, constant, df_err, sql_algorithm, state_scalars, RowsArg};
use crate::eigen::{FrequentDirections, Gram};
use crate::operators::eigen_state::{self, MergeableEigen};
use crate::operators::op::Functions;
use crate::operators::top_eigenvector::DEFAULT_ELL;
use crate::operators::Algorithm;

/// The `top_eigenvector` op's SQL functions: `top_eigenvector`, `top_eigenvector_stats` and
/// `top_eigenvector_state`.
pub fn functions() -> Functions {
    Functions {
        scalar: Vec::new(),
        aggregate: [Output::Vector, Output::Stats, Output::State]
            .into_iter()
            .map(|o| AggregateUDF::from(TopEigenvector::new(o)))
            .collect(),
    }
}

/// What a top-eigenvector aggregate returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// `top_eigenvector`: the vector.
    Vector,
    /// `top_eigenvector_stats`: what the stage's `stats` table says, as a struct.
    Stats,
    /// `top_eigenvector_state`: the merged state itself (the layout of
    /// [`crate::operators::eigen_state`]), which a pipeline stage finishes exactly as locally.
    State,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct TopEigenvector {
    output: Output,
    signature: Signature,
}

impl TopEigenvector {
    pub(super) fn new(output: Output) -> Self {
        TopEigenvector {
            output,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

fn state_type() -> DataType {
    DataType::Struct(Fields::from(eigen_state::state_fields("")))
}

fn vector_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
}

fn stats_fields() -> Fields {
    Fields::from(vec![
        Field::new("algorithm", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("dim", DataType::UInt64, false),
        Field::new("eigenvalue", DataType::Float64, false),
        Field::new("heavy_rows", DataType::UInt64, false),
        Field::new("state_bytes", DataType::UInt64, false),
        Field::new("seed", DataType::UInt64, true),
        Field::new("error_bound", DataType::Float64, false),
    ])
}

impl AggregateUDFImpl for TopEigenvector {
    fn name(&self) -> &str {
        match self.output {
            Output::Vector => "top_eigenvector",
            Output::Stats => "top_eigenvector_stats",
            Output::State => "top_eigenvector_state",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        let usage = "expected (rows LIST | numeric [, algorithm 'exact' | 'frequent-directions' \
                     [, seed INT [, ell INT]]])";
        if args.is_empty() || args.len() > 4 {
            return plan_err!("{}: {} arguments; {usage}", self.name(), args.len());
        }
        if args.len() > 1 && !matches!(args[1], DataType::Utf8 | DataType::Utf8View) {
            return plan_err!("{}: the algorithm is {}; {usage}", self.name(), args[1]);
        }
        for (i, t) in args.iter().enumerate().skip(2) {
            if !t.is_integer() && *t != DataType::Null {
                return plan_err!("{}: argument {} is {t}; {usage}", self.name(), i + 1);
            }
        }
        Ok(match self.output {
            Output::Vector => vector_type(),
            Output::Stats => DataType::Struct(stats_fields()),
            Output::State => state_type(),
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(eigen_state::state_fields(&format!("{}_", args.name))
            .into_iter()
            .map(Arc::new)
            .collect())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let name = self.name();
        let algorithm = sql_algorithm(&args, 1, name, "top_eigenvector")?;
        let seed = constant(&args, 2, name, "a non-negative integer", as_u64)?;
        let ell = match constant(&args, 3, name, "a non-negative integer", as_u64)? {
            Some(_) if algorithm != Algorithm::FrequentDirections => {
                return plan_err!("{name}: ell only applies to 'frequent-directions'")
            }
            Some(e) if e < 2 => return plan_err!("{name}: ell must be at least 2, got {e}"),
            Some(e) => e as usize,
            None => DEFAULT_ELL,
        };
        let rows = RowsArg::new(&args, name)?;
        Ok(Box::new(EigenAccumulator {
            name: name.to_string(),
            output: self.output,
            algorithm,
            seed,
            ell,
            rows,
            core: None,
            blocks: Blocks::new(),
        }))
    }
}

#[derive(Debug)]
struct EigenAccumulator {
    /// The function's name, for errors.
    name: String,
    output: Output,
    algorithm: Algorithm,
    seed: Option<u64>,
    ell: usize,
    rows: RowsArg,
    core: Option<MergeableEigen>,
    /// The exact and Frequent Directions cores' rows in fixed blocks, as the stage sums them.
    blocks: Blocks,
}

/// The core, made when the first rows tell the width.
fn core_for(
    slot: &mut Option<MergeableEigen>,
    algorithm: Algorithm,
    ell: usize,
    d: usize,
) -> DfResult<&mut MergeableEigen> {
    if slot.is_none() {
        *slot = Some(match algorithm {
            Algorithm::FrequentDirections => {
                MergeableEigen::FrequentDirections(FrequentDirections::new(d, ell).map_err(df_err)?)
            }
            _ => MergeableEigen::Exact(Gram::new(d).map_err(df_err)?),
        });
    }
    Ok(slot.as_mut().expect("just set"))
}

impl EigenAccumulator {
    /// Feeds the rows kept back for a whole block.
    fn settle(&mut self) -> DfResult<()> {
        match &mut self.core {
            Some(MergeableEigen::Exact(g)) => self.blocks.flush(|b| {
                g.update(b);
                Ok::<_, datafusion::error::DataFusionError>(())
            })?,
            Some(MergeableEigen::FrequentDirections(f)) => {
                self.blocks.flush(|b| f.update(b).map_err(df_err))?
            }
            None => {}
        }
        Ok(())
    }
}

fn width_mismatch(name: &str, d: usize, other: usize) -> datafusion::error::DataFusionError {
    df_err(crate::Error::Input(format!(
        "{name}: rows of dimension {d} and {other} in one aggregate"
    )))
}

impl Accumulator for EigenAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let (name, core, blocks) = (&self.name, &mut self.core, &mut self.blocks);
        let (algorithm, ell) = (self.algorithm, self.ell);
        self.rows.with_rows(values, name, |rows| {
            if let Some(have) = core.as_ref().map(MergeableEigen::dim) {
                if have != rows.dim {
                    return Err(width_mismatch(name, have, rows.dim));
                }
            }
            match core_for(core, algorithm, ell, rows.dim)? {
                MergeableEigen::Exact(g) => blocks.push(rows.values, rows.dim, |b| {
                    g.update(b);
                    Ok::<_, datafusion::error::DataFusionError>(())
                })?,
                MergeableEigen::FrequentDirections(f) => {
                    blocks.push(rows.values, rows.dim, |b| f.update(b).map_err(df_err))?
                }
            }
            Ok(())
        })
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.settle()?;
        let columns = self.core.as_ref().map(MergeableEigen::to_columns);
        state_scalars(&eigen_state::state_fields(""), columns)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.settle()?;
        let ell = (self.algorithm == Algorithm::FrequentDirections).then_some(self.ell);
        for i in 0..states[0].len() {
            let Some(part) = MergeableEigen::from_columns(states, i, ell).map_err(df_err)? else {
                continue;
            };
            match &mut self.core {
                None => self.core = Some(part),
                Some(core) => {
                    if core.dim() != part.dim() {
                        return Err(width_mismatch(&self.name, core.dim(), part.dim()));
                    }
                    core.merge(&part).map_err(df_err)?;
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.settle()?;
        let Some(core) = &self.core else {
            return ScalarValue::try_from(match self.output {
                Output::Vector => vector_type(),
                Output::Stats => DataType::Struct(stats_fields()),
                Output::State => state_type(),
            });
        };
        if self.output == Output::State {
            let DataType::Struct(fields) = state_type() else {
                unreachable!("a struct")
            };
            let state = StructArray::try_new(fields, core.to_columns(), None)?;
            return Ok(ScalarValue::Struct(Arc::new(state)));
        }
        let top = core.finish().map_err(|e| df_err(e.context(&self.name)))?;
        if self.output == Output::Vector {
            return Ok(list_scalar(top.vector));
        }
        let error_bound = core.error_bound();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![self.algorithm.as_str()])),
            Arc::new(UInt64Array::from(vec![top.rows])),
            Arc::new(UInt64Array::from(vec![top.vector.len() as u64])),
            Arc::new(Float64Array::from(vec![top.eigenvalue])),
            Arc::new(UInt64Array::from(vec![top.heavy_rows])),
            Arc::new(UInt64Array::from(vec![top.state_bytes])),
            Arc::new(UInt64Array::from(vec![self.seed])),
            Arc::new(Float64Array::from(vec![error_bound])),
        ];
        Ok(ScalarValue::Struct(Arc::new(StructArray::try_new(
            stats_fields(),
            columns,
            None,
        )?)))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.core.as_ref().map_or(0, |c| c.state_bytes() as usize)
    }
}

/// One `List<Float64>` value.
fn list_scalar(values: Vec<f64>) -> ScalarValue {
    ScalarValue::List(Arc::new(eigen_state::one_list(values)))
}
