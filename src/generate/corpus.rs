//! `generate corpus`: a query table and a corpus of candidate tables that share some of its
//! keys, with planted correlations — for dataset search (`coordinated_sketch` with
//! `table_column`, then `sketch_search`; the estimators of "Estimates over a join" in
//! `docs/algorithms.md`).
//!
//! `DIR/query.parquet` (`key Int64, y Float64`, `rows` rows, keys `0 … rows−1`, `y ~ N(2, 1)`)
//! and `DIR/corpus.parquet` (`table Utf8, key Int64, x Float64, z Float64`). Candidate `t` of
//! `tables` (named `t00`, `t01`, …) has `rows` rows: a fraction `overlap_t` of them are query
//! keys, spread log-uniformly from `min_overlap` to 1 across the tables, and the rest are keys
//! no other table has. On the shared keys `x = ρ_t y + √(1 − ρ_t²) ε`, with `ρ_t` spread
//! evenly over `[−0.9, 0.9]` in a shuffled order; `z` is independent noise. A fraction
//! `outliers` of all values is multiplied by 30 (heavy tails). Rows are written in a shuffled
//! order.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::{write_atomically, Generated};
use crate::progress::ProgressMode;
use crate::{Error, Result};

/// `generate corpus` (see the module docs).
#[derive(Debug, Clone)]
pub struct Corpus {
    pub tables: usize,
    pub rows: u64,
    pub min_overlap: f64,
    pub outliers: f64,
    pub seed: u64,
}

/// A candidate table's planted parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Planted {
    pub name: String,
    pub overlap: f64,
    pub rho: f64,
}

impl Corpus {
    /// The tables' names, overlaps and correlations.
    pub fn planted(&self) -> Vec<Planted> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x9e37_79b9);
        let t = self.tables;
        let mut rhos: Vec<f64> = (0..t)
            .map(|i| {
                if t == 1 {
                    0.5
                } else {
                    -0.9 + 1.8 * i as f64 / (t - 1) as f64
                }
            })
            .collect();
        rhos.shuffle(&mut rng);
        (0..t)
            .map(|i| {
                let f = if t == 1 {
                    1.0
                } else {
                    i as f64 / (t - 1) as f64
                };
                Planted {
                    name: format!("t{i:02}"),
                    overlap: self.min_overlap.powf(1.0 - f),
                    rho: rhos[i],
                }
            })
            .collect()
    }

    /// Writes `query.parquet` and `corpus.parquet` into `dir`.
    pub fn write(&self, dir: &Path, progress: ProgressMode) -> Result<Vec<Generated>> {
        if self.tables == 0
            || self.rows == 0
            || !(self.min_overlap > 0.0 && self.min_overlap <= 1.0)
            || !(0.0..1.0).contains(&self.outliers)
        {
            return Err(Error::Config(format!(
                "generate corpus: need --tables, --rows ≥ 1, --min-overlap in (0, 1] and \
                 --outliers in [0, 1); got {}, {}, {}, {}",
                self.tables, self.rows, self.min_overlap, self.outliers
            )));
        }
        let n = self.rows as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let heavy = |v: f64, rng: &mut ChaCha8Rng| {
            if rng.random::<f64>() < self.outliers {
                30.0 * v
            } else {
                v
            }
        };
        let normal = |rng: &mut ChaCha8Rng| -> f64 { rng.sample(StandardNormal) };
        let y: Vec<f64> = (0..n)
            .map(|_| {
                let v = normal(&mut rng);
                2.0 + heavy(v, &mut rng)
            })
            .collect();
        let (mut names, mut keys, mut xs, mut zs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut query_keys: Vec<i64> = (0..n as i64).collect();
        for (t, p) in self.planted().iter().enumerate() {
            let shared = ((p.overlap * n as f64).round() as usize).clamp(1, n);
            query_keys.shuffle(&mut rng);
            let own = (n as i64) * (t as i64 + 1);
            for (j, k) in query_keys[..shared]
                .iter()
                .copied()
                .chain((0..(n - shared) as i64).map(|j| own + j))
                .enumerate()
            {
                let base = if j < shared {
                    y[k as usize]
                } else {
                    2.0 + normal(&mut rng)
                };
                let e = normal(&mut rng);
                let x = p.rho * base + (1.0 - p.rho * p.rho).sqrt() * e;
                names.push(p.name.clone());
                keys.push(k);
                let z = normal(&mut rng);
                xs.push(heavy(x, &mut rng));
                zs.push(heavy(z, &mut rng));
            }
        }
        // A shuffled row order, so that no table arrives in one piece.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.shuffle(&mut rng);
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let query_schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            Field::new("y", DataType::Float64, false),
        ]));
        let query_path = dir.join("query.parquet");
        write_atomically(
            &query_path,
            query_schema.clone(),
            false,
            16,
            self.rows,
            &format!("generate {}", query_path.display()),
            progress,
            |first, count| {
                let r = first as usize..first as usize + count;
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from_iter_values(r.start as i64..r.end as i64)),
                    Arc::new(Float64Array::from(y[r].to_vec())),
                ];
                Ok(RecordBatch::try_new(query_schema.clone(), columns)?)
            },
        )?;
        let corpus_schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("table", DataType::Utf8, false),
            Field::new("key", DataType::Int64, false),
            Field::new("x", DataType::Float64, false),
            Field::new("z", DataType::Float64, false),
        ]));
        let corpus_path = dir.join("corpus.parquet");
        let total = keys.len() as u64;
        write_atomically(
            &corpus_path,
            corpus_schema.clone(),
            false,
            32,
            total,
            &format!("generate {}", corpus_path.display()),
            progress,
            |first, count| {
                let rows = &order[first as usize..first as usize + count];
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|&i| names[i].as_str()),
                    )),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|&i| keys[i]))),
                    Arc::new(Float64Array::from_iter_values(rows.iter().map(|&i| xs[i]))),
                    Arc::new(Float64Array::from_iter_values(rows.iter().map(|&i| zs[i]))),
                ];
                Ok(RecordBatch::try_new(corpus_schema.clone(), columns)?)
            },
        )?;
        Ok([(query_path, self.rows), (corpus_path, total)]
            .into_iter()
            .map(|(path, rows)| Generated {
                bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                path,
                rows,
            })
            .collect())
    }
}
