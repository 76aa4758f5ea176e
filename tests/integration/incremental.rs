//! `incremental = true`: a run reads only the files its source gained and merges them into the
//! previous state; the result equals a full rerun (exactly for priority sketches, to rounding
//! for the exact Gram, within its bound for Frequent Directions).

use std::path::Path;

use crate::common::*;
use sketchpipe::operators::coordinated_sketch::{table, StoredSketch};
use tempfile::TempDir;

const STAGES: &str = "\
[stages.top]\nop = \"top_eigenvector\"\nsource = \"days\"\ncolumns = [\"emb\"]\nalgorithm = \"exact\"\nincremental = INC\n\
[stages.fd]\nop = \"top_eigenvector\"\nsource = \"days\"\ncolumns = [\"emb\"]\nalgorithm = \"frequent-directions\"\nell = 4\nincremental = INC\n\
[stages.sk]\nop = \"coordinated_sketch\"\nsource = \"days\"\nkey = \"id\"\ncolumns = [\"emb\"]\nsize = 40\nseed = 3\nincremental = INC\n\
[stages.jl]\nop = \"coordinated_sketch\"\nsource = \"days\"\nkey = \"id\"\ncolumns = [\"emb\"]\nmethod = \"jl\"\nsize = 16\nseed = 3\nincremental = INC\n\
[stages.pc]\nop = \"pca\"\nsource = \"days\"\ncolumns = [\"emb\"]\ncomponents = 2\nscale = true\nincremental = INC\n\
[stages.pcf]\nop = \"pca\"\nsource = \"days\"\ncolumns = [\"emb\"]\ncomponents = 2\nalgorithm = \"frequent-directions\"\nell = 4\nincremental = INC\n";

