//! Shared helpers for the integration tests: run the real binary, write small inputs with a
//! known answer, read outputs back.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, RecordBatch,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, UInt64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Runs `sketchpipe ARGS` (non-interactive, so progress goes to plain log lines).
pub fn sketchpipe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sketchpipe"))
        .args(args)
        .output()
        .expect("the sketchpipe binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `sql` on `ctx` and collects its batches, panicking with the query on an error.
pub async fn collect_sql(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Asserts success, printing stderr if not.
pub fn assert_ok(o: &Output) {
    assert!(o.status.success(), "sketchpipe failed:\n{}", stderr(o));
}

/// Rows with an exactly known spectrum: for an orthogonal `Q` (a Householder reflection of a
/// random vector) and eigenvalues `λ`, `copies` blocks of rows `±sqrt(λ_j / copies) q_j`,
/// shuffled. Then `AᵀA = Q diag(λ) Qᵀ` exactly (up to rounding) and `v₁ = q_0`.
#[derive(Clone)]
pub struct KnownSpectrum {
    pub d: usize,
    /// Row-major `n × d`.
    pub rows: Vec<f64>,
    pub v1: Vec<f64>,
    pub lambdas: Vec<f64>,
}

impl KnownSpectrum {
    pub fn new(d: usize, copies: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let u: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
        let uu: f64 = u.iter().map(|x| x * x).sum();
        // Q = I − 2 u uᵀ / ‖u‖²; column j is q_j.
        let q = |i: usize, j: usize| f64::from(u8::from(i == j)) - 2.0 * u[i] * u[j] / uu;
        let lambdas: Vec<f64> = (0..d)
            .map(|j| if j == 0 { 10.0 } else { 3.0 / (1.0 + j as f64) })
            .collect();
        let mut order: Vec<(usize, usize)> = (0..copies)
            .flat_map(|c| (0..d).map(move |j| (c, j)))
            .collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut rows = Vec::with_capacity(order.len() * d);
        for (_, j) in order {
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            let s = sign * (lambdas[j] / copies as f64).sqrt();
            rows.extend((0..d).map(|i| s * q(i, j)));
        }
        let v1 = (0..d).map(|i| q(i, 0)).collect();
        KnownSpectrum {
            d,
            rows,
            v1,
            lambdas,
        }
    }

    /// The same rows with some values (flat row-major index, value) replaced: bad inputs.
    pub fn with_values(&self, values: &[(usize, f64)]) -> Self {
        let mut out = self.clone();
        for &(i, v) in values {
            out.rows[i] = v;
        }
        out
    }

    pub fn n(&self) -> usize {
        self.rows.len() / self.d
    }

    /// A batch `id Int64, emb List<Float64>` of rows `range`.
    pub fn batch(&self, range: std::ops::Range<usize>) -> RecordBatch {
        let d = self.d;
        let values = Float64Array::from(self.rows[range.start * d..range.end * d].to_vec());
        let item = Arc::new(Field::new("item", DataType::Float64, true));
        let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(d, range.len()));
        let emb = ListArray::new(item, offsets, Arc::new(values), None);
        let ids = Int64Array::from_iter_values(range.start as i64..range.end as i64);
        RecordBatch::try_from_iter([("id", Arc::new(ids) as ArrayRef), ("emb", Arc::new(emb))])
            .unwrap()
    }

    /// Writes the rows as `dir/part-0.parquet` … `part-{parts-1}.parquet`, consecutive slices
    /// of about `n / parts` rows (a multi-file input: several partitions to scan).
    pub fn write_parts(&self, dir: &Path, parts: usize) {
        let n = self.n();
        std::fs::create_dir_all(dir).unwrap();
        for p in 0..parts {
            write_parquet(
                &dir.join(format!("part-{p}.parquet")),
                &self.batch(p * n / parts..(p + 1) * n / parts),
            );
        }
    }

    /// A batch `id, x0, …, x{d-1}` (one Float64 column per dimension) of rows `range`.
    pub fn wide_batch(&self, range: std::ops::Range<usize>) -> RecordBatch {
        let d = self.d;
        let mut cols: Vec<(String, ArrayRef)> = vec![(
            "id".into(),
            Arc::new(Int64Array::from_iter_values(
                range.start as i64..range.end as i64,
            )),
        )];
        for j in 0..d {
            let col: Vec<f64> = range.clone().map(|i| self.rows[i * d + j]).collect();
            cols.push((format!("x{j}"), Arc::new(Float64Array::from(col))));
        }
        RecordBatch::try_from_iter(cols).unwrap()
    }
}

pub fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

pub fn write_csv(path: &Path, batch: &RecordBatch) {
    let file = File::create(path).unwrap();
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(file);
    w.write(batch).unwrap();
}

pub fn read_parquet(path: &Path) -> RecordBatch {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The `value` column of a stage's `vector` table.
pub fn read_vector(stage_dir: &Path) -> Vec<f64> {
    let b = read_parquet(&stage_dir.join("vector.parquet"));
    b.column_by_name("value")
        .unwrap()
        .as_primitive::<Float64Type>()
        .values()
        .to_vec()
}

/// One numeric cell of a stage's `stats` table.
pub fn stat_f64(stage_dir: &Path, column: &str) -> f64 {
    let b = read_parquet(&stage_dir.join("stats.parquet"));
    b.column_by_name(column)
        .unwrap()
        .as_primitive::<Float64Type>()
        .value(0)
}

pub fn stat_u64(stage_dir: &Path, column: &str) -> u64 {
    let b = read_parquet(&stage_dir.join("stats.parquet"));
    b.column_by_name(column)
        .unwrap()
        .as_primitive::<UInt64Type>()
        .value(0)
}

pub fn stat_bool(stage_dir: &Path, column: &str) -> bool {
    let b = read_parquet(&stage_dir.join("stats.parquet"));
    b.column_by_name(column).unwrap().as_boolean().value(0)
}

pub fn stat_u32(stage_dir: &Path, column: &str) -> u32 {
    let b = read_parquet(&stage_dir.join("stats.parquet"));
    b.column_by_name(column)
        .unwrap()
        .as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
        .value(0)
}

/// A pipeline file `pipeline.toml` in `dir` with the given text.
pub fn write_pipeline(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn alignment(u: &[f64], v: &[f64]) -> f64 {
    sketchpipe::eigen::alignment(u, v)
}

/// Every file under `dir`, recursively (to check that nothing was left behind).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
                out.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The sample of the `sketch` table of a sampling sketch stage's output directory.
pub fn read_sample(stage_dir: &Path) -> sketchpipe::sketch::Sample {
    use sketchpipe::operators::coordinated_sketch::{table, StoredSketch};
    match table::read(&stage_dir.join("sketch.parquet")).unwrap().0 {
        StoredSketch::Sample(s) => s,
        StoredSketch::Linear(_) => panic!("{} holds a linear sketch", stage_dir.display()),
    }
}

/// [`files_under`] without the output directory's lock file, which records who ran last and
/// never holds data: what a failed run must not leave behind.
pub fn outputs_under(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| !p.ends_with(sketchpipe::pipeline::lock::LOCK_FILE))
        .collect()
}

pub fn null_count(b: &RecordBatch, column: &str) -> usize {
    b.column_by_name(column).unwrap().null_count()
}

#[allow(unused_imports)]
pub use sketchpipe::prune::auroc;

/// Runs pipeline `text` through the library, written to `dir/pipeline.toml` after a
/// `[pipeline]` table with `output_dir = "out"` (lines of `text` before its first section go
/// into that table); quiet.
pub async fn run_text(dir: &Path, text: &str) -> sketchpipe::Result<()> {
    let file = dir.join("pipeline.toml");
    std::fs::write(&file, format!("[pipeline]\noutput_dir = \"out\"\n{text}")).unwrap();
    let spec = sketchpipe::pipeline::PipelineSpec::load(&file, &[])?;
    let opts = sketchpipe::pipeline::RunOptions {
        progress: sketchpipe::progress::ProgressMode::Quiet,
        ..Default::default()
    };
    sketchpipe::pipeline::run(&spec, &opts).await.map(|_| ())
}

/// [`run_text`], which must succeed.
pub async fn run_ok(dir: &Path, text: &str) {
    if let Err(e) = run_text(dir, text).await {
        panic!("run failed: {e}");
    }
}

/// [`run_text`], which must fail; returns the message.
pub async fn run_err(dir: &Path, text: &str) -> String {
    match run_text(dir, text).await {
        Ok(()) => panic!("the run should have failed:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// `(key, row)` rows as a sparse `List<Struct<index: UInt32, value: Float64>>` column, each
/// row's entries written in reverse order (the reader sorts them).
pub fn sparse_batch(rows: &[(i64, Vec<f64>)], bad_index: Option<u32>) -> RecordBatch {
    use datafusion::arrow::array::{
        ArrayRef, Float64Array, Int64Array, ListArray, StructArray, UInt32Array,
    };
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
    use std::sync::Arc;
    let (mut lengths, mut idx, mut val) = (Vec::new(), Vec::new(), Vec::new());
    for (_, row) in rows {
        let nz: Vec<(u32, f64)> = row
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0)
            .map(|(j, v)| (j as u32, *v))
            .rev()
            .collect();
        lengths.push(nz.len());
        for (j, v) in nz {
            idx.push(j);
            val.push(v);
        }
    }
    if let Some(b) = bad_index {
        idx[0] = b;
    }
    let fields = Fields::from(vec![
        Field::new("index", DataType::UInt32, false),
        Field::new("value", DataType::Float64, false),
    ]);
    let entries = StructArray::new(
        fields.clone(),
        vec![
            Arc::new(UInt32Array::from(idx)) as ArrayRef,
            Arc::new(Float64Array::from(val)),
        ],
        None,
    );
    let item = Arc::new(Field::new("item", DataType::Struct(fields), false));
    let list = ListArray::new(
        item.clone(),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(entries),
        None,
    );
    let schema = Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("sparse", DataType::List(item), false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(list),
        ],
    )
    .unwrap()
}
