//! `sketchpipe generate`: reproducible synthetic tables for demos, tests and benchmarks.
//!
//! Every generator is a pure function of its flags and seed (ChaCha8, portable across
//! platforms), streams its output in batches (so multi-GB files need little memory), and
//! writes atomically: to a temporary sibling first (removed on an error, a panic or Ctrl-C),
//! renamed into place when complete.

pub mod corpus;
pub mod labels;
pub mod pair;

pub use corpus::Corpus;
pub use labels::{Classification, Logits};
pub use pair::SparsePair;

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
use rand::seq::SliceRandom;
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

/// A non-random row order for the sorted-input tests (§1f, family 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Ascending row norm `‖a‖` (heavy rows last).
    Norm,
    /// Ascending projection `⟨a, v₁⟩` on the planted top direction: the data sorted along its
    /// principal axis.
    Top,
}

impl SortBy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "norm" => Some(SortBy::Norm),
            "top" => Some(SortBy::Top),
            _ => None,
        }
    }
}

/// Options shared by every generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    pub dtype: Dtype,
    /// Write the rows sorted (the whole table is built in memory first) instead of in their
    /// generated order.
    pub sort_by: Option<SortBy>,
}

/// The rows of a generator, made in order a chunk at a time.
pub struct Rows {
    pub dim: usize,
    pub count: u64,
    /// The planted top direction `v₁` (unit norm).
    pub top: Vec<f64>,
    make: MakeRows,
}

/// Appends the next `n` rows to the buffer.
type MakeRows = Box<dyn FnMut(usize, &mut Vec<f64>) + Send>;

impl Rows {
    /// Appends the next `n` rows (row-major) to `out`.
    pub fn fill(&mut self, n: usize, out: &mut Vec<f64>) {
        (self.make)(n, out)
    }
}

/// `generate low-rank`: rows `a_i = Q · (sqrt(λ) ⊙ g_i)` with `g_i ~ N(0, I)` and `Q` a random
/// orthogonal map (`Rotation`), so `E[AᵀA] = n · Q diag(λ) Qᵀ` with
/// `λ = (gap, 1, …, 1 [rank − 1 ones], noise, …, noise)`: the top eigengap is
/// `R = σ₁²/σ₂² ≈ gap` and the top direction `Q e₁` is a random one (§1f, family 1).
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

fn check_gap(kind: &str, gap: f64) -> Result<()> {
    if !(gap.is_finite() && gap >= 1.0) {
        return Err(Error::Config(format!(
            "generate {kind}: --gap must be a number ≥ 1, got {gap}"
        )));
    }
    Ok(())
}

fn check_shape(kind: &str, rows: u64, dim: usize, min_dim: usize) -> Result<()> {
    if rows == 0 || dim < min_dim {
        return Err(Error::Config(format!(
            "generate {kind}: --rows must be at least 1 and --dim at least {min_dim}"
        )));
    }
    Ok(())
}

impl LowRank {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("generate low-rank: {m}")));
        check_shape("low-rank", self.rows, self.dim, 1)?;
        check_gap("low-rank", self.gap)?;
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

    /// The rows, made on the fly.
    pub fn rows(&self) -> Result<Rows> {
        self.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let rotation = Rotation::random(self.dim, &mut rng);
        let scale: Vec<f64> = self.spectrum().iter().map(|l| l.sqrt()).collect();
        let top = rotation.column(0);
        Ok(Rows {
            dim: self.dim,
            count: self.rows,
            top,
            make: Box::new(move |n, x| {
                for _ in 0..n {
                    let start = x.len();
                    x.extend(
                        scale
                            .iter()
                            .map(|s| s * rng.sample::<f64, _>(StandardNormal)),
                    );
                    rotation.apply(&mut x[start..]);
                }
            }),
        })
    }
}

/// `generate heavy-row`: the instance where every fixed learning rate of Oja fails (§1f,
/// family 2; Kacham–Woodruff, arXiv:2412.11963): one row `sqrt(R)·e₁` and, for each
/// `j = 2..d`, `m` rows `sqrt(1/m)·e_j`, all rotated by one random orthogonal `Q` and
/// shuffled. `AᵀA = Q diag(R, 1, …, 1) Qᵀ` exactly, so `v₁ = Q e₁` and the gap is `R`.
#[derive(Debug, Clone)]
pub struct HeavyRow {
    pub dim: usize,
    pub gap: f64,
    /// Light rows per direction (`m`).
    pub per_direction: u64,
    pub seed: u64,
}

impl HeavyRow {
    /// `n = 1 + (d − 1)·m`.
    pub fn row_count(&self) -> u64 {
        1 + (self.dim as u64).saturating_sub(1) * self.per_direction
    }

