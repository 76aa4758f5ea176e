//! The four top-eigenvector algorithms against exact answers on the test families of
//! `docs/algorithms.md` §1f, sign-free (`⟨v, v₁⟩²`), seeds fixed.

use std::path::Path;

use crate::common::*;
use sketchpipe::eigen::{Oja, RandomOrder, RandomOrderParams, StreamScale};
use sketchpipe::generate::{HeavyRow, Rows};
use tempfile::TempDir;

/// Streams every row of `rows` through `f`, 8192 at a time.
fn stream(mut rows: Rows, mut f: impl FnMut(&[f64])) {
    let mut left = rows.count as usize;
    let mut buf = Vec::new();
    while left > 0 {
        let n = left.min(8192);
        buf.clear();
        rows.fill(n, &mut buf);
        f(&buf);
        left -= n;
    }
}

/// The separation of Kacham–Woodruff (arXiv:2412.11963): with one heavy row and `d = 1024`,
/// `R = 20`, storing the heavy row finds `v₁`, while no fixed learning rate of Oja does —
/// every `η` of the grid stays far from it (theory: ≈ (R/e)² / ((R/e)² + d − 1) ≈ 0.05).
#[test]
fn heavy_row_separates_random_order_from_every_fixed_eta_oja() {
    let instance = HeavyRow {
        dim: 1024,
        gap: 20.0,
        per_direction: 64,
        seed: 3,
    };
    let d = instance.dim;
    // AᵀA = Q diag(R, 1, …, 1) Qᵀ exactly: ‖A‖_F² = R + d − 1 and v₁ = Q e₁.
    let scale = StreamScale {
        rows: instance.row_count(),
        frobenius_sq: instance.gap + (d - 1) as f64,
    };
    let v1 = instance.rows().unwrap().top;

    let mut ro = RandomOrder::new(d, scale, RandomOrderParams::default(), 1).unwrap();
    stream(instance.rows().unwrap(), |b| ro.update(b).unwrap());
    let found = ro.finish().unwrap();
    let ro_alignment = alignment(&found.vector, &v1);
    println!(
        "random-order: ⟨v, v₁⟩² = {ro_alignment:.4}, heavy rows kept {}",
        found.heavy_rows
    );
    assert!(ro_alignment >= 0.95, "random-order reached {ro_alignment}");
    assert_eq!(found.heavy_rows, 1);

    let mut oja = Oja::new(d, scale, 1).unwrap();
    stream(instance.rows().unwrap(), |b| oja.update(b));
    let mut best = 0.0f64;
    for copy in oja.copies() {
        let a = alignment(&copy.vector, &v1);
        println!("oja η = {:.3e}: ⟨v, v₁⟩² = {a:.4}", copy.eta);
        best = best.max(a);
    }
    let picked = alignment(&oja.finish().unwrap().vector, &v1);
    println!("oja best over the grid {best:.4}, picked {picked:.4}");
    assert!(best < 0.5, "some fixed η reached {best}");
}

fn pipeline(dir: &Path, source: &str, stages: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = format!(
        "[pipeline]\nname = \"t\"\noutput_dir = \"out\"\n\n[sources.src]\npath = \"{source}\"\n"
    );
    for (name, extra) in stages {
        text.push_str(&format!(
            "\n[stages.{name}]\nop = \"top_eigenvector\"\nsource = \"src\"\ncolumns = [\"emb\"]\n{extra}\n"
        ));
    }
    write_pipeline(dir, &text)
}

fn generate(args: &[&str]) {
    let mut all = vec!["-q", "generate"];
    all.extend_from_slice(args);
    assert_ok(&sketchpipe(&all));
}