fn pipeline(dir: &Path, name: &str, incremental: bool, output: &str) -> std::path::PathBuf {
    let text = format!(
        "[pipeline]\noutput_dir = \"{output}\"\n[sources.days]\npath = \"in\"\n{}",
        STAGES.replace("INC", &incremental.to_string())
    );
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

fn write_day(dir: &Path, known: &KnownSpectrum, day: usize) {
    let n = known.n();
    write_parquet(
        &dir.join(format!("in/day-{day}.parquet")),
        &known.batch(day * n / 3..(day + 1) * n / 3),
    );
}

fn run(file: &Path) -> String {
    let out = sketchpipe(&["run", file.to_str().unwrap()]);
    assert_ok(&out);
    stderr(&out)
}

#[test]
fn incremental_runs_equal_a_full_rerun_and_refuse_changed_inputs() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(6, 60, 21);
    std::fs::create_dir(tmp.path().join("in")).unwrap();
    write_day(tmp.path(), &known, 0);
    write_day(tmp.path(), &known, 1);
    let inc = pipeline(tmp.path(), "inc.toml", true, "out");
    let log = run(&inc);
    assert!(
        log.contains("reading all 2 file(s) (no previous output)"),
        "{log}"
    );

    write_day(tmp.path(), &known, 2);
    let log = run(&inc);
    assert!(
        log.contains("stage `top`: incremental: 1 new file(s), 2 already merged"),
        "{log}"
    );
    let full = pipeline(tmp.path(), "full.toml", false, "full");
    run(&full);
    let (i, f) = (tmp.path().join("out"), tmp.path().join("full"));

    // Exact: the known eigenvector, and the full run's answer to rounding.
    let (vi, vf) = (read_vector(&i.join("top")), read_vector(&f.join("top")));
    assert!(alignment(&vi, &known.v1) > 1.0 - 1e-10);
    assert!(vi.iter().zip(&vf).all(|(a, b)| (a - b).abs() < 1e-10));
    assert_eq!(stat_u64(&i.join("top"), "rows"), known.n() as u64);
    let (ei, ef) = (
        stat_f64(&i.join("top"), "eigenvalue"),
        stat_f64(&f.join("top"), "eigenvalue"),
    );
    assert!((ei - ef).abs() < 1e-10 * ef);

    // Frequent Directions: merged or not, within its guarantee.
    let (e, bound) = (
        stat_f64(&i.join("fd"), "eigenvalue"),
        stat_f64(&i.join("fd"), "error_bound"),
    );
    assert!(
        e <= ef + 1e-9 && e >= ef - bound - 1e-9,
        "{e} vs {ef} ± {bound}"
    );

    // PCA: the merged scatter (Chan's update across files) is the one-pass one to rounding;
    // the merged centred sketch within its bound of it.
    let (ci, cf) = (
        crate::pca::components(&i.join("pc")),
        crate::pca::components(&f.join("pc")),
    );
    for (a, b) in ci.iter().flatten().zip(cf.iter().flatten()) {
        assert!((a - b).abs() < 1e-10, "pca: {a} vs {b}");
    }
    let spectrum = |d: &Path, s: &str, c: &str| crate::pca::column(&d.join(s), "spectrum", c);
    for (a, b) in spectrum(&i, "pc", "eigenvalue")
        .iter()
        .zip(spectrum(&f, "pc", "eigenvalue"))
    {
        assert!((a - b).abs() < 1e-10 * b, "pca eigenvalue: {a} vs {b}");
    }
    let full_unscaled = pipeline(tmp.path(), "unscaled.toml", false, "unscaled");
    let out = sketchpipe(&[
        "run",
        full_unscaled.to_str().unwrap(),
        "--set",
        "pc.scale=false",
        "--quiet",
    ]);
    assert_ok(&out);
    let exact = spectrum(&tmp.path().join("unscaled"), "pc", "eigenvalue");
    let bound = spectrum(&i, "pcf", "error_bound")[0];
    for (e, s) in exact.iter().zip(spectrum(&i, "pcf", "eigenvalue")) {
        assert!(
            s <= e * (1.0 + 1e-9) && e - s <= bound * (1.0 + 1e-9) + 1e-9 * e,
            "pca fd: {s} vs {e} ± {bound}"
        );
    }

    // Priority: the same sample as one pass; JL: the same sketch up to summation order.
    let (si, sf) = (read_sample(&i.join("sk")), read_sample(&f.join("sk")));
    assert_eq!(si.rows, sf.rows);
    assert_eq!(si.level.to_bits(), sf.level.to_bits());
    assert_eq!(si.rows_seen, known.n() as u64);
    let jl = |d: &Path| match table::read(&d.join("jl/sketch.parquet")).unwrap().0 {
        StoredSketch::Linear(l) => l,
        StoredSketch::Sample(_) => panic!("linear"),
    };
    let (ji, jf) = (jl(&i), jl(&f));
    assert_eq!(ji.rows_seen, jf.rows_seen);
    assert!((ji.frobenius_sq - jf.frobenius_sq).abs() < 1e-9 * jf.frobenius_sq);

    // The manifest lists every file once.
    let manifest = read_parquet(&i.join("sk/manifest.parquet"));
    assert_eq!(manifest.num_rows(), 3);

    // No new files: nothing is read and the answer stays.
    let log = run(&inc);
    assert!(log.contains("0 new file(s), 3 already merged"), "{log}");
    assert_eq!(read_sample(&i.join("sk")).rows, sf.rows);
    assert_eq!(read_vector(&i.join("top")), vi);

    // Changed parameters: a full run, said so.
    let out = sketchpipe(&["run", inc.to_str().unwrap(), "--set", "sk.size=30"]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("parameters changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read_sample(&i.join("sk")).rows.len(), 30);

    // A consumed file rewritten: refused (exit 3), the outputs untouched.
    let before = std::fs::read(i.join("top/vector.parquet")).unwrap();
    let other = KnownSpectrum::new(6, 60, 22);
    write_day(tmp.path(), &other, 1);
    let out = sketchpipe(&["run", inc.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("day-1.parquet")
            && err.contains("has changed")
            && err.contains("incremental=false"),
        "{err}"
    );
    assert_eq!(std::fs::read(i.join("top/vector.parquet")).unwrap(), before);
    // Recomputing in full, as the message says, works.
    let out = sketchpipe(&[
        "run",
        inc.to_str().unwrap(),
        "--set",
        "top.incremental=false",
        "--set",
        "fd.incremental=false",
        "--set",
        "sk.incremental=false",
        "--set",
        "jl.incremental=false",
        "--set",
        "pc.incremental=false",
        "--set",
        "pcf.incremental=false",
    ]);
    assert_ok(&out);
    let log = run(&inc);
    assert!(log.contains("has no manifest"), "{log}");
}

#[test]
fn incremental_runs_with_run_dates_resume_from_the_latest_earlier_date() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(6, 60, 23);
    std::fs::create_dir(tmp.path().join("in")).unwrap();
    write_day(tmp.path(), &known, 0);
    let inc = pipeline(tmp.path(), "inc.toml", true, "out");
    let file = inc.to_str().unwrap();
    assert_ok(&sketchpipe(&["run", file, "--run-date", "2026-11-01"]));
    write_day(tmp.path(), &known, 1);
    write_day(tmp.path(), &known, 2);
    let out = sketchpipe(&["run", file, "--run-date", "2026-11-02"]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("2 new file(s), 1 already merged into")
            && stderr(&out).contains("date=2026-11-01"),
        "{}",
        stderr(&out)
    );
    let day1 = tmp.path().join("out/sk/date=2026-11-01");
    let day2 = tmp.path().join("out/sk/date=2026-11-02");
    assert_eq!(read_sample(&day1).rows_seen, (known.n() / 3) as u64);
    assert_eq!(read_sample(&day2).rows_seen, known.n() as u64);
}

#[tokio::test]
async fn incremental_is_refused_where_it_cannot_equal_a_full_run() {
    let tmp = TempDir::new().unwrap();
    let src = "[sources.s]\npath = \"x.parquet\"\n[sources.q]\nsql = \"SELECT * FROM s\"\n";
    let known = KnownSpectrum::new(3, 5, 1);
    write_parquet(&tmp.path().join("x.parquet"), &known.batch(0..known.n()));
    for (stage, expected) in [
        (
            "op = \"top_eigenvector\"\nsource = \"s\"\ncolumns = [\"emb\"]\nincremental = true",
            "needs a mergeable algorithm",
        ),
        (
            "op = \"top_eigenvector\"\nsource = \"q\"\ncolumns = [\"emb\"]\nalgorithm = \"exact\"\nincremental = true",
            "needs a `path` source",
        ),
        (
            "op = \"coordinated_sketch\"\nsource = \"s\"\nkey = \"id\"\ncolumns = [\"emb\"]\nmethod = \"threshold\"\nincremental = true",
            "threshold sketches do not merge",
        ),
        (
            "op = \"prune_scores\"\nsource = \"s\"\nid = \"id\"\nlogits = \"emb\"\nincremental = true",
            "only mergeable stages",
        ),
    ] {
        let e = run_err(tmp.path(), &format!("{src}[stages.x]\n{stage}\n")).await;
        assert!(e.contains(expected) && e.contains("incremental"), "{e}");
    }
}

/// A key that a new file repeats from a file an earlier incremental run merged is refused, as a
/// full run over all the files refuses it, naming the key (not added into the sketch twice);
/// the previous output stays; keys new to the increment go through.
#[test]
fn a_key_repeated_across_increments_is_refused_as_in_a_full_run() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(6, 60, 23);
    std::fs::create_dir(tmp.path().join("in")).unwrap();
    write_day(tmp.path(), &known, 0);
    let text = "[pipeline]\noutput_dir = \"out\"\n[sources.days]\npath = \"in\"\n\
        [stages.sk]\nop = \"coordinated_sketch\"\nsource = \"days\"\nkey = \"id\"\ncolumns = [\"emb\"]\n\
        size = 40\nincremental = true\n\
        [stages.jl]\nop = \"coordinated_sketch\"\nsource = \"days\"\nkey = \"id\"\ncolumns = [\"emb\"]\n\
        method = \"jl\"\nsize = 8\nincremental = true\n";
    let file = write_pipeline(tmp.path(), text);
    run(&file);
    let before = std::fs::read(tmp.path().join("out/jl/sketch.parquet")).unwrap();
    // Day 1 holds day 0's rows again under the same ids (ids 0..n/3).
    let n = known.n();
    write_parquet(&tmp.path().join("in/day-1.parquet"), &known.batch(0..n / 3));
    let out = sketchpipe(&["run", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("key `id` =") && err.contains("earlier incremental runs merged"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("out/jl/sketch.parquet")).unwrap(),
        before
    );
    // The same files in one full run are refused alike.
    let full = sketchpipe(&[
        "run",
        file.to_str().unwrap(),
        "--set",
        "sk.incremental=false",
        "--set",
        "jl.incremental=false",
        "--output-dir",
        tmp.path().join("full").to_str().unwrap(),
    ]);
    assert_eq!(full.status.code(), Some(3), "{}", stderr(&full));
    assert!(stderr(&full).contains("key `id` ="), "{}", stderr(&full));
    // New keys only: merged.
    std::fs::remove_file(tmp.path().join("in/day-1.parquet")).unwrap();
    write_day(tmp.path(), &known, 1);
    run(&file);
    assert_eq!(
        read_sample(&tmp.path().join("out/sk")).rows_seen,
        (2 * n / 3) as u64
    );
}
