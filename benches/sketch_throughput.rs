//! Build throughput of a `priority` coordinated sketch against a raw scan of the same columns.
//!
//! `cargo bench --bench sketch_throughput`. Under `bench-data/` (not committed; reused):
//! `generate sparse-pair` with `SKETCHPIPE_BENCH_ROWS` rows (default 4 000 000), `d = 50`,
//! 10 % density. Then, in `SKETCHPIPE_BENCH_REPS` rounds (default 5) of each in turn, in
//! this process:
//! * **scan** — `SELECT key, values` streamed into a row counter;
//! * **stage** — a `coordinated_sketch` stage (`priority`, `k = 1000`) through the runner, as
//!   `sketchpipe run` does it: one pass that builds the sketch and checks the keys are unique
//!   (the default `duplicate_keys = "error"`).
//!
//! Prints rows/s (best time) and the ratio to the scan (median over rounds of the ratio within
//! a round: the machine's slow spells hit both alike).

mod common;

use std::path::PathBuf;

use common::{env_or, pipeline, query, rounds};
use sketchpipe::generate::SparsePair;
use sketchpipe::progress::ProgressMode;

fn main() {
    let n: u64 = env_or("SKETCHPIPE_BENCH_ROWS", 4_000_000);
    let reps: usize = env_or("SKETCHPIPE_BENCH_REPS", 5);
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
    let stage_text = format!(
        "[pipeline]\noutput_dir = \"{}\"\n[sources.t]\npath = \"{}\"\n[stages.s]\n\
         op = \"coordinated_sketch\"\nsource = \"t\"\nkey = \"key\"\ncolumns = [\"values\"]\n\
         size = 1000\n",
        out.path().display(),
        left.display()
    );
    let contenders = [
        query("scan (key, values)", &left, "SELECT key, \"values\" FROM t"),
        pipeline("stage (sketch + key check, one pass)", &stage_text),
    ];
    let title = format!("priority sketch (k = 1000) of {n} rows × 50 (10 % non-zero)");
    rounds(&rt, reps, &title, n, &contenders);
}
