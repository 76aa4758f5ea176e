//! The state of a mergeable top-eigenvector core — the exact Gram matrix or a Frequent
//! Directions sketch — as Arrow values, in one layout shared by the `top_eigenvector` SQL
//! aggregate (the state a partition hands to the merge) and an `incremental` stage (the
//! `state` table the next run resumes from):
//!
//! `rows UInt64, dim UInt64, frobenius_sq Float64, shrunk Float64, values List<Float64>` —
//! `values` is the Gram matrix's lower triangle column by column (exact; `shrunk` = 0) or the
//! sketch's rows in use, row-major (Frequent Directions; `shrunk` = its bound `Δ`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, ListArray, RecordBatch, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, UInt64Type};

use crate::eigen::fd::FdState;
use crate::eigen::{FrequentDirections, Gram, TopEigen};
use crate::{Error, Result};

/// A one-row `List<Float64>` holding `values` (nullable items, as [`state_fields`] says).
pub fn one_list(values: Vec<f64>) -> ListArray {
    let n = values.len();
    ListArray::new(
        Arc::new(Field::new("item", DataType::Float64, true)),
        OffsetBuffer::from_lengths([n]),
        Arc::new(Float64Array::from(values)),
        None,
    )
}

/// A mergeable core.
#[derive(Debug, Clone)]
pub enum MergeableEigen {
    Exact(Gram),
    FrequentDirections(FrequentDirections),
}

/// The state's columns, in order.
pub fn state_fields(prefix: &str) -> Vec<Field> {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
    vec![
        Field::new(format!("{prefix}rows"), DataType::UInt64, true),
        Field::new(format!("{prefix}dim"), DataType::UInt64, true),
        Field::new(format!("{prefix}frobenius_sq"), DataType::Float64, true),
        Field::new(format!("{prefix}shrunk"), DataType::Float64, true),
        Field::new(format!("{prefix}values"), list, true),
    ]
}

/// The `state` table's schema.
pub fn state_schema() -> SchemaRef {
    Arc::new(Schema::new(state_fields("")))
}

impl super::MergeState for MergeableEigen {
    fn dim(&self) -> usize {
        MergeableEigen::dim(self)
    }

    fn merge(&mut self, other: &Self) -> Result<()> {
        MergeableEigen::merge(self, other)
    }
}

impl MergeableEigen {
    pub fn dim(&self) -> usize {
        match self {
            MergeableEigen::Exact(g) => g.dim(),
            MergeableEigen::FrequentDirections(f) => f.dim(),
        }
    }

    /// Rows folded in.
    pub fn rows(&self) -> u64 {
        match self {
            MergeableEigen::Exact(g) => g.rows(),
            MergeableEigen::FrequentDirections(f) => f.rows(),
        }
    }

    /// Folds in a core of other rows (same algorithm and dimension).
    pub fn merge(&mut self, other: &MergeableEigen) -> Result<()> {
        match (self, other) {
            (MergeableEigen::Exact(a), MergeableEigen::Exact(b)) => Ok(a.merge(b)?),
            (MergeableEigen::FrequentDirections(a), MergeableEigen::FrequentDirections(b)) => {
                Ok(a.merge(b)?)
            }
            _ => Err(Error::Input(
                "cannot merge an exact Gram state with a Frequent Directions one".into(),
            )),
        }
    }

    pub fn finish(&self) -> Result<TopEigen> {
        match self {
            MergeableEigen::Exact(g) => Ok(g.finish()?),
            MergeableEigen::FrequentDirections(f) => Ok(f.finish()?),
        }
    }

    /// The bound on `‖AᵀA − BᵀB‖₂`: 0 for the exact core, `Δ` for Frequent Directions.
    pub fn error_bound(&self) -> f64 {
        match self {
            MergeableEigen::Exact(_) => 0.0,
            MergeableEigen::FrequentDirections(f) => f.error_bound(),
        }
    }

    pub fn state_bytes(&self) -> u64 {
        match self {
            MergeableEigen::Exact(g) => g.state_bytes(),
            MergeableEigen::FrequentDirections(f) => f.state_bytes(),
        }
    }

    /// The state as one row of [`state_fields`].
    pub fn to_columns(&self) -> Vec<ArrayRef> {
        let (rows, dim, frob, shrunk, values) = match self {
            MergeableEigen::Exact(g) => (g.rows(), g.dim(), g.frobenius_sq(), 0.0, g.lower()),
            MergeableEigen::FrequentDirections(f) => {
                let s = f.to_state();
                (s.rows_seen, s.d, s.frobenius_sq, s.shrunk, s.rows)
            }
        };
        vec![
            Arc::new(UInt64Array::from(vec![rows])),
            Arc::new(UInt64Array::from(vec![dim as u64])),
            Arc::new(Float64Array::from(vec![frob])),
            Arc::new(Float64Array::from(vec![shrunk])),
            Arc::new(one_list(values)),
        ]
    }

    /// The `state` table.
    pub fn to_batch(&self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(state_schema(), self.to_columns())?)
    }

    /// Row `i` of state columns (`None` for an empty state: no rows yet). `ell` is the
    /// Frequent Directions sketch size (`None` for the exact core).
    pub fn from_columns(
        columns: &[ArrayRef],
        i: usize,
        ell: Option<usize>,
    ) -> Result<Option<Self>> {
        let bad = || Error::Input("a top-eigenvector state has the wrong columns".into());
        let [rows, dims, frob, shrunk, values] = columns else {
            return Err(bad());
        };
        let (Some(rows), Some(dims), Some(frob), Some(shrunk), Some(values)) = (
            rows.as_primitive_opt::<UInt64Type>(),
            dims.as_primitive_opt::<UInt64Type>(),
            frob.as_primitive_opt::<Float64Type>(),
            shrunk.as_primitive_opt::<Float64Type>(),
            values.as_list_opt::<i32>(),
        ) else {
            return Err(bad());
        };
        if rows.is_null(i) || dims.is_null(i) || dims.value(i) == 0 {
            return Ok(None);
        }
        let d = dims.value(i) as usize;
        let list = values.value(i);
        let v = list
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(bad)?
            .values();
        Ok(Some(match ell {
            None => MergeableEigen::Exact(Gram::from_lower(d, rows.value(i), v)?),
            Some(ell) => {
                let state = FdState {
                    d,
                    ell,
                    rows: v.to_vec(),
                    rows_seen: rows.value(i),
                    frobenius_sq: frob.value(i),
                    shrunk: shrunk.value(i),
                };
                MergeableEigen::FrequentDirections(FrequentDirections::from_state(&state)?)
            }
        }))
    }
}
