//! Helpers every bench harness uses: settings from the environment, and timing a query or a
//! pipeline run the way `sketchpipe` runs them.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
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

/// One timed thing: a name and what runs it (returning its seconds).
pub type Contender<'a> = (
    &'a str,
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = f64> + 'a>> + 'a>,
);

/// A contender streaming `q` over `path` ([`time_query`]).
pub fn query<'a>(name: &'a str, path: &'a Path, q: &'a str) -> Contender<'a> {
    (
        name,
        Box::new(move || Box::pin(async move { time_query(path, q).await.1 })),
    )
}

/// A contender running the pipeline `text` ([`time_pipeline`]).
pub fn pipeline<'a>(name: &'a str, text: &'a str) -> Contender<'a> {
    (name, Box::new(move || Box::pin(time_pipeline(text))))
}

/// The median of `xs` (the mean of the middle two for an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len();
    if m % 2 == 1 {
        xs[m / 2]
    } else {
        (xs[m / 2 - 1] + xs[m / 2]) / 2.0
    }
}

/// Times `contenders` in `reps` rounds, each round running every contender once in turn, so a
/// slow spell of a shared machine hits all of them alike: a ratio taken within a round is
/// steadier than a ratio of two bests taken minutes apart (on this machine the best-of-3
/// priority/scan ratio ranged over 0.67–0.88 across four runs of the old harness). Prints
/// `title`, then per contender rows/s at its best time (of `rows` rows) and its median ratio
/// to the first.
pub fn rounds(
    rt: &tokio::runtime::Runtime,
    reps: usize,
    title: &str,
    rows: u64,
    contenders: &[Contender],
) {
    let reps = reps.max(1);
    let rounds: Vec<Vec<f64>> = (0..reps)
        .map(|_| contenders.iter().map(|(_, f)| rt.block_on(f())).collect())
        .collect();
    println!("{title}, {reps} rounds (rows/s at the best time; ratio = median over rounds):");
    println!("  {:<40} {:>12} {:>9}", "", "rows/s", "vs scan");
    for (c, (name, _)) in contenders.iter().enumerate() {
        let best = rounds.iter().map(|t| t[c]).fold(f64::INFINITY, f64::min);
        let ratio = median(rounds.iter().map(|t| t[0] / t[c]).collect());
        println!("  {name:<40} {:>12.0} {ratio:>9.2}", rows as f64 / best);
    }
}
