//! The state of a mergeable PCA core — the exact centred scatter matrix or a centred Frequent
//! Directions sketch — as Arrow values, in one layout shared by the `pca_state` / `pca` SQL
//! aggregates (the state a partition hands to the merge) and an `incremental` stage (the
//! `state` table the next run resumes from):
//!
//! `rows UInt64, dim UInt64, center Boolean, shrunk Float64, frobenius_sq Float64,
//! mean List<Float64>, diagonal List<Float64>, values List<Float64>` — `values` is the scatter
//! matrix's lower triangle column by column (exact; `shrunk` = 0) or the sketch's rows in use,
//! row-major (Frequent Directions; `shrunk` = its bound `Δ`, `frobenius_sq` its rows' total).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, UInt64Type};

use crate::eigen::fd::FdState;
use crate::eigen::{CentredFd, Pca, Scatter};
use crate::operators::eigen_state::one_list;
use crate::{Error, Result};

/// A mergeable PCA core.
#[derive(Debug, Clone)]
pub enum MergeablePca {
    Exact(Scatter),
    FrequentDirections(CentredFd),
}

/// The state's columns, in order, their names prefixed.
pub fn state_fields(prefix: &str) -> Vec<Field> {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
    vec![
        Field::new(format!("{prefix}rows"), DataType::UInt64, true),
        Field::new(format!("{prefix}dim"), DataType::UInt64, true),
        Field::new(format!("{prefix}center"), DataType::Boolean, true),
        Field::new(format!("{prefix}shrunk"), DataType::Float64, true),
        Field::new(format!("{prefix}frobenius_sq"), DataType::Float64, true),
        Field::new(format!("{prefix}mean"), list.clone(), true),
        Field::new(format!("{prefix}diagonal"), list.clone(), true),
        Field::new(format!("{prefix}values"), list, true),
    ]
}

/// The `state` table's schema.
pub fn state_schema() -> SchemaRef {
    Arc::new(Schema::new(state_fields("")))
}

impl crate::operators::MergeState for MergeablePca {
    fn dim(&self) -> usize {
        MergeablePca::dim(self)
    }

    fn merge(&mut self, other: &Self) -> Result<()> {
        MergeablePca::merge(self, other)
    }
}

impl MergeablePca {
    /// An empty core: exact, or Frequent Directions with `ell` directions.
    pub fn new(d: usize, ell: Option<usize>, center: bool) -> Result<Self> {
        Ok(match ell {
            None => MergeablePca::Exact(Scatter::new(d, center)?),
            Some(ell) => MergeablePca::FrequentDirections(CentredFd::new(d, ell, center)?),
        })
    }

    pub fn dim(&self) -> usize {
        match self {
            MergeablePca::Exact(s) => s.dim(),
            MergeablePca::FrequentDirections(f) => f.dim(),
        }
    }

    pub fn rows(&self) -> u64 {
        match self {
            MergeablePca::Exact(s) => s.rows(),
            MergeablePca::FrequentDirections(f) => f.rows(),
        }
    }

    pub fn update(&mut self, rows: &[f64]) -> Result<()> {
        match self {
            MergeablePca::Exact(s) => {
                s.update(rows);
                Ok(())
            }
            MergeablePca::FrequentDirections(f) => Ok(f.update(rows)?),
        }
    }

    /// Folds in a core of other rows (same algorithm, dimension and centring).
    pub fn merge(&mut self, other: &MergeablePca) -> Result<()> {
        if self.dim() != other.dim() {
            return Err(Error::Input(format!(
                "rows of dimension {} and {} cannot be merged into one PCA",
                self.dim(),
                other.dim()
            )));
        }
        match (self, other) {
            (MergeablePca::Exact(a), MergeablePca::Exact(b)) => Ok(a.merge(b)?),
            (MergeablePca::FrequentDirections(a), MergeablePca::FrequentDirections(b)) => {
                Ok(a.merge(b)?)
            }
            _ => Err(Error::Input(
                "cannot merge an exact PCA state with a Frequent Directions one".into(),
            )),
        }
    }

