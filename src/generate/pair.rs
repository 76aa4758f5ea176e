//! `generate sparse-pair`: two tables that share keys, for the coordinated sketches of §2 of
//! `docs/algorithms.md` (the paper's synthetic families: sparse rows of a chosen density, a few large
//! outlier entries).
//!
//! `DIR/left.parquet` (`key Int64, values List<Float64>` of width `dim`) and
//! `DIR/right.parquet` (`key Int64, values List<Float64>` of width `dim_right`, plus `y
//! Float64`). Each table has `rows` rows; a fraction `overlap` of the right table's keys are
//! left keys, the rest are keys the left table does not have. Every entry is non-zero with
//! probability `density`, uniform in `[−1, 1]`; `outliers` entries per table are set to ±10.
//! Rows are written in a shuffled key order. On the shared keys, `y = x · β + N(0, 0.01)` with
//! `β_j = 1/(j + 1)` — a linear model to recover over the join (`sketch_regression`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, ListArray, RecordBatch};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::{write_atomically, Generated};
use crate::progress::ProgressMode;
use crate::{Error, Result};

/// `generate sparse-pair` (see the module docs).
#[derive(Debug, Clone)]
pub struct SparsePair {
    pub rows: u64,
    pub dim: usize,
    pub dim_right: usize,
    pub density: f64,
    pub overlap: f64,
    pub outliers: usize,
    pub seed: u64,
}

fn values_field() -> Field {
    Field::new(
        "values",
        DataType::List(Arc::new(Field::new("item", DataType::Float64, false))),
        false,
    )
}

impl SparsePair {
    /// The `β` of the planted model: `β_j = 1/(j + 1)`.
    pub fn beta(&self) -> Vec<f64> {
        (0..self.dim).map(|j| 1.0 / (j as f64 + 1.0)).collect()
    }

    /// Writes `left.parquet` and `right.parquet` into `dir`.
    pub fn write(&self, dir: &Path, progress: ProgressMode) -> Result<Vec<Generated>> {
        if self.rows == 0
            || self.dim == 0
            || self.dim_right == 0
            || !(self.density > 0.0 && self.density <= 1.0)
            || !(0.0..=1.0).contains(&self.overlap)
        {
            return Err(Error::Config(format!(
                "generate sparse-pair: need --rows, --dim, --dim-right ≥ 1, --density in (0, 1] \
                 and --overlap in [0, 1]; got {}, {}, {}, {}, {}",
                self.rows, self.dim, self.dim_right, self.density, self.overlap
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let n = self.rows as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let shared = (self.overlap * n as f64).round() as usize;
        let mut left_keys: Vec<i64> = (0..n as i64).collect();
        left_keys.shuffle(&mut rng);
        // Right keys: `shared` of the left keys, then keys from n upwards.
        let mut right_keys: Vec<i64> = left_keys[..shared].to_vec();
        right_keys.extend((n as i64)..(n as i64 + (n - shared) as i64));
        right_keys.shuffle(&mut rng);
        let draw = |d: usize, rng: &mut ChaCha8Rng| -> Vec<f64> {
            let mut m: Vec<f64> = (0..n * d)
                .map(|_| {
                    if rng.random::<f64>() < self.density {
                        rng.random::<f64>() * 2.0 - 1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            for _ in 0..self.outliers {
                let i = rng.random_range(0..m.len());
                m[i] = if rng.random_bool(0.5) { 10.0 } else { -10.0 };
            }
            m
        };
        let left = draw(self.dim, &mut rng);
        let right = draw(self.dim_right, &mut rng);
        // y on the shared keys from the left row of the same key; elsewhere pure noise.
        let beta = self.beta();
        let mut left_row_of = std::collections::HashMap::with_capacity(n);
        for (i, k) in left_keys.iter().enumerate() {
            left_row_of.insert(*k, i);
        }
        let y: Vec<f64> = right_keys
            .iter()
            .map(|k| {
                let noise = 0.1 * rng.sample::<f64, _>(StandardNormal);
                match left_row_of.get(k) {
                    Some(&i) => {
                        let x = &left[i * self.dim..(i + 1) * self.dim];
                        x.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>() + noise
                    }
                    None => noise,
                }
            })
            .collect();
        let mut out = Vec::new();
        for (name, keys, values, d, y) in [
            ("left", &left_keys, &left, self.dim, None),
            ("right", &right_keys, &right, self.dim_right, Some(&y)),
        ] {
            let mut fields = vec![Field::new("key", DataType::Int64, false), values_field()];
            if y.is_some() {
                fields.push(Field::new("y", DataType::Float64, false));
            }
            let schema: SchemaRef = Arc::new(Schema::new(fields));
            let path: PathBuf = dir.join(format!("{name}.parquet"));
            write_atomically(
                &path,
                schema.clone(),
                false,
                8 + 8 * d,
                self.rows,
                &format!("generate {}", path.display()),
                progress,
                |first, count| {
                    let r = first as usize..first as usize + count;
                    let item = Arc::new(Field::new("item", DataType::Float64, false));
                    let list: ArrayRef = Arc::new(ListArray::new(
                        item,
                        OffsetBuffer::from_lengths(std::iter::repeat_n(d, count)),
                        Arc::new(Float64Array::from(values[r.start * d..r.end * d].to_vec())),
                        None,
                    ));
                    let mut columns: Vec<ArrayRef> =
                        vec![Arc::new(Int64Array::from(keys[r.clone()].to_vec())), list];
                    if let Some(y) = y {
                        columns.push(Arc::new(Float64Array::from(y[r].to_vec())));
                    }
                    Ok(RecordBatch::try_new(schema.clone(), columns)?)
                },
            )?;
            out.push(Generated {
                bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                path,
                rows: self.rows,
            });
        }
        Ok(out)
    }
}
