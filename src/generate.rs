//! `sketchpipe generate`: reproducible synthetic tables for demos, tests and benchmarks.
//!
//! Every generator is a pure function of its flags and seed (ChaCha8, portable across
//! platforms), streams its output in batches (so multi-GB files need little memory), and
//! writes atomically: to a temporary sibling first, renamed into place when complete.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float32Array, Float64Array, Int64Array, ListArray, RecordBatch,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::progress::{Progress, ProgressMode};
use crate::{Error, Result};

/// Element type of generated list columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    #[default]
    F32,
    F64,
}

/// `generate low-rank`: rows `a_i = Q · (sqrt(λ) ⊙ g_i)` with `g_i ~ N(0, I)` and `Q` a random
/// orthogonal map ([`Rotation`]), so `E[AᵀA] = n · Q diag(λ) Qᵀ` with
/// `λ = (gap, 1, …, 1 [rank − 1 ones], noise, …, noise)`: the top eigengap is
/// `R = σ₁²/σ₂² ≈ gap` and the top direction `Q e₁` is a random one.
#[derive(Debug, Clone)]
pub struct LowRank {
    pub rows: u64,
    pub dim: usize,
    /// `R = λ₁/λ₂`.
    pub gap: f64,
    /// Number of directions with eigenvalue ≥ 1 (the top one included).
    pub rank: usize,
    /// Eigenvalue of the remaining directions (relative to λ₂ = 1).
    pub noise: f64,
    pub seed: u64,
    pub dtype: Dtype,
}

impl Default for LowRank {
    fn default() -> Self {
        LowRank {
            rows: 10_000,
            dim: 32,
            gap: 10.0,
            rank: 8,
            noise: 0.01,
            seed: 42,
            dtype: Dtype::F32,
        }
    }
}

/// What a generator wrote.
#[derive(Debug, Clone)]
pub struct Generated {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

impl LowRank {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("generate low-rank: {m}")));
        if self.dim == 0 || self.rows == 0 {
            return bad("--rows and --dim must be at least 1".into());
        }
        if !(self.gap.is_finite() && self.gap >= 1.0) {
            return bad(format!("--gap must be a number ≥ 1, got {}", self.gap));
        }
        if self.rank == 0 || self.rank > self.dim {
            return bad(format!(
                "--rank must be in 1..={} (the dimension), got {}",
                self.dim, self.rank
            ));
        }
        if !(self.noise.is_finite() && (0.0..=1.0).contains(&self.noise)) {
            return bad(format!("--noise must be in [0, 1], got {}", self.noise));
        }
        Ok(())
    }

    /// The eigenvalues `λ` (per row, in expectation) in decreasing order.
    pub fn spectrum(&self) -> Vec<f64> {
        (0..self.dim)
            .map(|j| match j {
                0 => self.gap,
                j if j < self.rank => 1.0,
                _ => self.noise,
            })
            .collect()
    }

    /// Writes the table to `out`: Parquet (`id Int64`, `emb List<Float32|Float64>`) or, for a
    /// `.csv` path, CSV with columns `id, x0, …, x{d-1}`.
    pub fn write(&self, out: &Path, progress: ProgressMode) -> Result<Generated> {
        self.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let rotation = Rotation::random(self.dim, &mut rng);
        let scale: Vec<f64> = self.spectrum().iter().map(|l| l.sqrt()).collect();
        let csv = out
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let schema = self.schema(csv);
        let label = format!("generate {}", out.display());
        write_atomically(
            out,
            schema.clone(),
            csv,
            self.rows,
            &label,
            progress,
            |first, n| {
                let mut x = Vec::with_capacity(n * self.dim);
                for _ in 0..n {
                    let start = x.len();
                    x.extend(
                        scale
                            .iter()
                            .map(|s| s * rng.sample::<f64, _>(StandardNormal)),
                    );
                    rotation.apply(&mut x[start..]);
                }
                self.batch(&schema, first, &x, csv)
            },
        )?;
        let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
        Ok(Generated {
            path: out.to_path_buf(),
            rows: self.rows,
            bytes,
        })
    }

    fn element_type(&self) -> DataType {
        match self.dtype {
            Dtype::F32 => DataType::Float32,
            Dtype::F64 => DataType::Float64,
        }
    }

    fn schema(&self, csv: bool) -> SchemaRef {
        let mut fields = vec![Field::new("id", DataType::Int64, false)];
        if csv {
            fields.extend(
                (0..self.dim).map(|j| Field::new(format!("x{j}"), self.element_type(), false)),
            );
        } else {
            let item = Arc::new(Field::new("item", self.element_type(), true));
            fields.push(Field::new("emb", DataType::List(item), false));
        }
        Arc::new(Schema::new(fields))
    }

    /// A batch of rows `x` (row-major, `dim` wide) with ids from `first_id`.
    fn batch(
        &self,
        schema: &SchemaRef,
        first_id: u64,
        x: &[f64],
        csv: bool,
    ) -> Result<RecordBatch> {
        let d = self.dim;
        let b = x.len() / d;
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(
            first_id as i64..(first_id + b as u64) as i64,
        ));
        let column = |values: Vec<f64>| -> ArrayRef {
            match self.dtype {
                Dtype::F32 => Arc::new(Float32Array::from_iter_values(
                    values.into_iter().map(|v| v as f32),
                )),
                Dtype::F64 => Arc::new(Float64Array::from(values)),
            }
        };
        let mut columns = vec![ids];
        if csv {
            columns.extend((0..d).map(|j| column((0..b).map(|i| x[i * d + j]).collect())));
        } else {
            let item = Arc::new(Field::new("item", self.element_type(), true));
            let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(d, b));
            columns.push(Arc::new(ListArray::try_new(
                item,
                offsets,
                column(x.to_vec()),
                None,
            )?));
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// A random orthogonal map `Q = H₁H₂H₃`, a product of three Householder reflections
/// `H = I − 2hhᵀ` with random unit `h`. Applying it costs `O(d)` per row (a dense `Q` would cost
/// `O(d²)`), it sends `e₁` to a dense random direction, and it is plain scalar arithmetic, so
/// the output does not depend on which SIMD kernels the machine has.
struct Rotation {
    dim: usize,
    /// Three unit vectors, concatenated.
    reflectors: Vec<f64>,
}

