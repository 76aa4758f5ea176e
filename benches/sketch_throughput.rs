//! Build throughput of a `priority` coordinated sketch against a raw scan of the same columns.
//!
//! `cargo bench --bench sketch_throughput`. Under `bench-data/` (not committed; reused):
//! `generate sparse-pair` with `SKETCHPIPE_BENCH_ROWS` rows (default 1 000 000), `d = 50`,
//! 10 % density. Then, best of `SKETCHPIPE_BENCH_REPS` (default 3), in this process:
//! * **scan** — `SELECT key, values` streamed into a row counter;
//! * **key check** — the `duplicate_keys = "error"` check alone (a group-by over the key);
//! * **stage** — a `coordinated_sketch` stage (`priority`, `k = 1000`) through the runner, as
//!   `sketchpipe run` does it: the key check, then the sketch pass;
//!
//! Prints rows/s and the ratio to the scan.

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use sketchpipe::generate::SparsePair;
use sketchpipe::pipeline::{self, PipelineSpec, RunOptions};
use sketchpipe::progress::ProgressMode;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn stream(path: &Path, query: &str) -> f64 {
    let ctx = pipeline::source::session();
    ctx.register_parquet("t", path.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let start = Instant::now();
    let mut s = ctx
        .sql(query)
        .await
        .unwrap()
        .execute_stream()
        .await
        .unwrap();
    while let Some(b) = s.next().await {
        std::hint::black_box(b.unwrap());
    }
    start.elapsed().as_secs_f64()
}

async fn stage(text: &str) -> f64 {
    let spec = PipelineSpec::parse(text, Path::new("bench.toml"), &[]).unwrap();
    let opts = RunOptions {
        progress: ProgressMode::Quiet,
        ..Default::default()
    };
    let start = Instant::now();
    pipeline::run(&spec, &opts).await.unwrap();
    start.elapsed().as_secs_f64()
}

fn main() {
    let n: u64 = env_or("SKETCHPIPE_BENCH_ROWS", 1_000_000);
    let reps: usize = env_or("SKETCHPIPE_BENCH_REPS", 3);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-data");
    let dir = root.join(format!("pair-{n}"));
    if !dir.join("left.parquet").exists() {
        eprintln!("generating {} …", dir.display());
        SparsePair {
            rows: n,
            dim: 50,
            dim_right: 1,
            density: 0.1,
            overlap: 1.0,
            outliers: 0,
            seed: 1,
        }
        .write(&dir, ProgressMode::Quiet)
        .unwrap();
    }
    let left = dir.join("left.parquet");
    let out = tempfile::TempDir::new_in(&root).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let best = |f: &dyn Fn() -> f64| (0..reps).map(|_| f()).fold(f64::INFINITY, f64::min);
    let text = |extra: &str| {
        format!(
            "[pipeline]\noutput_dir = \"{}\"\n[sources.t]\npath = \"{}\"\n[stages.s]\n\
             op = \"coordinated_sketch\"\nsource = \"t\"\nkey = \"key\"\ncolumns = [\"values\"]\n\
             size = 1000\n{extra}\n",
            out.path().display(),
            left.display()
        )
    };
    let scan = best(&|| rt.block_on(stream(&left, "SELECT key, \"values\" FROM t")));
    let check = best(&|| {
        rt.block_on(stream(
            &left,
            "SELECT key FROM t GROUP BY key HAVING count(*) > 1 LIMIT 1",
        ))
    });
    let default = best(&|| rt.block_on(stage(&text(""))));
    println!("priority sketch (k = 1000) of {n} rows × 50 (10 % non-zero), best of {reps}:");
    println!("  {:<40} {:>12} {:>9}", "", "rows/s", "vs scan");
    for (name, secs) in [
        ("scan (key, values)", scan),
        ("duplicate-key check alone", check),
        ("stage (key check + sketch pass)", default),
    ] {
        println!(
            "  {name:<40} {:>12.0} {:>9.2}",
            n as f64 / secs,
            scan / secs
        );
    }
}
