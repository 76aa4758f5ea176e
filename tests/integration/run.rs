//! `sketchpipe run` end to end through the real binary: exact answers, every input format,
//! atomic outputs, run dates, overrides and metadata.

use std::path::Path;

use crate::common::*;
use tempfile::TempDir;

const STAGE: &str = r#"
[stages.top]
op = "top_eigenvector"
source = "src"
columns = ["emb"]
algorithm = "exact"
"#;

fn pipeline_over(dir: &Path, source: &str) -> std::path::PathBuf {
    write_pipeline(
        dir,
        &format!(
            "[pipeline]\nname = \"t\"\noutput_dir = \"out\"\n\n[sources.src]\n{source}\n{STAGE}"
        ),
    )
}

/// `dir/a.parquet` holding `known`'s rows, and a pipeline reading it as source `src` into
/// `stages` (outputs under `dir/out`).
fn over_known(dir: &Path, known: &KnownSpectrum, stages: &str) -> std::path::PathBuf {
    write_parquet(&dir.join("a.parquet"), &known.batch(0..known.n()));
    write_pipeline(
        dir,
        &format!("[pipeline]\noutput_dir = \"out\"\n[sources.src]\npath = \"a.parquet\"\n{stages}"),
    )
}

#[test]
fn exact_eigenvector_matches_a_known_spectrum() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(24, 50, 7);
    write_parquet(&tmp.path().join("a.parquet"), &known.batch(0..known.n()));
    let file = pipeline_over(tmp.path(), "path = \"a.parquet\"");
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap()]));

    let stage = tmp.path().join("out/top");
    let v = read_vector(&stage);
    assert!(
        alignment(&v, &known.v1) > 1.0 - 1e-9,
        "alignment {}",
        alignment(&v, &known.v1)
    );
    let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-12);
    assert!((stat_f64(&stage, "eigenvalue") - known.lambdas[0]).abs() < 1e-9);
    assert!((stat_f64(&stage, "second_eigenvalue") - known.lambdas[1]).abs() < 1e-9);
    assert_eq!(stat_u64(&stage, "rows"), known.n() as u64);
    assert!(stage.join("_SUCCESS").exists());
}

#[test]
fn parquet_csv_directory_and_sql_sources_agree() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(8, 40, 11);
    let n = known.n();
    write_parquet(&tmp.path().join("whole.parquet"), &known.batch(0..n));
    write_csv(&tmp.path().join("whole.csv"), &known.wide_batch(0..n));
    std::fs::create_dir(tmp.path().join("parts")).unwrap();
    for (i, r) in [0..n / 3, n / 3..n / 2, n / 2..n].into_iter().enumerate() {
        write_parquet(
            &tmp.path().join(format!("parts/p{i}.parquet")),
            &known.batch(r),
        );
    }
    let wide: Vec<String> = (0..8).map(|j| format!("\"x{j}\"")).collect();
    let text = format!(
        r#"
[pipeline]
output_dir = "out"
[sources.pq]
path = "whole.parquet"
[sources.csv]
path = "whole.csv"
[sources.dir]
path = "parts"
[sources.glob]
path = "parts/p*.parquet"
[sources.query]
sql = "SELECT emb FROM pq WHERE id >= 0"
[stages.from_pq]
op = "top_eigenvector"
source = "pq"
columns = ["emb"]
algorithm = "exact"
[stages.from_csv]
op = "top_eigenvector"
source = "csv"
columns = [{}]
algorithm = "exact"
[stages.from_dir]
op = "top_eigenvector"
source = "dir"
columns = ["emb"]
algorithm = "exact"
[stages.from_glob]
op = "top_eigenvector"
source = "glob"
columns = ["emb"]
algorithm = "exact"
[stages.from_sql]
op = "top_eigenvector"
source = "query"
columns = ["emb"]
algorithm = "exact"
"#,
        wide.join(", ")
    );
    let file = write_pipeline(tmp.path(), &text);
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap()]));
    for stage in ["from_pq", "from_csv", "from_dir", "from_glob", "from_sql"] {
        let dir = tmp.path().join("out").join(stage);
        let v = read_vector(&dir);
        let a = alignment(&v, &known.v1);
        assert!(a > 1.0 - 1e-9, "{stage}: alignment {a}");
        assert_eq!(stat_u64(&dir, "rows"), n as u64, "{stage}");
    }
}