#[test]
fn heavy_rows_against_the_bulk_are_found_by_random_order_and_exact() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("hb.parquet");
    generate(&[
        "heavy-vs-bulk",
        "--rows",
        "20000",
        "--dim",
        "64",
        "--out",
        data.to_str().unwrap(),
    ]);
    let file = pipeline(
        tmp.path(),
        "hb.parquet",
        &[
            ("exact", "algorithm = \"exact\""),
            ("ro", ""),
            ("fd", "algorithm = \"frequent-directions\""),
        ],
    );
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let exact = read_vector(&out.join("exact"));
    // The heavy direction w is e₁ before the generator's rotation; the bulk's own top is e₂.
    let rows = sketchpipe::generate::HeavyVsBulk {
        rows: 20000,
        dim: 64,
        heavy_rows: 10,
        heavy_mass: 2.0,
        bulk_gap: 4.0,
        seed: 42,
    }
    .rows()
    .unwrap();
    let w = rows.top.clone();
    for stage in ["exact", "ro", "fd"] {
        let v = read_vector(&out.join(stage));
        let a = alignment(&v, &w);
        println!(
            "{stage}: ⟨v, w⟩² = {a:.4}, ⟨v, v_exact⟩² = {:.4}",
            alignment(&v, &exact)
        );
        assert!(a >= 0.95, "{stage} reached {a}");
    }
    assert_eq!(stat_u64(&out.join("ro"), "heavy_rows"), 10);
    assert!(!stat_bool(&out.join("ro"), "order_randomised"));
}

#[test]
fn low_rank_with_a_gap_of_20_is_found_by_every_streaming_method() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("lr.parquet");
    generate(&[
        "low-rank",
        "--rows",
        "20000",
        "--dim",
        "256",
        "--gap",
        "20",
        "--rank",
        "16",
        "--noise",
        "0.1",
        "--out",
        data.to_str().unwrap(),
    ]);
    let file = pipeline(
        tmp.path(),
        "lr.parquet",
        &[
            ("exact", "algorithm = \"exact\""),
            ("ro", "algorithm = \"random-order\""),
            ("oja", "algorithm = \"oja\""),
            ("fd", "algorithm = \"frequent-directions\""),
        ],
    );
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let exact = read_vector(&out.join("exact"));
    for stage in ["ro", "oja", "fd"] {
        let a = alignment(&read_vector(&out.join(stage)), &exact);
        println!("{stage}: ⟨v, v₁⟩² = {a:.4}");
        assert!(a >= 0.9, "{stage} reached {a}");
    }
    // One scan feeds all four stages (none asked for an exact ‖A‖_F² or verify).
    for stage in ["exact", "ro", "oja", "fd"] {
        assert_eq!(stat_u32(&out.join(stage), "passes"), 1, "{stage}");
    }
}

#[test]
fn sorted_input_with_shuffle_is_deterministic_and_recovers_the_answer() {
    let tmp = TempDir::new().unwrap();
    let sorted = tmp.path().join("sorted.parquet");
    generate(&[
        "heavy-vs-bulk",
        "--rows",
        "20000",
        "--dim",
        "64",
        "--sort-by",
        "norm",
        "--out",
        sorted.to_str().unwrap(),
    ]);
    let shuffled = "shuffle = true\nshuffle_memory = \"1MiB\"\nseed = 9";
    let file = pipeline(
        tmp.path(),
        "sorted.parquet",
        &[
            ("exact", "algorithm = \"exact\""),
            ("a", shuffled),
            ("c", "shuffle = true\nseed = 10"),
            ("as_read", ""),
        ],
    );
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let exact = read_vector(&out.join("exact"));
    // Same seed ⇒ the same output, bit for bit, in a separate run (the shuffle is a pure
    // function of the seed and the input).
    let again = tmp.path().join("again");
    assert_ok(&sketchpipe(&[
        "-q",
        "run",
        file.to_str().unwrap(),
        "--output-dir",
        again.to_str().unwrap(),
    ]));
    assert_eq!(read_vector(&out.join("a")), read_vector(&again.join("a")));
    for stage in ["a", "c"] {
        let a = alignment(&read_vector(&out.join(stage)), &exact);
        println!("shuffled {stage}: ⟨v, v₁⟩² = {a:.4}");
        assert!(a >= 0.95, "{stage} reached {a}");
        assert!(stat_bool(&out.join(stage), "order_randomised"));
        // Spill pass + shuffled read-back.
        assert_eq!(stat_u32(&out.join(stage), "passes"), 2);
    }
    let as_read = alignment(&read_vector(&out.join("as_read")), &exact);
    println!("sorted, not shuffled: ⟨v, v₁⟩² = {as_read:.4}");
    assert!(!stat_bool(&out.join("as_read"), "order_randomised"));
    // Nothing of the spill is left.
    assert!(!out.join(".sketchpipe-tmp").exists());
}

