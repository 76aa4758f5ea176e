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

mod common;

use std::path::PathBuf;

use common::{best, env_or, time_pipeline, time_query};
use sketchpipe::generate::SparsePair;
use sketchpipe::progress::ProgressMode;

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
    let text = |extra: &str| {
        format!(
            "[pipeline]\noutput_dir = \"{}\"\n[sources.t]\npath = \"{}\"\n[stages.s]\n\
             op = \"coordinated_sketch\"\nsource = \"t\"\nkey = \"key\"\ncolumns = [\"values\"]\n\
             size = 1000\n{extra}\n",
            out.path().display(),
            left.display()
        )
    };
    let scan = best(&rt, reps, || async {
        time_query(&left, "SELECT key, \"values\" FROM t").await.1
    });
    let check = best(&rt, reps, || async {
        let q = "SELECT key FROM t GROUP BY key HAVING count(*) > 1 LIMIT 1";
        time_query(&left, q).await.1
    });
    let stage_text = text("");
    let default = best(&rt, reps, || time_pipeline(&stage_text));
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
