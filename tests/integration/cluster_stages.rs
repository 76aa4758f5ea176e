//! Mergeable stages run as SQL aggregates on another session (what `run --cluster` does with a
//! Ballista cluster; here a second local session stands in for it) write the tables a local
//! run writes: the same priority sample, the exact eigenvector to rounding, Frequent Directions
//! within its bound; the other stages run locally as before.

use std::path::Path;

use crate::common::*;
use sketchpipe::pipeline::{self, PipelineSpec, RunOptions};
use sketchpipe::progress::ProgressMode;
use tempfile::TempDir;

const STAGES: &str = "\
[sources.t]\npath = \"t\"\n\
[stages.top]\nop = \"top_eigenvector\"\nsource = \"t\"\ncolumns = [\"emb\"]\nalgorithm = \"exact\"\n\
[stages.fd]\nop = \"top_eigenvector\"\nsource = \"t\"\ncolumns = [\"emb\"]\nalgorithm = \"frequent-directions\"\nell = 4\n\
[stages.sk]\nop = \"coordinated_sketch\"\nsource = \"t\"\nkey = \"id\"\ncolumns = [\"emb\"]\nsize = 40\nseed = 3\n\
[stages.ro]\nop = \"top_eigenvector\"\nsource = \"t\"\ncolumns = [\"emb\"]\nseed = 5\n\
[stages.prod]\nop = \"sketch_product\"\nleft = \"sk\"\nright = \"sk\"\n\
[sources.q]\nsql = \"SELECT * FROM t WHERE id < 1000\"\n\
[stages.sq]\nop = \"coordinated_sketch\"\nsource = \"q\"\nkey = \"id\"\ncolumns = [\"emb\"]\nsize = 20\n";

async fn run(dir: &Path, out: &str, cluster: bool) {
    let file = dir.join(format!("{out}.toml"));
    std::fs::write(
        &file,
        format!("[pipeline]\noutput_dir = \"{out}\"\n{STAGES}"),
    )
    .unwrap();
    let spec = PipelineSpec::load(&file, &[]).unwrap();
    let opts = RunOptions {
        progress: ProgressMode::Quiet,
        cluster: cluster.then(sketchpipe::pipeline::source::session),
        ..Default::default()
    };
    pipeline::run(&spec, &opts).await.unwrap();
}

#[tokio::test]
async fn stages_on_a_cluster_session_write_the_local_tables() {
    let tmp = TempDir::new().unwrap();
    KnownSpectrum::new(6, 400, 31).write_parts(&tmp.path().join("t"), 3);
    run(tmp.path(), "local", false).await;
    run(tmp.path(), "remote", true).await;
    let (l, r) = (tmp.path().join("local"), tmp.path().join("remote"));

    let (vl, vr) = (read_vector(&l.join("top")), read_vector(&r.join("top")));
    assert!(vl.iter().zip(&vr).all(|(a, b)| (a - b).abs() < 1e-10));
    for c in ["rows", "passes", "heavy_rows"] {
        assert_eq!(
            stat_u64_or_u32(&l.join("top"), c),
            stat_u64_or_u32(&r.join("top"), c),
            "{c}"
        );
    }
    let (el, er) = (
        stat_f64(&l.join("top"), "eigenvalue"),
        stat_f64(&r.join("top"), "eigenvalue"),
    );
    assert!((el - er).abs() < 1e-10 * el);

    let (e, bound) = (
        stat_f64(&r.join("fd"), "eigenvalue"),
        stat_f64(&r.join("fd"), "error_bound"),
    );
    assert!(
        e <= el + 1e-9 && e >= el - bound - 1e-9,
        "{e} vs {el} ± {bound}"
    );

    let (sl, sr) = (read_sample(&l.join("sk")), read_sample(&r.join("sk")));
    assert_eq!(sl.rows, sr.rows);
    assert_eq!(sl.level.to_bits(), sr.level.to_bits());
    assert_eq!(sl.rows_seen, sr.rows_seen);
    let (ql, qr) = (read_sample(&l.join("sq")), read_sample(&r.join("sq")));
    assert_eq!(ql.rows, qr.rows);
    assert_eq!(qr.rows_seen, 1000);
    // A later stage reads the cluster stage's sketch as it would a local one.
    assert_eq!(
        read_parquet(&l.join("prod/product.parquet")).num_rows(),
        read_parquet(&r.join("prod/product.parquet")).num_rows()
    );
    // random-order ran locally in both: the same vector, bit for bit.
    assert!(read_vector(&l.join("ro")) == read_vector(&r.join("ro")));
}

fn stat_u64_or_u32(stage_dir: &Path, column: &str) -> u64 {
    if column == "passes" {
        stat_u32(stage_dir, column) as u64
    } else {
        stat_u64(stage_dir, column)
    }
}
