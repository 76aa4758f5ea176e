//! Helpers every bench harness uses: settings from the environment, and timing a query or a
//! pipeline run the way `sketchpipe` runs them.
#![allow(dead_code)]

use std::path::Path;
use std::time::Instant;

use futures::StreamExt;
use sketchpipe::pipeline::{self, PipelineSpec, RunOptions};
use sketchpipe::progress::ProgressMode;

/// `$key` parsed as `T`, or `default`.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Streams `query` over `path` (a file or directory, registered as table `t`) into a sink that
/// only counts rows; returns the rows and the seconds it took.
pub async fn time_query(path: &Path, query: &str) -> (u64, f64) {
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
    let mut rows = 0u64;
    while let Some(b) = s.next().await {
        rows += std::hint::black_box(b.unwrap()).num_rows() as u64;
    }
    (rows, start.elapsed().as_secs_f64())
}

/// Runs the pipeline `text` through the runner exactly as `sketchpipe run` does (quiet);
/// returns the seconds it took.
pub async fn time_pipeline(text: &str) -> f64 {
    let spec = PipelineSpec::parse(text, Path::new("bench.toml"), &[]).unwrap();
    let opts = RunOptions {
        progress: ProgressMode::Quiet,
        ..Default::default()
    };
    let start = Instant::now();
    pipeline::run(&spec, &opts).await.unwrap();
    start.elapsed().as_secs_f64()
}

/// The smallest of `reps` timings of `f` (a warm page cache after the first).
pub fn best<F: std::future::Future<Output = f64>>(
    rt: &tokio::runtime::Runtime,
    reps: usize,
    f: impl Fn() -> F,
) -> f64 {
    (0..reps)
        .map(|_| rt.block_on(f()))
        .fold(f64::INFINITY, f64::min)
}