impl Rotation {
    fn random(dim: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut reflectors = Vec::with_capacity(3 * dim);
        for _ in 0..3 {
            let h: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
            let norm = h.iter().map(|v| v * v).sum::<f64>().sqrt();
            reflectors.extend(h.iter().map(|v| v / norm));
        }
        Rotation { dim, reflectors }
    }

    /// `x ← Q x = H₁(H₂(H₃ x))`.
    fn apply(&self, x: &mut [f64]) {
        for h in self.reflectors.chunks_exact(self.dim).rev() {
            let dot: f64 = h.iter().zip(x.iter()).map(|(a, b)| a * b).sum();
            for (xi, hi) in x.iter_mut().zip(h) {
                *xi -= 2.0 * dot * hi;
            }
        }
    }
}

/// Streams `rows` rows, made 8192 at a time by `make(first_id, n)`, into `out`
/// through a hidden temporary sibling that is renamed into place only when complete.
fn write_atomically(
    out: &Path,
    schema: SchemaRef,
    csv: bool,
    rows: u64,
    label: &str,
    progress: ProgressMode,
    mut make: impl FnMut(u64, usize) -> Result<RecordBatch>,
) -> Result<()> {
    const BATCH_ROWS: u64 = 8192;
    let tmp = tmp_sibling(out);
    let file =
        File::create(&tmp).map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
    let mut progress = Progress::new(label, Some(rows), progress);
    let result = (|| -> Result<()> {
        let mut writer = TableWriter::new(file, schema, csv)?;
        let mut done = 0u64;
        while done < rows {
            let n = (rows - done).min(BATCH_ROWS) as usize;
            let batch = make(done, n)?;
            writer.write(&batch)?;
            progress.inc(n as u64, batch.get_array_memory_size() as u64);
            done += n as u64;
        }
        writer.finish()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    progress.finish();
    std::fs::rename(&tmp, out).map_err(|e| {
        Error::io(
            format!("cannot move {} to {}", tmp.display(), out.display()),
            e,
        )
    })
}

/// `path` with a hidden temporary name in the same directory (so the final rename is atomic).
fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// A Parquet or CSV writer behind one interface.
pub enum TableWriter {
    Parquet(ArrowWriter<File>),
    Csv(arrow::csv::Writer<File>),
}

impl TableWriter {
    /// A writer for `schema`; Parquet unless `csv`.
    pub fn new(file: File, schema: SchemaRef, csv: bool) -> Result<Self> {
        Ok(if csv {
            TableWriter::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(file),
            )
        } else {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build();
            TableWriter::Parquet(ArrowWriter::try_new(file, schema, Some(props))?)
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            TableWriter::Parquet(w) => w.write(batch)?,
            TableWriter::Csv(w) => w.write(batch)?,
        }
        Ok(())
    }

    /// Flushes and syncs the file.
    pub fn finish(self) -> Result<()> {
        let file = match self {
            TableWriter::Parquet(w) => w.into_inner()?,
            TableWriter::Csv(w) => w.into_inner(),
        };
        file.sync_all()
            .map_err(|e| Error::io("cannot sync the generated file", e))
    }
}