#[test]
fn verify_measures_the_rayleigh_quotient_and_residual_of_any_answer() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(16, 40, 5);
    write_parquet(&tmp.path().join("k.parquet"), &known.batch(0..known.n()));
    let file = pipeline(
        tmp.path(),
        "k.parquet",
        &[
            ("exact", "algorithm = \"exact\"\nverify = true"),
            ("ro", "verify = true\nfrobenius = \"exact\""),
            ("plain", "algorithm = \"exact\""),
        ],
    );
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap()]));
    let out = tmp.path().join("out");
    let exact = out.join("exact");
    // For the exact eigenvector, ρ = λ₁ and the residual vanishes.
    assert!((stat_f64(&exact, "rayleigh_quotient") - known.lambdas[0]).abs() < 1e-9);
    assert!(stat_f64(&exact, "residual") < 1e-9);
    assert_eq!(stat_u32(&exact, "passes"), 2);
    // For any other vector, ρ = vᵀAᵀAv exactly: check against the known spectrum.
    let ro = out.join("ro");
    let v = read_vector(&ro);
    let rho: f64 = known
        .rows
        .chunks_exact(known.d)
        .map(|a| a.iter().zip(&v).map(|(x, y)| x * y).sum::<f64>().powi(2))
        .sum();
    assert!((stat_f64(&ro, "rayleigh_quotient") - rho).abs() < 1e-9 * rho);
    // Exact ‖A‖_F² pass, main pass, verify pass.
    assert_eq!(stat_u32(&ro, "passes"), 3);
    // Without verify the columns are null.
    let stats = read_parquet(&out.join("plain/stats.parquet"));
    assert!(stats
        .column_by_name("rayleigh_quotient")
        .unwrap()
        .is_null(0));
}

#[test]
fn every_pass_over_a_csv_source_sees_all_rows_and_no_count_scan_is_added() {
    // CSV plans yield nothing when executed twice, and CSV has no row count in a footer: each
    // of the three passes must be planned afresh, and the first full pass gives `n`.
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(6, 30, 2);
    write_csv(&tmp.path().join("k.csv"), &known.wide_batch(0..known.n()));
    let columns: Vec<String> = (0..known.d).map(|j| format!("\"x{j}\"")).collect();
    let text = format!(
        "[pipeline]\noutput_dir = \"out\"\n[sources.k]\npath = \"k.csv\"\n\
         [stages.ro]\nop = \"top_eigenvector\"\nsource = \"k\"\ncolumns = [{}]\n\
         frobenius = \"exact\"\nverify = true\n",
        columns.join(", ")
    );
    let file = write_pipeline(tmp.path(), &text);
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap()]));
    let ro = tmp.path().join("out/ro");
    assert_eq!(stat_u64(&ro, "rows"), known.n() as u64);
    assert_eq!(stat_u32(&ro, "passes"), 3);
    let frobenius: f64 = known.lambdas.iter().sum();
    assert!((stat_f64(&ro, "frobenius_sq") - frobenius).abs() < 1e-9 * frobenius);
    let v = read_vector(&ro);
    let rho: f64 = known
        .rows
        .chunks_exact(known.d)
        .map(|a| a.iter().zip(&v).map(|(x, y)| x * y).sum::<f64>().powi(2))
        .sum();
    assert!((stat_f64(&ro, "rayleigh_quotient") - rho).abs() < 1e-9 * rho);
}

#[test]
fn a_source_declared_shuffled_counts_as_random_order_without_a_shuffle() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(8, 200, 3);
    write_parquet(&tmp.path().join("k.parquet"), &known.batch(0..known.n()));
    let text = "[pipeline]\noutput_dir = \"out\"\n\
        [sources.declared]\npath = \"k.parquet\"\nshuffled = true\n\
        [sources.plain]\npath = \"k.parquet\"\n\
        [stages.a]\nop = \"top_eigenvector\"\nsource = \"declared\"\ncolumns = [\"emb\"]\n\
        [stages.b]\nop = \"top_eigenvector\"\nsource = \"plain\"\ncolumns = [\"emb\"]\n";
    let file = write_pipeline(tmp.path(), text);
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap()]));
    let out = tmp.path().join("out");
    assert!(stat_bool(&out.join("a"), "order_randomised"));
    assert!(!stat_bool(&out.join("b"), "order_randomised"));
    assert_eq!(stat_u32(&out.join("a"), "passes"), 1);
    // Same rows, same seed, same order: the declaration changes the record, not the answer.
    assert_eq!(read_vector(&out.join("a")), read_vector(&out.join("b")));
    assert!(alignment(&read_vector(&out.join("a")), &known.v1) > 0.99);
}