#[test]
fn a_stage_can_read_the_table_of_an_earlier_stage() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(5, 4, 3);
    let file = over_known(
        tmp.path(),
        &known,
        &format!(
            "{STAGE}\n[stages.second]\nop = \"top_eigenvector\"\nsource = \"top.vector\"\n\
             columns = [\"value\", \"component\"]\nalgorithm = \"exact\"\n"
        ),
    );
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap()]));
    let second = tmp.path().join("out/second");
    assert_eq!(stat_u64(&second, "rows"), 5);
    assert_eq!(read_vector(&second).len(), 2);
}

#[test]
fn failed_rerun_keeps_the_previous_output_and_leaves_no_temporary_files() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(6, 200, 5);
    let n = known.n();
    std::fs::create_dir(tmp.path().join("in")).unwrap();
    write_parquet(&tmp.path().join("in/a.parquet"), &known.batch(0..n));
    let file = pipeline_over(tmp.path(), "path = \"in\"");
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap()]));
    let stage = tmp.path().join("out/top");
    let before: Vec<Vec<u8>> = ["vector.parquet", "stats.parquet"]
        .iter()
        .map(|f| std::fs::read(stage.join(f)).unwrap())
        .collect();

    // A second file whose rows go bad half-way: the rerun fails mid-scan.
    let broken = known.with_values(&[((n / 2) * 6 + 3, f64::NAN)]);
    write_parquet(&tmp.path().join("in/b.parquet"), &broken.batch(0..n));
    let out = sketchpipe(&["run", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("NaN") && err.contains("`emb`") && err.contains("stage `top`"),
        "{err}"
    );

    let after: Vec<Vec<u8>> = ["vector.parquet", "stats.parquet"]
        .iter()
        .map(|f| std::fs::read(stage.join(f)).unwrap())
        .collect();
    assert_eq!(before, after, "the previous output changed");
    assert!(stage.join("_SUCCESS").exists());
    assert!(
        !tmp.path().join("out/.sketchpipe-tmp").exists(),
        "temporary files left behind"
    );
}

