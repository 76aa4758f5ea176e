//! Generators for the data-pruning scores (§3 of `docs/algorithms.md`): labelled tables with a
//! known set of flipped labels, so a score's power to find them (AUROC) can be measured.
//!
//! * `generate classification` — features with class structure: `x = μ_c + g`, `g ~ N(0, I)`,
//!   class means `μ_c` random of norm `separation`; the true class `c` is uniform; a fraction
//!   `noise` of the rows get a label drawn uniformly from the *other* classes. Columns:
//!   `id Int64, features List<Float32>, label Int32, noisy Boolean`.
//! * `generate logits` — what a training run logs: `runs` files `run-0.parquet`, … in `DIR`,
//!   each with every example once, **in its own shuffled row order**: `id Int64, run Int32,
//!   label Int32, logits List<Float32>, noisy Boolean`. Per example a true class `c` and a
//!   difficulty `m ~ U(0.5, 3)`; per run `logits = m·e_c + N(0, σ²I)`. The logged `label` is
//!   `c` except for the flipped rows (the same in every run), so a model that learned the true
//!   classes puts its mass away from a flipped label — high EL2N.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Int32Array, Int64Array, ListArray, RecordBatch,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::{write_atomically, Generated};
use crate::progress::ProgressMode;
use crate::{Error, Result};

/// The true class, the logged label and whether it was flipped, for every example.
struct Labels {
    truth: Vec<i32>,
    label: Vec<i32>,
    noisy: Vec<bool>,
}

fn draw_labels(rows: usize, classes: usize, noise: f64, rng: &mut ChaCha8Rng) -> Labels {
    let truth: Vec<i32> = (0..rows)
        .map(|_| rng.random_range(0..classes as i32))
        .collect();
    let noisy: Vec<bool> = (0..rows).map(|_| rng.random_bool(noise)).collect();
    let label = truth
        .iter()
        .zip(&noisy)
        .map(|(&c, &flip)| {
            if !flip {
                return c;
            }
            // Uniform over the other classes.
            let other = rng.random_range(0..classes as i32 - 1);
            if other >= c {
                other + 1
            } else {
                other
            }
        })
        .collect();
    Labels {
        truth,
        label,
        noisy,
    }
}

fn check(kind: &str, rows: u64, classes: usize, noise: f64) -> Result<()> {
    if rows == 0 || classes < 2 || !(0.0..=1.0).contains(&noise) {
        return Err(Error::Config(format!(
            "generate {kind}: need --rows ≥ 1, --classes ≥ 2 and --noise in [0, 1], got {rows}, {classes}, {noise}"
        )));
    }
    if rows > u32::MAX as u64 {
        return Err(Error::Config(format!(
            "generate {kind}: at most {} rows",
            u32::MAX
        )));
    }
    Ok(())
}

fn f32_lists(values: Vec<f32>, width: usize) -> Result<ArrayRef> {
    let rows = values.len() / width;
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    Ok(Arc::new(ListArray::try_new(
        item,
        OffsetBuffer::from_lengths(std::iter::repeat_n(width, rows)),
        Arc::new(Float32Array::from(values)),
        None,
    )?))
}

fn list_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
        false,
    )
}

/// `generate classification` (see the module docs).
#[derive(Debug, Clone)]
pub struct Classification {
    pub rows: u64,
    pub dim: usize,
    pub classes: usize,
    /// Fraction of flipped labels.
    pub noise: f64,
    /// `‖μ_c‖`: how far apart the classes are, in units of the noise's standard deviation.
    pub separation: f64,
    pub seed: u64,
}

