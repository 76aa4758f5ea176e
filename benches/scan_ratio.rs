//! The exact `top_eigenvector` operator against a plain DataFusion scan of the same column.
//!
//! `cargo bench --bench scan_ratio` (or `benches/scan_ratio.sh`). Generates a Parquet file of
//! `SKETCHPIPE_BENCH_BYTES` (default 1.1 GB) of `d`-dimensional f32 embeddings per dimension
//! under `bench-data/` (not committed; reused between runs), then, in the same process:
//! * **scan** — `SELECT emb FROM t` streamed into a sink that only counts rows;
//! * **operator** — the same scan feeding the exact operator (rows adapter + Gram update +
//!   eigensolver), run through the pipeline runner exactly as `sketchpipe run` does.
//!
//! Each is run `SKETCHPIPE_BENCH_REPS` times (default 3, the page cache warm after the first)
//! and the best time is kept. Prints rows/s of each and the ratio operator/scan.

use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::physical_plan::execute_stream;
use futures::StreamExt;
use sketchpipe::generate::{Dtype, LowRank};
use sketchpipe::pipeline::{self, PipelineSpec, RunOptions};
use sketchpipe::progress::ProgressMode;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn data_file(dir: &Path, d: usize, bytes: u64) -> PathBuf {
    let rows = bytes / (4 * d as u64);
    let path = dir.join(format!("lowrank-d{d}-{rows}.parquet"));
    if !path.exists() {
        eprintln!("generating {} ({rows} rows × {d})…", path.display());
        let spec = LowRank {
            rows,
            dim: d,
            gap: 10.0,
            rank: 8.min(d),
            noise: 0.01,
            seed: 1,
            dtype: Dtype::F32,
        };
        spec.write(&path, ProgressMode::Quiet)
            .expect("generate bench data");
    }
    path
}

async fn scan(path: &Path) -> (u64, f64) {
    let ctx = sketchpipe::pipeline::source::session();
    let start = Instant::now();
    let df = ctx
        .read_parquet(path.to_str().unwrap(), Default::default())
        .await
        .unwrap()
        .select_columns(&["emb"])
        .unwrap();
    let plan = df.create_physical_plan().await.unwrap();
    let mut stream = execute_stream(plan, ctx.task_ctx()).unwrap();
    let mut rows = 0u64;
    while let Some(b) = stream.next().await {
        rows += std::hint::black_box(b.unwrap()).num_rows() as u64;
    }
    (rows, start.elapsed().as_secs_f64())
}

async fn operator(path: &Path, out: &Path) -> f64 {
    let text = format!(
        "[pipeline]\noutput_dir = \"{}\"\n[sources.t]\npath = \"{}\"\n[stages.top]\n\
         op = \"top_eigenvector\"\nsource = \"t\"\ncolumns = [\"emb\"]\nalgorithm = \"exact\"\n",
        out.display(),
        path.display()
    );
    let spec = PipelineSpec::parse(&text, Path::new("bench.toml"), &[]).unwrap();
    let opts = RunOptions {
        progress: ProgressMode::Quiet,
        ..Default::default()
    };
    let start = Instant::now();
    pipeline::run(&spec, &opts).await.unwrap();
    start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; ignore it and any filter.
    let bytes: u64 = env_or("SKETCHPIPE_BENCH_BYTES", 1_100_000_000);
    let reps: usize = env_or("SKETCHPIPE_BENCH_REPS", 3);
    let dims: Vec<usize> = std::env::var("SKETCHPIPE_BENCH_DIMS")
        .unwrap_or_else(|_| "64".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("SKETCHPIPE_BENCH_DIMS: comma-separated integers")
        })
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("| d | rows | file MB | scan rows/s | exact rows/s | exact / scan (time) |");
    println!("|---|---|---|---|---|---|");
    for d in dims {
        let path = data_file(&dir, d, bytes);
        let file_mb = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;
        let out = dir.join(format!("out-d{d}"));
        let mut best_scan = f64::INFINITY;
        let mut best_op = f64::INFINITY;
        let mut rows = 0;
        for _ in 0..reps {
            let (n, t) = rt.block_on(scan(&path));
            rows = n;
            best_scan = best_scan.min(t);
            best_op = best_op.min(rt.block_on(operator(&path, &out)));
        }
        println!(
            "| {d} | {rows} | {file_mb:.0} | {:.0} | {:.0} | {:.2} |",
            rows as f64 / best_scan,
            rows as f64 / best_op,
            best_op / best_scan
        );
    }
}