    /// With `scale = true`, the first coordinate that is constant over the rows.
    pub fn constant_column(&self) -> Option<usize> {
        match self {
            MergeablePca::Exact(s) => s.constant_column(),
            MergeablePca::FrequentDirections(f) => f.constant_column(),
        }
    }

    pub fn finish(&self, k: usize, scale: bool) -> Result<Pca> {
        Ok(match self {
            MergeablePca::Exact(s) => s.finish(k, scale)?,
            MergeablePca::FrequentDirections(f) => f.finish(k, scale)?,
        })
    }

    pub fn state_bytes(&self) -> u64 {
        match self {
            MergeablePca::Exact(s) => s.state_bytes(),
            MergeablePca::FrequentDirections(f) => f.state_bytes(),
        }
    }

    /// The state as one row of [`state_fields`].
    pub fn to_columns(&self) -> Vec<ArrayRef> {
        let (rows, dim, center, shrunk, frob, mean, diag, values) = match self {
            MergeablePca::Exact(s) => {
                let diag = s.diagonal();
                let frob = diag.iter().sum();
                let mean = s.mean().to_vec();
                (
                    s.rows(),
                    s.dim(),
                    s.centred(),
                    0.0,
                    frob,
                    mean,
                    diag,
                    s.lower(),
                )
            }
            MergeablePca::FrequentDirections(f) => {
                let st = f.sketch();
                let (mean, diag) = (f.mean().to_vec(), f.diagonal().to_vec());
                // The state's own `Δ`: handing a sketch over may shrink it once more.
                let (center, shrunk) = (f.centred(), st.shrunk);
                (
                    f.rows(),
                    st.d,
                    center,
                    shrunk,
                    st.frobenius_sq,
                    mean,
                    diag,
                    st.rows,
                )
            }
        };
        vec![
            Arc::new(UInt64Array::from(vec![rows])),
            Arc::new(UInt64Array::from(vec![dim as u64])),
            Arc::new(BooleanArray::from(vec![center])),
            Arc::new(Float64Array::from(vec![shrunk])),
            Arc::new(Float64Array::from(vec![frob])),
            Arc::new(one_list(mean)),
            Arc::new(one_list(diag)),
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
        let bad = || Error::Input("a PCA state has the wrong columns".into());
        let [rows, dims, center, shrunk, frob, mean, diag, values] = columns else {
            return Err(bad());
        };
        let (Some(rows), Some(dims), Some(center), Some(shrunk), Some(frob)) = (
            rows.as_primitive_opt::<UInt64Type>(),
            dims.as_primitive_opt::<UInt64Type>(),
            center.as_boolean_opt(),
            shrunk.as_primitive_opt::<Float64Type>(),
            frob.as_primitive_opt::<Float64Type>(),
        ) else {
            return Err(bad());
        };
        if rows.is_null(i) || dims.is_null(i) || dims.value(i) == 0 {
            return Ok(None);
        }
        let list = |a: &ArrayRef| -> Result<Vec<f64>> {
            let l = a.as_list_opt::<i32>().ok_or_else(bad)?.value(i);
            Ok(l.as_primitive_opt::<Float64Type>()
                .ok_or_else(bad)?
                .values()
                .to_vec())
        };
        let (d, n, c) = (dims.value(i) as usize, rows.value(i), center.value(i));
        let (mean, values) = (list(mean)?, list(values)?);
        Ok(Some(match ell {
            None => MergeablePca::Exact(Scatter::from_parts(d, c, n, &mean, &values)?),
            Some(ell) => {
                let state = FdState {
                    d,
                    ell,
                    rows: values,
                    rows_seen: n,
                    frobenius_sq: frob.value(i),
                    shrunk: shrunk.value(i),
                };
                MergeablePca::FrequentDirections(CentredFd::from_parts(
                    &state,
                    c,
                    &mean,
                    &list(diag)?,
                )?)
            }
        }))
    }
}
