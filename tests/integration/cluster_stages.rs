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
[stages.pcx]\nop = \"pca\"\nsource = \"t\"\ncolumns = [\"emb\"]\ncomponents = 2\nscale = true\n\
[stages.pcf]\nop = \"pca\"\nsource = \"t\"\ncolumns = [\"emb\"]\ncomponents = 2\nalgorithm = \"frequent-directions\"\nell = 4\n\
[stages.proj]\nop = \"project\"\nsource = \"t\"\npca = \"pcx\"\ncolumns = [\"emb\"]\nkeep = [\"id\"]\n\
[stages.prod]\nop = \"sketch_product\"\nleft = \"sk\"\nright = \"sk\"\n\
[sources.q]\nsql = \"SELECT * FROM t WHERE id < 1000\"\n\
[stages.sq]\nop = \"coordinated_sketch\"\nsource = \"q\"\nkey = \"id\"\ncolumns = [\"emb\"]\nsize = 20\n\
[stages.ex]\nop = \"coordinated_sketch\"\nsource = \"t\"\nkey = \"id\"\ncolumns = [\"emb\"]\nmethod = \"exact\"\n\
[stages.jl]\nop = \"coordinated_sketch\"\nsource = \"t\"\nkey = \"id\"\ncolumns = [\"emb\"]\nmethod = \"jl\"\nsize = 16\n\
[stages.cs]\nop = \"coordinated_sketch\"\nsource = \"t\"\nkey = \"id\"\ncolumns = [\"emb\"]\nmethod = \"countsketch\"\nsize = 16\n\
[sources.s]\npath = \"sparse.parquet\"\n\
[stages.sp]\nop = \"coordinated_sketch\"\nsource = \"s\"\nkey = \"key\"\ncolumns = [\"sparse\"]\ndim = 6\nsize = 30\n\
[stages.spjl]\nop = \"coordinated_sketch\"\nsource = \"s\"\nkey = \"key\"\ncolumns = [\"sparse\"]\ndim = 6\nmethod = \"jl\"\nsize = 8\n";

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
    let sparse_rows: Vec<(i64, Vec<f64>)> = (0..500i64)
        .map(|i| {
            let row = (0..6)
                .map(|j| match (i * 7 + j * 3) % 5 {
                    0 => (i % 13) as f64 - 6.0 + j as f64 * 0.25,
                    _ => 0.0,
                })
                .collect();
            (i * 11 + 1, row)
        })
        .collect();
    write_parquet(
        &tmp.path().join("sparse.parquet"),
        &sparse_batch(&sparse_rows, None),
    );
    // Which stages go to the cluster: every mergeable one (threshold streams to the client).
    let file = tmp.path().join("plan.toml");
    std::fs::write(
        &file,
        format!("[pipeline]\noutput_dir = \"plan\"\n{STAGES}"),
    )
    .unwrap();
    let spec = PipelineSpec::load(&file, &[]).unwrap();
    let on_cluster: Vec<&str> = spec
        .stages
        .iter()
        .filter(|s| sketchpipe::pipeline::remote::eligible(s))
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        on_cluster,
        ["cs", "ex", "fd", "jl", "pcf", "pcx", "sk", "sp", "spjl", "sq", "top"]
    );
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
    // Every row kept: the same rows.
    let (xl, xr) = (read_sample(&l.join("ex")), read_sample(&r.join("ex")));
    assert_eq!(xl.rows, xr.rows);
    assert_eq!(xr.rows_seen, 2400);
    // Sparse rows sample exactly as locally too.
    let (pl, pr) = (read_sample(&l.join("sp")), read_sample(&r.join("sp")));
    assert_eq!(pl.rows, pr.rows);
    assert_eq!(pl.level.to_bits(), pr.level.to_bits());
    // Linear sketches: partitions' sketches add up — the local sketch up to rounding.
    for stage in ["jl", "cs", "spjl"] {
        let (al, ar) = (read_linear(&l.join(stage)), read_linear(&r.join(stage)));
        assert_eq!((al.t, al.dim, al.rows_seen), (ar.t, ar.dim, ar.rows_seen));
        let scale = al.s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in al.s.iter().zip(&ar.s) {
            assert!((a - b).abs() <= 1e-12 * scale, "{stage}: {a} vs {b}");
        }
        assert!(
            (al.frobenius_sq - ar.frobenius_sq).abs() <= 1e-12 * al.frobenius_sq,
            "{stage}"
        );
    }
    // A later stage reads the cluster stage's sketch as it would a local one.
    assert_eq!(
        read_parquet(&l.join("prod/product.parquet")).num_rows(),
        read_parquet(&r.join("prod/product.parquet")).num_rows()
    );
    // PCA: the merged partitions' scatter is the local one to rounding; FD within its bound;
    // a local project stage reads the cluster stage's basis.
    let (cl, cr) = (
        crate::pca::components(&l.join("pcx")),
        crate::pca::components(&r.join("pcx")),
    );
    for (a, b) in cl.iter().flatten().zip(cr.iter().flatten()) {
        assert!((a - b).abs() < 1e-10, "pca: {a} vs {b}");
    }
    let ev = |d: &Path, c: &str| crate::pca::column(d, "spectrum", c);
    let bound = ev(&r.join("pcf"), "error_bound")[0];
    for (a, b) in ev(&l.join("pcf"), "eigenvalue")
        .iter()
        .zip(ev(&r.join("pcf"), "eigenvalue"))
    {
        assert!(
            (a - b).abs() <= bound * (1.0 + 1e-9) + 1e-9 * a.abs().max(1.0),
            "pca fd: {a} vs {b} ± {bound}"
        );
    }
    let var = |d: &Path| crate::pca::column(&d.join("proj"), "stats", "variance");
    for (a, b) in var(&l).iter().zip(var(&r)) {
        assert!((a - b).abs() < 1e-9 * b, "projected variance: {a} vs {b}");
    }
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

fn read_linear(stage_dir: &Path) -> sketchpipe::sketch::linear::LinearSketch {
    use sketchpipe::operators::coordinated_sketch::{table, StoredSketch};
    match table::read(&stage_dir.join("sketch.parquet")).unwrap().0 {
        StoredSketch::Linear(l) => l,
        StoredSketch::Sample(_) => panic!("{} holds a sample", stage_dir.display()),
    }
}
