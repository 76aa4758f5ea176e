//! Throughput of `prune_scores`.
//!
//! `cargo bench --bench prune_throughput`. Under `bench-data/` (not committed; reused):
//! `generate logits` with `SKETCHPIPE_BENCH_ROWS` ids (default 2 000 000) × 3 runs × 10
//! classes, and `generate classification` with the same number of rows (32 features, 10
//! classes). Then, in this process, best of `SKETCHPIPE_BENCH_REPS` (default 3):
//! * **scan** — `SELECT id, run, label, logits` streamed into a row counter;
//! * **score** — `SELECT id, el2n(logits, label)` streamed the same way (the scoring alone);
//! * **stage** — the whole `prune_scores` stage over the logs: scoring, by-id averaging over
//!   runs, ranking, a `keep_max` mask, the `scores` table written;
//!
//! and prints rows/s and the ratios to the scan. Last, proxy mode: one `prune_scores` stage
//! training 1 logistic regression for 3 epochs (5 passes: prepare, 3 epochs, scoring), printed
//! as training throughput in rows·epochs/s (the whole stage's time, passes included).

mod common;

use std::path::PathBuf;

use common::{best, env_or, time_pipeline, time_query};
use sketchpipe::generate::{Classification, Logits};
use sketchpipe::progress::ProgressMode;

fn main() {
    let n: u64 = env_or("SKETCHPIPE_BENCH_ROWS", 2_000_000);
    let reps: usize = env_or("SKETCHPIPE_BENCH_REPS", 3);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-data");
    let logs = root.join(format!("logits-{n}"));
    if !logs.exists() {
        eprintln!("generating {} …", logs.display());
        let spec = Logits {
            rows: n,
            classes: 10,
            runs: 3,
            noise: 0.1,
            sigma: 1.0,
            seed: 1,
        };
        spec.write(&logs, ProgressMode::Quiet).unwrap();
    }
    let table = root.join(format!("classification-{n}.parquet"));
    if !table.exists() {
        eprintln!("generating {} …", table.display());
        let spec = Classification {
            rows: n,
            dim: 32,
            classes: 10,
            noise: 0.1,
            separation: 3.0,
            seed: 1,
        };
        spec.write(&table, ProgressMode::Quiet).unwrap();
    }
    let out = tempfile::TempDir::new_in(&root).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rows = 3 * n;

    let scan = best(&rt, reps, || async {
        time_query(&logs, "SELECT id, run, label, logits FROM t")
            .await
            .1
    });
    let score = best(&rt, reps, || async {
        time_query(&logs, "SELECT id, el2n(logits, label) FROM t")
            .await
            .1
    });
    let stage_text = format!(
        "[pipeline]\noutput_dir = \"{}\"\n[sources.t]\npath = \"{}\"\n[stages.s]\nop = \"prune_scores\"\n\
         source = \"t\"\nid = \"id\"\nlogits = \"logits\"\nrun = \"run\"\nkeep_fraction = 0.5\n",
        out.path().display(),
        logs.display()
    );
    let stage = best(&rt, reps, || time_pipeline(&stage_text));
    println!(
        "prune_scores over {rows} logged rows ({n} ids × 3 runs × 10 classes), best of {reps}:"
    );
    println!("  {:<34} {:>12} {:>9}", "", "rows/s", "vs scan");
    for (name, secs) in [
        ("scan (id, run, label, logits)", scan),
        ("score: el2n(logits, label)", score),
        ("stage: score + by-id mean + mask", stage),
    ] {
        println!(
            "  {name:<34} {:>12.0} {:>9.2}",
            rows as f64 / secs,
            scan / secs
        );
    }

    let epochs = 3;
    let proxy_text = format!(
        "[pipeline]\noutput_dir = \"{}\"\n[sources.t]\npath = \"{}\"\n[stages.p]\nop = \"prune_scores\"\n\
         source = \"t\"\nid = \"id\"\nfeatures = [\"features\"]\n[stages.p.proxy]\nepochs = {epochs}\nseeds = 1\n",
        out.path().display(),
        table.display()
    );
    let proxy = best(&rt, 1, || time_pipeline(&proxy_text));
    println!(
        "proxy mode, {n} rows × 32 features, 10 classes, logistic, 1 seed, {epochs} epochs: \
         {proxy:.1} s, {:.0} rows·epochs/s (all 5 passes in the time)",
        (n * epochs) as f64 / proxy
    );
}