    pub fn rows(&self) -> Result<Rows> {
        check_shape("heavy-row", self.per_direction, self.dim, 2)?;
        check_gap("heavy-row", self.gap)?;
        let n = self.row_count();
        if n > u32::MAX as u64 {
            return Err(Error::Config(format!(
                "generate heavy-row: {n} rows is too many (at most {})",
                u32::MAX
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let rotation = Rotation::random(self.dim, &mut rng);
        // Row kinds in random order: 0 is the heavy row, t ≥ 1 is a light row along e_{1+(t−1)/m}.
        let mut kinds: Vec<u32> = (0..n as u32).collect();
        kinds.shuffle(&mut rng);
        let (d, m, heavy) = (self.dim, self.per_direction, self.gap.sqrt());
        let light = (1.0 / m as f64).sqrt();
        let mut next = 0usize;
        Ok(Rows {
            dim: d,
            count: n,
            top: rotation.column(0),
            make: Box::new(move |count, x| {
                for &kind in &kinds[next..next + count] {
                    let start = x.len();
                    x.resize(start + d, 0.0);
                    if kind == 0 {
                        x[start] = heavy;
                    } else {
                        x[start + 1 + ((kind as u64 - 1) / m) as usize] = light;
                    }
                    rotation.apply(&mut x[start..]);
                }
                next += count;
            }),
        })
    }
}

/// `generate heavy-vs-bulk`: heavy rows against the bulk (§1f, family 3). `rows` light rows
/// are Gaussian with variance `bulk_gap` along `u = Q e₂` and 1 along every other direction,
/// so the bulk's own top direction is `u`; `heavy_rows` rows `±sqrt(c)·w` along `w = Q e₁ ⊥ u`
/// carry in total `heavy_mass · bulk_gap · rows`, more than the bulk's top eigenvalue. The
/// answer is `w` (top eigenvalue ≈ `(1 + heavy_mass · bulk_gap) · rows`); a method that drops
/// or mis-combines the heavy rows answers `u`. Heavy rows sit at random positions.
#[derive(Debug, Clone)]
pub struct HeavyVsBulk {
    pub rows: u64,
    pub dim: usize,
    pub heavy_rows: u64,
    pub heavy_mass: f64,
    pub bulk_gap: f64,
    pub seed: u64,
}

impl HeavyVsBulk {
    pub fn rows(&self) -> Result<Rows> {
        check_shape("heavy-vs-bulk", self.rows, self.dim, 2)?;
        check_gap("heavy-vs-bulk", self.bulk_gap)?;
        if self.heavy_rows == 0 || !(self.heavy_mass.is_finite() && self.heavy_mass > 0.0) {
            return Err(Error::Config(format!(
                "generate heavy-vs-bulk: --heavy-rows must be ≥ 1 and --heavy-mass > 0, got {} and {}",
                self.heavy_rows, self.heavy_mass
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let rotation = Rotation::random(self.dim, &mut rng);
        let n = self.rows + self.heavy_rows;
        let mut heavy_at = std::collections::BTreeSet::new();
        while (heavy_at.len() as u64) < self.heavy_rows {
            heavy_at.insert(rng.random_range(0..n));
        }
        let heavy_at: Vec<u64> = heavy_at.into_iter().collect();
        let d = self.dim;
        let bulk = self.bulk_gap.sqrt();
        let heavy =
            (self.heavy_mass * self.bulk_gap * self.rows as f64 / self.heavy_rows as f64).sqrt();
        let (mut pos, mut next_heavy) = (0u64, 0usize);
        Ok(Rows {
            dim: d,
            count: n,
            top: rotation.column(0),
            make: Box::new(move |count, x| {
                for _ in 0..count {
                    let start = x.len();
                    if heavy_at.get(next_heavy) == Some(&pos) {
                        next_heavy += 1;
                        x.resize(start + d, 0.0);
                        x[start] = if rng.random::<bool>() { heavy } else { -heavy };
                    } else {
                        x.extend((0..d).map(|j| {
                            let g: f64 = rng.sample(StandardNormal);
                            if j == 1 {
                                bulk * g
                            } else {
                                g
                            }
                        }));
                    }
                    rotation.apply(&mut x[start..]);
                    pos += 1;
                }
            }),
        })
    }
}

/// Writes `rows` to `out`: Parquet (`id Int64`, `emb List<Float32|Float64>`) or, for a `.csv`
/// path, CSV with columns `id, x0, …, x{d-1}`.
pub fn write_rows(
    mut rows: Rows,
    out: &Path,
    options: TableOptions,
    progress: ProgressMode,
) -> Result<Generated> {
    let csv = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let layout = Layout {
        dim: rows.dim,
        dtype: options.dtype,
        csv,
    };
    let schema = layout.schema();
    let label = format!("generate {}", out.display());
    let total = rows.count;
    if let Some(by) = options.sort_by {
        rows = sorted(rows, by)?;
    }
    write_atomically(
        out,
        schema.clone(),
        csv,
        layout.row_bytes(),
        total,
        &label,
        progress,
        |first, n| {
            let mut x = Vec::with_capacity(n * rows.dim);
            rows.fill(n, &mut x);
            layout.batch(&schema, first, &x)
        },
    )?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(Generated {
        path: out.to_path_buf(),
        rows: total,
        bytes,
    })
}

/// The same rows in `by` order (built in memory, up to 8 GiB).
fn sorted(mut rows: Rows, by: SortBy) -> Result<Rows> {
    let (d, total) = (rows.dim, rows.count);
    let bytes = total as f64 * d as f64 * 8.0;
    if bytes > 8.0 * (1u64 << 30) as f64 {
        return Err(Error::Config(format!(
            "generate --sort-by builds the table in memory: {total} × {d} rows need {:.1} GiB, over the 8 GiB limit",
            bytes / (1u64 << 30) as f64
        )));
    }
    let mut all = Vec::with_capacity(total as usize * d);
    rows.fill(total as usize, &mut all);
    let key = |row: &[f64]| -> f64 {
        match by {
            SortBy::Norm => row.iter().map(|v| v * v).sum(),
            SortBy::Top => row.iter().zip(&rows.top).map(|(a, b)| a * b).sum(),
        }
    };
    let keys: Vec<f64> = all.chunks_exact(d).map(key).collect();
    let mut order: Vec<usize> = (0..total as usize).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    let mut cursor = 0usize;
    Ok(Rows {
        dim: d,
        count: total,
        top: rows.top,
        make: Box::new(move |n, x| {
            for &i in &order[cursor..cursor + n] {
                x.extend_from_slice(&all[i * d..(i + 1) * d]);
            }
            cursor += n;
        }),
    })
}

/// The columns every generator writes.
struct Layout {
    dim: usize,
    dtype: Dtype,
    csv: bool,
}

impl Layout {
    /// Decoded bytes of one row: the `id` and `dim` values.
    fn row_bytes(&self) -> usize {
        let value = match self.dtype {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        };
        8 + self.dim * value
    }

    fn element_type(&self) -> DataType {
        match self.dtype {
            Dtype::F32 => DataType::Float32,
            Dtype::F64 => DataType::Float64,
        }
    }

    fn schema(&self) -> SchemaRef {
        let mut fields = vec![Field::new("id", DataType::Int64, false)];
        if self.csv {
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
    fn batch(&self, schema: &SchemaRef, first_id: u64, x: &[f64]) -> Result<RecordBatch> {
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
        if self.csv {
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

    /// `Q e_j`.
    fn column(&self, j: usize) -> Vec<f64> {
        let mut e = vec![0.0; self.dim];
        e[j] = 1.0;
        self.apply(&mut e);
        e
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
#[allow(clippy::too_many_arguments)]
fn write_atomically(
    out: &Path,
    schema: SchemaRef,
    csv: bool,
    row_bytes: usize,
    rows: u64,
    label: &str,
    progress: ProgressMode,
    mut make: impl FnMut(u64, usize) -> Result<RecordBatch>,
) -> Result<()> {
    const BATCH_ROWS: u64 = 8192;
    // `--out new/dir/x.parquet` makes `new/dir`, as `generate logits --out-dir` does.
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    // A hidden sibling (so the final rename is atomic), removed when dropped: on an error,
    // a panic, or Ctrl-C (`cancel`, checked between batches).
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            Error::io(
                format!("cannot create a temporary file in {}", dir.display()),
                e,
            )
        })?;
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io(format!("cannot write {}", tmp.path().display()), e))?;
    let mut progress = Progress::new(label, Some(rows), progress);
    let mut writer = TableWriter::new(file, schema, csv, row_bytes)?;
    let mut done = 0u64;
    while done < rows {
        if let Some(s) = CANCELLED.get() {
            return Err(Error::Interrupted(s));
        }
        let n = (rows - done).min(BATCH_ROWS) as usize;
        let batch = make(done, n)?;
        writer.write(&batch)?;
        progress.inc(n as u64, batch.get_array_memory_size() as u64);
        done += n as u64;
    }
    writer.finish()?;
    progress.finish();
    tmp.persist(out).map_err(|e| {
        Error::io(
            format!(
                "cannot move {} to {}",
                e.file.path().display(),
                out.display()
            ),
            e.error,
        )
    })?;
    Ok(())
}

/// Set by [`cancel`]; a generator stops at its next batch.
static CANCELLED: crate::signals::Received = crate::signals::Received::new();

/// Asks the running generator to stop (a stopping signal): it returns [`Error::Interrupted`]
/// at its next batch, and its temporary file is removed. The request is final for the
/// process: every generator started after it stops at its first batch too (the CLI exits).
pub fn cancel(signal: crate::signals::Signal) {
    CANCELLED.set(signal);
}

/// Target decoded size of one Parquet row group. Readers hold a whole column chunk of a row
/// group in memory and parallelise across row groups, so a multi-GB file written as one giant
/// group would make every reader's memory grow with the file.
const ROW_GROUP_BYTES: usize = 64 << 20;

/// A Parquet or CSV writer behind one interface.
pub enum TableWriter {
    Parquet(ArrowWriter<File>),
    Csv(arrow::csv::Writer<File>),
}

impl TableWriter {
    /// A writer for `schema`; Parquet unless `csv`. `row_bytes` (the decoded size of a row)
    /// sizes Parquet row groups to about 64 MiB.
    pub fn new(file: File, schema: SchemaRef, csv: bool, row_bytes: usize) -> Result<Self> {
        Ok(if csv {
            TableWriter::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(file),
            )
        } else {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(
                    (ROW_GROUP_BYTES / row_bytes.max(1)).clamp(1024, 1 << 20),
                ))
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