#[test]
fn reruns_over_a_multi_file_input_give_identical_answers() {
    // Several files are several partitions; their batches must reach the stream-order
    // algorithms (and the shuffle's seeded spill) in the same order on every run.
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(12, 400, 8);
    let n = known.n();
    std::fs::create_dir(tmp.path().join("parts")).unwrap();
    for part in 0..6 {
        let range = part * n / 6..(part + 1) * n / 6;
        write_parquet(
            &tmp.path().join(format!("parts/{part}.parquet")),
            &known.batch(range),
        );
    }
    let text = "[pipeline]\noutput_dir = \"out\"\n[sources.p]\npath = \"parts\"\n\
        [stages.shuffled]\nop = \"top_eigenvector\"\nsource = \"p\"\ncolumns = [\"emb\"]\nshuffle = true\n\
        [stages.as_read]\nop = \"top_eigenvector\"\nsource = \"p\"\ncolumns = [\"emb\"]\nalgorithm = \"oja\"\n";
    let file = write_pipeline(tmp.path(), text);
    let mut answers = Vec::new();
    for out in ["out1", "out2", "out3"] {
        let dir = tmp.path().join(out);
        assert_ok(&sketchpipe(&[
            "-q",
            "run",
            file.to_str().unwrap(),
            "--output-dir",
            dir.to_str().unwrap(),
        ]));
        answers.push((
            read_vector(&dir.join("shuffled")),
            read_vector(&dir.join("as_read")),
        ));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    assert!(alignment(&answers[0].0, &known.v1) > 0.99);
}

/// A stage whose guarantee assumes a random order, reading rows in file order, is warned about
/// (naming the stage and the remedies; a `warning` record in JSON; nothing with `--quiet`); the
/// same stage behind a shuffle, over a source declared shuffled, or an order-free algorithm is
/// not.
#[test]
fn a_stream_order_stage_in_file_order_is_warned_about() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(8, 100, 4);
    write_parquet(&tmp.path().join("k.parquet"), &known.batch(0..known.n()));
    let text = "[pipeline]\noutput_dir = \"out\"\n\
        [sources.plain]\npath = \"k.parquet\"\n\
        [sources.declared]\npath = \"k.parquet\"\nshuffled = true\n\
        [stages.filed]\nop = \"top_eigenvector\"\nsource = \"plain\"\ncolumns = [\"emb\"]\n\
        [stages.pca_filed]\nop = \"pca\"\nsource = \"plain\"\ncolumns = [\"emb\"]\nalgorithm = \"oja\"\n\
        [stages.shuffled]\nop = \"top_eigenvector\"\nsource = \"plain\"\ncolumns = [\"emb\"]\nshuffle = true\n\
        [stages.vouched]\nop = \"top_eigenvector\"\nsource = \"declared\"\ncolumns = [\"emb\"]\n\
        [stages.exact]\nop = \"top_eigenvector\"\nsource = \"plain\"\ncolumns = [\"emb\"]\nalgorithm = \"exact\"\n";
    let file = write_pipeline(tmp.path(), text);
    let out = sketchpipe(&["run", file.to_str().unwrap()]);
    assert_ok(&out);
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].contains("stage `filed`") || warnings[1].contains("stage `filed`"),
        "{err}"
    );
    for w in &warnings {
        assert!(
            w.contains("shuffle = true") && w.contains("shuffled = true"),
            "{w}"
        );
    }
    assert!(warnings
        .iter()
        .any(|w| w.contains("stage `filed`") && w.contains("verify = true")));
    assert!(warnings
        .iter()
        .any(|w| w.contains("stage `pca_filed`") && !w.contains("verify")));
    let json = sketchpipe(&["--log-format", "json", "run", file.to_str().unwrap()]);
    let records: Vec<serde_json::Value> = stderr(&json)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["event"] == "warning")
        .collect();
    assert_eq!(records.len(), 2);
    assert!(records
        .iter()
        .all(|r| r["level"] == "warning" && r["kind"] == "file_order"));
    let quiet = sketchpipe(&["-q", "run", file.to_str().unwrap()]);
    assert_ok(&quiet);
    assert!(stderr(&quiet).is_empty(), "{}", stderr(&quiet));
}