impl Classification {
    pub fn write(&self, out: &Path, progress: ProgressMode) -> Result<Generated> {
        check("classification", self.rows, self.classes, self.noise)?;
        if self.dim == 0 || !(self.separation.is_finite() && self.separation >= 0.0) {
            return Err(Error::Config(format!(
                "generate classification: need --dim ≥ 1 and --separation ≥ 0, got {} and {}",
                self.dim, self.separation
            )));
        }
        let (n, d, k) = (self.rows as usize, self.dim, self.classes);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let means: Vec<f64> = (0..k)
            .flat_map(|_| {
                let g: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
                let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                g.into_iter()
                    .map(|v| v * self.separation / norm)
                    .collect::<Vec<_>>()
            })
            .collect();
        let labels = draw_labels(n, k, self.noise, &mut rng);
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            list_field("features"),
            Field::new("label", DataType::Int32, false),
            Field::new("noisy", DataType::Boolean, false),
        ]));
        let label = format!("generate {}", out.display());
        write_atomically(
            out,
            schema.clone(),
            false,
            8 + 4 * d + 5,
            self.rows,
            &label,
            progress,
            |first, count| {
                let range = first as usize..first as usize + count;
                let mut x = Vec::with_capacity(count * d);
                for i in range.clone() {
                    let mu = &means[labels.truth[i] as usize * d..][..d];
                    x.extend(
                        mu.iter()
                            .map(|m| (m + rng.sample::<f64, _>(StandardNormal)) as f32),
                    );
                }
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from_iter_values(
                        range.clone().map(|i| i as i64),
                    )),
                    f32_lists(x, d)?,
                    Arc::new(Int32Array::from(labels.label[range.clone()].to_vec())),
                    Arc::new(BooleanArray::from(labels.noisy[range].to_vec())),
                ];
                Ok(RecordBatch::try_new(schema.clone(), columns)?)
            },
        )?;
        Ok(Generated {
            path: out.to_path_buf(),
            rows: self.rows,
            bytes: std::fs::metadata(out).map(|m| m.len()).unwrap_or(0),
        })
    }
}

/// `generate logits` (see the module docs).
#[derive(Debug, Clone)]
pub struct Logits {
    pub rows: u64,
    pub classes: usize,
    pub runs: usize,
    pub noise: f64,
    /// Standard deviation of the per-run logit noise.
    pub sigma: f64,
    pub seed: u64,
}

impl Logits {
    /// Writes `run-0.parquet` … into `dir` (created if needed); returns one entry per file.
    pub fn write(&self, dir: &Path, progress: ProgressMode) -> Result<Vec<Generated>> {
        check("logits", self.rows, self.classes, self.noise)?;
        if self.runs == 0 || !(self.sigma.is_finite() && self.sigma >= 0.0) {
            return Err(Error::Config(format!(
                "generate logits: need --runs ≥ 1 and --sigma ≥ 0, got {} and {}",
                self.runs, self.sigma
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let (n, k) = (self.rows as usize, self.classes);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let labels = draw_labels(n, k, self.noise, &mut rng);
        let margin: Vec<f64> = (0..n).map(|_| rng.random_range(0.5..3.0)).collect();
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("run", DataType::Int32, false),
            Field::new("label", DataType::Int32, false),
            list_field("logits"),
            Field::new("noisy", DataType::Boolean, false),
        ]));
        let mut written = Vec::with_capacity(self.runs);
        for run in 0..self.runs {
            let out: PathBuf = dir.join(format!("run-{run}.parquet"));
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.shuffle(&mut rng);
            let label = format!("generate {}", out.display());
            write_atomically(
                &out,
                schema.clone(),
                false,
                8 + 4 + 4 + 4 * k + 1,
                self.rows,
                &label,
                progress,
                |first, count| {
                    let ids = &order[first as usize..first as usize + count];
                    let mut z = Vec::with_capacity(count * k);
                    for &i in ids {
                        let i = i as usize;
                        z.extend((0..k).map(|c| {
                            let signal = if c as i32 == labels.truth[i] {
                                margin[i]
                            } else {
                                0.0
                            };
                            (signal + self.sigma * rng.sample::<f64, _>(StandardNormal)) as f32
                        }));
                    }
                    let columns: Vec<ArrayRef> = vec![
                        Arc::new(Int64Array::from_iter_values(ids.iter().map(|&i| i as i64))),
                        Arc::new(Int32Array::from(vec![run as i32; count])),
                        Arc::new(Int32Array::from_iter_values(
                            ids.iter().map(|&i| labels.label[i as usize]),
                        )),
                        f32_lists(z, k)?,
                        Arc::new(BooleanArray::from_iter(
                            ids.iter().map(|&i| Some(labels.noisy[i as usize])),
                        )),
                    ];
                    Ok(RecordBatch::try_new(schema.clone(), columns)?)
                },
            )?;
            written.push(Generated {
                bytes: std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0),
                path: out,
                rows: self.rows,
            });
        }
        Ok(written)
    }
}