#[test]
fn a_failing_later_stage_commits_nothing() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(4, 10, 9);
    write_parquet(&tmp.path().join("good.parquet"), &known.batch(0..known.n()));
    let bad = known.with_values(&[(5, f64::INFINITY)]);
    write_parquet(&tmp.path().join("bad.parquet"), &bad.batch(0..bad.n()));
    let file = write_pipeline(
        tmp.path(),
        &format!(
            "[pipeline]\noutput_dir = \"out\"\n[sources.src]\npath = \"good.parquet\"\n\
             [sources.broken]\npath = \"bad.parquet\"\n{STAGE}\n\
             [stages.zz_late]\nop = \"top_eigenvector\"\nsource = \"broken\"\ncolumns = [\"emb\"]\n\
             algorithm = \"exact\"\n"
        ),
    );
    let out = sketchpipe(&["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("inf"), "{}", stderr(&out));
    let left = outputs_under(&tmp.path().join("out"));
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn run_dates_are_partitions_and_a_rerun_replaces_only_its_date() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(4, 10, 1);
    write_parquet(&tmp.path().join("a.parquet"), &known.batch(0..known.n()));
    let file = pipeline_over(tmp.path(), "path = \"a.parquet\"");
    let f = file.to_str().unwrap();
    for date in ["2026-11-01", "2026-11-02"] {
        assert_ok(&sketchpipe(&["run", f, "--run-date", date, "--quiet"]));
    }
    let day1 = tmp.path().join("out/top/date=2026-11-01");
    let day2 = tmp.path().join("out/top/date=2026-11-02");
    let day2_before = std::fs::read(day2.join("stats.parquet")).unwrap();
    assert_ok(&sketchpipe(&[
        "run",
        f,
        "--run-date",
        "2026-11-01",
        "--set",
        "top.seed=7",
        "--quiet",
    ]));
    assert_eq!(stat_u64(&day1, "seed"), 7);
    assert_eq!(
        std::fs::read(day2.join("stats.parquet")).unwrap(),
        day2_before
    );

    let out = sketchpipe(&[
        "sql",
        "--pipeline",
        f,
        "--format",
        "csv",
        "SELECT date, seed FROM top.stats ORDER BY date",
    ]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out).trim(),
        "date,seed\n2026-11-01,7\n2026-11-02,42"
    );

    // An undated run would replace every dated partition: refused.
    let out = sketchpipe(&["run", f]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("dated partitions"),
        "{}",
        stderr(&out)
    );
    let out = sketchpipe(&["run", f, "--run-date", "2026-13-01"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("YYYY-MM-DD"), "{}", stderr(&out));
}

#[test]
fn outputs_carry_metadata_and_honour_output_dir_and_set() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(4, 10, 2);
    write_parquet(&tmp.path().join("a.parquet"), &known.batch(0..known.n()));
    let file = pipeline_over(tmp.path(), "path = \"a.parquet\"");
    let elsewhere = tmp.path().join("elsewhere");
    assert_ok(&sketchpipe(&[
        "run",
        file.to_str().unwrap(),
        "--output-dir",
        elsewhere.to_str().unwrap(),
        "--set",
        "top.seed=99",
        "--quiet",
    ]));
    assert!(!tmp.path().join("out").exists());
    let path = elsewhere.join("top/vector.parquet");
    let reader = datafusion::parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap();
    use datafusion::parquet::file::reader::FileReader;
    let kv: std::collections::BTreeMap<String, String> = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(kv["sketchpipe.op"], "top_eigenvector");
    assert_eq!(kv["sketchpipe.seed"], "99");
    assert_eq!(kv["sketchpipe.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(kv["sketchpipe.input.rows"], known.n().to_string());
    assert!(kv["sketchpipe.input.path"].ends_with("a.parquet"));
    assert!(
        kv["sketchpipe.params"].contains("algorithm = \"exact\""),
        "{}",
        kv["sketchpipe.params"]
    );
}

#[test]
fn skip_mode_counts_invalid_rows_in_stats() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(4, 10, 4);
    let bad = known.with_values(&[(0, f64::NAN), (9, f64::NAN)]);
    write_parquet(&tmp.path().join("a.parquet"), &bad.batch(0..bad.n()));
    let file = pipeline_over(tmp.path(), "path = \"a.parquet\"");
    assert_ok(&sketchpipe(&[
        "run",
        file.to_str().unwrap(),
        "--set",
        "top.on_invalid=skip",
        "--quiet",
    ]));
    let stage = tmp.path().join("out/top");
    assert_eq!(stat_u64(&stage, "skipped_rows"), 2);
    assert_eq!(stat_u64(&stage, "rows"), known.n() as u64 - 2);
}

#[test]
fn generate_low_rank_is_reproducible_and_has_the_requested_gap() {
    let tmp = TempDir::new().unwrap();
    let a = tmp.path().join("a.parquet");
    // A directory that does not exist yet is made.
    let b = tmp.path().join("new/dir/b.parquet");
    let args = |out: &Path, seed: &str| {
        vec![
            "generate".to_string(),
            "low-rank".into(),
            "--out".into(),
            out.display().to_string(),
            "--rows".into(),
            "20000".into(),
            "--dim".into(),
            "16".into(),
            "--gap".into(),
            "20".into(),
            "--seed".into(),
            seed.into(),
            "--quiet".into(),
        ]
    };
    let run = |v: Vec<String>| sketchpipe(&v.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&run(args(&a, "5")));
    assert_ok(&run(args(&b, "5")));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_ok(&run(args(&b, "6")));
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    let file = pipeline_over(tmp.path(), "path = \"a.parquet\"");
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap(), "--quiet"]));
    let stage = tmp.path().join("out/top");
    let r = stat_f64(&stage, "eigenvalue") / stat_f64(&stage, "second_eigenvalue");
    // 20 000 Gaussian rows: the empirical gap is within a few percent of the requested one
    // (the top of 7 unit eigenvalues is pushed up by ≈ 2·sqrt(7/20000) ≈ 4 %).
    assert!((17.0..21.0).contains(&r), "gap {r}");
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["sql", "--help"],
        vec!["generate", "--help"],
        vec!["generate", "low-rank", "--help"],
        vec!["generate", "heavy-row", "--help"],
        vec!["generate", "heavy-vs-bulk", "--help"],
        vec!["generate", "classification", "--help"],
        vec!["generate", "logits", "--help"],
    ] {
        let out = sketchpipe(&args);
        assert_ok(&out);
        assert!(
            stdout(&out).contains("Usage: sketchpipe"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
    // `sql --help` names every SQL function sketchpipe registers.
    let help = stdout(&sketchpipe(&["sql", "--help"]));
    let names = sketchpipe::udf::names();
    assert!(names.len() >= 14);
    for name in names {
        assert!(help.contains(&name), "sql --help does not name {name}");
    }
    let out = sketchpipe(&["run"]);
    assert_eq!(out.status.code(), Some(2), "a usage error exits with 2");
}

/// A progress line says what each multi-pass stage does in that scan.
#[test]
fn progress_lines_name_the_passes_of_multi_pass_stages() {
    let tmp = TempDir::new().unwrap();
    let file = over_known(
        tmp.path(),
        &KnownSpectrum::new(4, 10, 8),
        "[stages.th]\nop = \"top_eigenvector\"\nsource = \"src\"\ncolumns = [\"emb\"]\n\
         algorithm = \"random-order\"\nfrobenius = \"exact\"\n\
         [stages.v]\nop = \"top_eigenvector\"\nsource = \"src\"\ncolumns = [\"emb\"]\n\
         algorithm = \"exact\"\nverify = true\n",
    );
    let out = sketchpipe(&["run", file.to_str().unwrap()]);
    assert_ok(&out);
    let log = stderr(&out);
    for line in [
        "source `src` (scan 1: ‖A‖_F² — `th`; exact — `v`): started",
        "source `src` (scan 2: random-order — `th`; verify — `v`): started",
    ] {
        assert!(log.contains(line), "{line}\n{log}");
    }
}

#[test]
fn stages_sharing_a_source_share_one_scan() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(4, 10, 8);
    let file = over_known(
        tmp.path(),
        &known,
        &format!(
            "{STAGE}\n[stages.ids]\nop = \"top_eigenvector\"\nsource = \"src\"\ncolumns = [\"id\"]\n\
             algorithm = \"exact\"\n"
        ),
    );
    let out = sketchpipe(&["run", file.to_str().unwrap()]);
    assert_ok(&out);
    let log = stderr(&out);
    // One scan, labelled with both stages it feeds.
    assert_eq!(
        log.matches("source `src` (`ids`, `top`): started").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches(": started").count(), 1, "{log}");
    assert_eq!(
        stat_u64(&tmp.path().join("out/ids"), "rows"),
        known.n() as u64
    );
    assert_eq!(
        stat_u64(&tmp.path().join("out/top"), "rows"),
        known.n() as u64
    );
    // Σ id² for ids 0..n: the one eigenvalue of a 1 × 1 Gram matrix.
    let n = known.n() as f64;
    let expected = (n - 1.0) * n * (2.0 * n - 1.0) / 6.0;
    assert_eq!(
        stat_f64(&tmp.path().join("out/ids"), "eigenvalue"),
        expected
    );
}

#[test]
fn frequent_directions_agrees_with_exact_within_its_bound() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("a.parquet");
    assert_ok(&sketchpipe(&[
        "generate",
        "low-rank",
        "--out",
        data.to_str().unwrap(),
        "--rows",
        "20000",
        "--dim",
        "64",
        "--gap",
        "20",
        "--seed",
        "3",
        "--quiet",
    ]));
    let file = write_pipeline(
        tmp.path(),
        &format!(
            "[pipeline]\noutput_dir = \"out\"\n[sources.src]\npath = \"a.parquet\"\n{STAGE}\n\
             [stages.fd]\nop = \"top_eigenvector\"\nsource = \"src\"\ncolumns = [\"emb\"]\n\
             algorithm = \"frequent-directions\"\nell = 16\n"
        ),
    );
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap(), "--quiet"]));
    let (exact, fd) = (tmp.path().join("out/top"), tmp.path().join("out/fd"));
    let a = alignment(&read_vector(&exact), &read_vector(&fd));
    assert!(a > 0.99, "alignment {a}");
    let (lambda, sketched) = (stat_f64(&exact, "eigenvalue"), stat_f64(&fd, "eigenvalue"));
    let bound = stat_f64(&fd, "error_bound");
    assert!(sketched <= lambda * (1.0 + 1e-9) && lambda - sketched <= bound * (1.0 + 1e-9));
    assert_eq!(stat_f64(&exact, "error_bound"), 0.0);
    // d = 64 against ℓ = 16: the Gram route, its `2ℓ × d` rows and `d × d` matrix.
    assert_eq!(stat_u64(&fd, "state_bytes"), (2 * 16 * 64 + 64 * 64) * 8);
}
