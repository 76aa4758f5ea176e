//! Throughput of `prune_scores`.
//!
//! `cargo bench --bench prune_throughput`. Under `bench-data/` (not committed; reused):
//! `generate logits` with `SKETCHPIPE_BENCH_ROWS` ids (default 2 000 000) × 3 runs × 10
//! classes, and `generate classification` with the same number of rows (32 features, 10
//! classes). Then, in this process, `SKETCHPIPE_BENCH_REPS` rounds (default 5) of each in turn:
//! * **scan** — `SELECT id, run, label, logits` streamed into a row counter;
//! * **score** — `SELECT id, el2n(logits, label)` streamed the same way (the scoring alone);
//! * **stage** — the whole `prune_scores` stage over the logs: scoring, by-id averaging over
//!   runs, ranking, a `keep_max` mask, the `scores` table written;
//!
//! and prints rows/s (best time) and the ratios to the scan (median over rounds of the ratio
//! within a round). Last, proxy mode: one `prune_scores` stage
//! training 1 logistic regression for 3 epochs (5 passes: prepare, 3 epochs, scoring), printed
//! as training throughput in rows·epochs/s (the whole stage's time, passes included).

mod common;

use std::path::PathBuf;

use common::{best, env_or, pipeline, query, rounds, time_pipeline};
use sketchpipe::generate::{Classification, Logits};
use sketchpipe::progress::ProgressMode;

fn main() {
    let n: u64 = env_or("SKETCHPIPE_BENCH_ROWS", 2_000_000);
    let reps: usize = env_or("SKETCHPIPE_BENCH_REPS", 5);
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

    let stage_text = format!(
        "[pipeline]\noutput_dir = \"{}\"\n[sources.t]\npath = \"{}\"\n[stages.s]\nop = \"prune_scores\"\n\
         source = \"t\"\nid = \"id\"\nlogits = \"logits\"\nrun = \"run\"\nkeep_fraction = 0.5\n",
        out.path().display(),
        logs.display()
    );
    let contenders = [
        query(
            "scan (id, run, label, logits)",
            &logs,
            "SELECT id, run, label, logits FROM t",
        ),
        query(
            "score: el2n(logits, label)",
            &logs,
            "SELECT id, el2n(logits, label) FROM t",
        ),
        pipeline("stage: score + by-id mean + mask", &stage_text),
    ];
    let title = format!("prune_scores over {rows} logged rows ({n} ids × 3 runs × 10 classes)");
    rounds(&rt, reps, &title, rows, &contenders);

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
