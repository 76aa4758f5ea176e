//! Every `top_eigenvector` algorithm against a plain DataFusion scan of the same column.
//!
//! `cargo bench --bench scan_ratio`. Generates a Parquet file of `SKETCHPIPE_BENCH_BYTES`
//! (default 1.1 GB) of `d`-dimensional f32 embeddings per dimension (`SKETCHPIPE_BENCH_DIMS`,
//! default `64,256,1024`) under `bench-data/` (not committed; reused between runs), then, in
//! the same process:
//! * **scan** — `SELECT emb FROM t` streamed into a sink that only counts rows;
//! * **each algorithm** (`SKETCHPIPE_BENCH_ALGORITHMS`, default all four) — a one-stage
//!   pipeline over the same file, run through the pipeline runner exactly as `sketchpipe run`
//!   does (rows adapter, core, output tables), with default parameters.
//!
//! Each is run `SKETCHPIPE_BENCH_REPS` times (default 3, the page cache warm after the first)
//! and the best time is kept. Prints rows/s of each, the throughput of each relative to the
//! scan (1.0 = as fast as reading the column), and `random-order` / `exact`.
//!
//! Then the memory check: peak RSS of `sketchpipe run` (the release binary, a child process
//! measured with `wait4`) with `random-order` on two files 10× apart in size
//! (`SKETCHPIPE_BENCH_RSS_DIM`, default 256; the larger file is the 1.1 GB one).

mod common;

use std::path::{Path, PathBuf};

use common::{env_or, time_pipeline, time_query};
use sketchpipe::generate::{write_rows, LowRank, TableOptions};
use sketchpipe::progress::ProgressMode;

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
        };
        let rows = spec.rows().expect("bench data parameters");
        write_rows(rows, &path, TableOptions::default(), ProgressMode::Quiet)
            .expect("generate bench data");
    }
    path
}

async fn scan(path: &Path) -> (u64, f64) {
    time_query(path, "SELECT emb FROM t").await
}

fn pipeline_text(path: &Path, out: &Path, algorithm: &str) -> String {
    format!(
        "[pipeline]\noutput_dir = \"{}\"\n[sources.t]\npath = \"{}\"\n[stages.top]\n\
         op = \"top_eigenvector\"\nsource = \"t\"\ncolumns = [\"emb\"]\nalgorithm = \"{algorithm}\"\n",
        out.display(),
        path.display()
    )
}

async fn operator(path: &Path, out: &Path, algorithm: &str) -> f64 {
    time_pipeline(&pipeline_text(path, out, algorithm)).await
}

/// Peak resident set of `sketchpipe run` on `path` with `algorithm`, in MiB. Measured before
/// this process grows (a child's peak can include the pages it was forked with).
#[allow(clippy::zombie_processes)] // reaped by `wait4`, which also returns its rusage
fn peak_rss_mib(path: &Path, out: &Path, algorithm: &str) -> f64 {
    let file = out.with_extension("toml");
    std::fs::write(&file, pipeline_text(path, out, algorithm)).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sketchpipe"))
        .args(["-q", "run", file.to_str().unwrap()])
        .spawn()
        .expect("run the sketchpipe binary");
    let mut status = 0;
    // SAFETY: `rusage` is plain data; `wait4` fills it for the child we just spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "run failed"
    );
    usage.ru_maxrss as f64 / 1024.0
}

fn main() {
    // `cargo bench` passes `--bench`; ignore it and any filter.
    let bytes: u64 = env_or("SKETCHPIPE_BENCH_BYTES", 1_100_000_000);
    let reps: usize = env_or("SKETCHPIPE_BENCH_REPS", 3);
    let list = |key: &str, default: &str| -> Vec<String> {
        std::env::var(key)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    let dims: Vec<usize> = list("SKETCHPIPE_BENCH_DIMS", "64,256,1024")
        .iter()
        .map(|s| {
            s.parse()
                .expect("SKETCHPIPE_BENCH_DIMS: comma-separated integers")
        })
        .collect();
    let algorithms = list(
        "SKETCHPIPE_BENCH_ALGORITHMS",
        "exact,frequent-directions,random-order,oja",
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let d: usize = env_or("SKETCHPIPE_BENCH_RSS_DIM", 256);
    let big = data_file(&dir, d, bytes);
    let small = data_file(&dir, d, bytes / 10);
    println!("| random-order, d = {d} | file MB | peak RSS MiB |");
    println!("|---|---|---|");
    for path in [small, big] {
        let mb = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;
        let rss = peak_rss_mib(&path, &dir.join(format!("rss-d{d}")), "random-order");
        println!(
            "| {} | {mb:.0} | {rss:.0} |",
            path.file_name().unwrap().to_string_lossy()
        );
    }
    println!();
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("| d | rows | file MB | scan rows/s | algorithm | rows/s | throughput / scan |");
    println!("|---|---|---|---|---|---|---|");
    for d in dims {
        let path = data_file(&dir, d, bytes);
        let file_mb = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;
        let out = dir.join(format!("out-d{d}"));
        let mut best_scan = f64::INFINITY;
        let mut rows = 0;
        for _ in 0..reps {
            let (n, t) = rt.block_on(scan(&path));
            rows = n;
            best_scan = best_scan.min(t);
        }
        let scan_rate = rows as f64 / best_scan;
        let mut rates = std::collections::BTreeMap::new();
        for algorithm in &algorithms {
            let best = (0..reps)
                .map(|_| rt.block_on(operator(&path, &out, algorithm)))
                .fold(f64::INFINITY, f64::min);
            let rate = rows as f64 / best;
            rates.insert(algorithm.clone(), rate);
            println!(
                "| {d} | {rows} | {file_mb:.0} | {scan_rate:.0} | {algorithm} | {rate:.0} | {:.2} |",
                rate / scan_rate
            );
        }
        if let (Some(ro), Some(ex)) = (rates.get("random-order"), rates.get("exact")) {
            println!("| {d} | | | | random-order / exact | | {:.1}× |", ro / ex);
        }
    }
}
