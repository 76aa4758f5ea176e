//! `coordinated_sketch` and `sketch_product` end to end: the stored sketch rebuilds exactly,
//! the exact method reproduces `AᵀB`, sketches from an earlier run combine with new ones, and
//! sketches that were not made to combine are refused with both sides named.

use std::path::Path;

use crate::common::{read_parquet, run_err, run_ok, sparse_batch};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, UInt32Type};
use sketchpipe::generate::SparsePair;
use sketchpipe::hash::Key;
use sketchpipe::operators::coordinated_sketch::{table, StoredSketch};
use sketchpipe::progress::ProgressMode;
use sketchpipe::sketch::priority::PrioritySketch;
use tempfile::TempDir;

fn pair(dir: &Path, rows: u64) -> SparsePair {
    let spec = SparsePair {
        rows,
        dim: 6,
        dim_right: 4,
        density: 0.4,
        overlap: 0.7,
        outliers: 3,
        seed: 11,
    };
    spec.write(&dir.join("pair"), ProgressMode::Quiet).unwrap();
    spec
}

/// `(key, row)` of a generated table.
fn rows_of(path: &Path) -> Vec<(i64, Vec<f64>)> {
    let b: RecordBatch = read_parquet(path);
    let keys = b.column_by_name("key").unwrap().as_primitive::<Int64Type>();
    let values = b.column_by_name("values").unwrap().as_list::<i32>();
    (0..b.num_rows())
        .map(|i| {
            let v = values.value(i);
            (
                keys.value(i),
                v.as_primitive::<Float64Type>().values().to_vec(),
            )
        })
        .collect()
}

fn sketch_stage(name: &str, source: &str, extra: &str) -> String {
    format!(
        "[stages.{name}]\nop = \"coordinated_sketch\"\nsource = \"{source}\"\nkey = \"key\"\ncolumns = [\"values\"]\n{extra}\n"
    )
}

const SOURCES: &str =
    "[sources.a]\npath = \"pair/left.parquet\"\n[sources.b]\npath = \"pair/right.parquet\"\n";

/// The product table as a dense `d × m` matrix.
fn product(stage: &Path, d: usize, m: usize) -> Vec<f64> {
    let b = read_parquet(&stage.join("product.parquet"));
    let (r, c) = (
        b.column_by_name("row")
            .unwrap()
            .as_primitive::<UInt32Type>(),
        b.column_by_name("col")
            .unwrap()
            .as_primitive::<UInt32Type>(),
    );
    let v = b
        .column_by_name("value")
        .unwrap()
        .as_primitive::<Float64Type>();
    let mut w = vec![0.0; d * m];
    for i in 0..b.num_rows() {
        w[r.value(i) as usize * m + c.value(i) as usize] = v.value(i);
    }
    w
}

#[tokio::test]
async fn stored_priority_sketch_rebuilds_exactly_and_exact_products_are_exact() {
    let tmp = TempDir::new().unwrap();
    pair(tmp.path(), 3000);
    let text = format!(
        "{SOURCES}{}{}{}{}[stages.exact_ab]\nop = \"sketch_product\"\nleft = \"ea\"\nright = \"eb\"\n",
        sketch_stage("sa", "a", "size = 300\nseed = 5"),
        sketch_stage("ea", "a", "method = \"exact\"\nseed = 5"),
        sketch_stage("eb", "b", "method = \"exact\"\nseed = 5"),
        sketch_stage("sb", "b", "size = 300\nseed = 5"),
    );
    run_ok(tmp.path(), &text).await;
    let out = tmp.path().join("out");

    // The stored sketch is the one the core builds from the same rows, to the bit.
    let left = rows_of(&tmp.path().join("pair/left.parquet"));
    let mut core = PrioritySketch::new(300, 6, 5);
    left.iter().for_each(|(k, r)| core.update(Key::Int(*k), r));
    let (stored, header) = table::read(&out.join("sa/sketch.parquet")).unwrap();
    assert!(
        stored == StoredSketch::Sample(core.finish()),
        "the stored sketch differs from the core's"
    );
    assert_eq!(header.columns, vec!["values".to_string()]);

    // exact × exact is AᵀB over the shared keys.
    let right = rows_of(&tmp.path().join("pair/right.parquet"));
    let mut want = vec![0.0; 6 * 4];
    for (kb, rb) in &right {
        if let Some((_, ra)) = left.iter().find(|(ka, _)| ka == kb) {
            for i in 0..6 {
                for j in 0..4 {
                    want[i * 4 + j] += ra[i] * rb[j];
                }
            }
        }
    }
    let got = product(&out.join("exact_ab"), 6, 4);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-9 * (1.0 + w.abs()), "{g} vs {w}");
    }
}

#[tokio::test]
async fn sketches_from_an_earlier_run_combine_with_new_ones() {
    let tmp = TempDir::new().unwrap();
    pair(tmp.path(), 2000);
    // Day 1: sketch A alone. Day 2: sketch B, multiply with day 1's directory.
    let day1 = TempDir::new().unwrap();
    std::fs::create_dir(day1.path().join("pair")).unwrap();
    for f in ["left.parquet", "right.parquet"] {
        std::fs::copy(
            tmp.path().join("pair").join(f),
            day1.path().join("pair").join(f),
        )
        .unwrap();
    }
    run_ok(
        day1.path(),
        &format!(
            "{SOURCES}{}",
            sketch_stage("sa", "a", "size = 200\nseed = 9")
        ),
    )
    .await;
    let earlier = day1.path().join("out/sa");
    let text = format!(
        "{SOURCES}{}{}[stages.same_run]\nop = \"sketch_product\"\nleft = \"sa\"\nright = \"sb\"\n[stages.across_runs]\nop = \"sketch_product\"\nleft = \"{}\"\nright = \"sb\"\n",
        sketch_stage("sa", "a", "size = 200\nseed = 9"),
        sketch_stage("sb", "b", "size = 200\nseed = 9"),
        earlier.display()
    );
    run_ok(tmp.path(), &text).await;
    let out = tmp.path().join("out");
    assert_eq!(
        product(&out.join("same_run"), 6, 4),
        product(&out.join("across_runs"), 6, 4)
    );
}

#[tokio::test]
async fn sketches_that_do_not_coordinate_are_refused_naming_both_sides() {
    let tmp = TempDir::new().unwrap();
    pair(tmp.path(), 500);
    let product_of = |l: &str, r: &str| {
        format!("[stages.ab]\nop = \"sketch_product\"\nleft = \"{l}\"\nright = \"{r}\"\n")
    };
    // Different seeds.
    let err = run_err(
        tmp.path(),
        &format!(
            "{SOURCES}{}{}{}",
            sketch_stage("sa", "a", "seed = 1"),
            sketch_stage("sb", "b", "seed = 2"),
            product_of("sa", "sb")
        ),
    )
    .await;
    assert!(
        err.contains("different seeds") && err.contains("stage `sa`") && err.contains("stage `sb`"),
        "{err}"
    );
    // Different methods.
    let err = run_err(
        tmp.path(),
        &format!(
            "{SOURCES}{}{}{}",
            sketch_stage("sa", "a", ""),
            sketch_stage("sb", "b", "method = \"jl\"\nsize = 8"),
            product_of("sa", "sb")
        ),
    )
    .await;
    assert!(
        err.contains("different methods") && err.contains("priority") && err.contains("jl"),
        "{err}"
    );
    // Different key types: the right keys as strings.
    let err = run_err(
        tmp.path(),
        &format!(
            "{SOURCES}[sources.bs]\nsql = \"SELECT CAST(key AS VARCHAR) AS key, \\\"values\\\" FROM b\"\n{}{}{}",
            sketch_stage("sa", "a", ""),
            sketch_stage("sb", "bs", ""),
            product_of("sa", "sb")
        ),
    )
    .await;
    assert!(
        err.contains("different key types") && err.contains("int") && err.contains("string"),
        "{err}"
    );
    // A key that is neither an integer nor a string.
    let err = run_err(
        tmp.path(),
        &format!(
            "{SOURCES}[stages.f]\nop = \"coordinated_sketch\"\nsource = \"b\"\nkey = \"y\"\n\
             columns = [\"values\"]\n"
        ),
    )
    .await;
    assert!(
        err.contains("column `y` is Float64; keys must be integers or strings"),
        "{err}"
    );
    // Not a sketch.
    let err = run_err(
        tmp.path(),
        &format!(
            "{SOURCES}{}",
            product_of("./pair/left.parquet", "./pair/right.parquet")
        ),
    )
    .await;
    assert!(err.contains("not a sketchpipe sketch"), "{err}");
    // A repeated key, with the default policy.
    std::fs::create_dir(tmp.path().join("dup")).unwrap();
    for i in 0..2 {
        std::fs::copy(
            tmp.path().join("pair/left.parquet"),
            tmp.path().join(format!("dup/part-{i}.parquet")),
        )
        .unwrap();
    }
    let err = run_err(
        tmp.path(),
        &format!(
            "[sources.d]\npath = \"dup\"\n{}",
            sketch_stage("sd", "d", "")
        ),
    )
    .await;
    assert!(
        err.contains("appears on 2 rows") && err.contains("duplicate_keys"),
        "{err}"
    );
    assert!(!tmp.path().join("out/sd").exists());
    // With duplicate_keys = "mean" the two copies average back to the table itself.
    let wide = |src: &str| {
        format!("sql = \"SELECT key, \\\"values\\\"[1] AS x0, \\\"values\\\"[2] AS x1 FROM {src}\"")
    };
    let stage = |name: &str, source: &str, extra: &str| {
        format!(
            "[stages.{name}]\nop = \"coordinated_sketch\"\nsource = \"{source}\"\nkey = \"key\"\ncolumns = [\"x0\", \"x1\"]\nmethod = \"exact\"\n{extra}\n"
        )
    };
    run_ok(
        tmp.path(),
        &format!(
            "[sources.d]\npath = \"dup\"\n[sources.a]\npath = \"pair/left.parquet\"\n[sources.dw]\n{}\n[sources.aw]\n{}\n{}{}",
            wide("d"),
            wide("a"),
            stage("mean", "dw", "duplicate_keys = \"mean\""),
            stage("once", "aw", ""),
        ),
    )
    .await;
    let read =
        |stage: &str| match table::read(&tmp.path().join(format!("out/{stage}/sketch.parquet"))) {
            Ok((StoredSketch::Sample(s), _)) => s,
            other => panic!("not a sample: {:?}", other.map(|o| o.0.method())),
        };
    let (mean, once) = (read("mean"), read("once"));
    assert!(
        mean.rows == once.rows,
        "the averaged duplicates differ from the table"
    );
    assert_eq!(mean.rows_seen, once.rows_seen);
    assert!((mean.frobenius_sq - once.frobenius_sq).abs() < 1e-9 * once.frobenius_sq);
}

#[tokio::test]
async fn merged_partition_sketches_equal_the_one_pass_sketch() {
    let tmp = TempDir::new().unwrap();
    pair(tmp.path(), 3000);
    let part = |name: &str, cond: &str| {
        format!("[sources.{name}]\nsql = \"SELECT * FROM a WHERE {cond}\"\n")
    };
    let text = format!(
        "{SOURCES}{}{}{}{}{}{}{}{}[stages.merged]\nop = \"sketch_merge\"\ninputs = [\"p0\", \"p1\"]\n\
         [stages.merged_exact]\nop = \"sketch_merge\"\ninputs = [\"e0\", \"e1\"]\n",
        part("even", "key % 2 = 0"),
        part("odd", "key % 2 = 1"),
        sketch_stage("whole", "a", "size = 250\nseed = 3"),
        sketch_stage("p0", "even", "size = 250\nseed = 3"),
        sketch_stage("p1", "odd", "size = 250\nseed = 3"),
        sketch_stage("whole_exact", "a", "method = \"exact\""),
        sketch_stage("e0", "even", "method = \"exact\""),
        sketch_stage("e1", "odd", "method = \"exact\""),
    );
    run_ok(tmp.path(), &text).await;
    let read =
        |stage: &str| match table::read(&tmp.path().join(format!("out/{stage}/sketch.parquet"))) {
            Ok((StoredSketch::Sample(s), _)) => s,
            other => panic!("not a sample: {:?}", other.map(|o| o.0.method())),
        };
    for (merged, whole) in [("merged", "whole"), ("merged_exact", "whole_exact")] {
        let (m, w) = (read(merged), read(whole));
        assert!(m.rows == w.rows, "{merged}: kept rows differ from {whole}");
        assert_eq!(m.level, w.level, "{merged}: τ differs");
        assert_eq!(m.rows_seen, w.rows_seen);
        assert!((m.frobenius_sq - w.frobenius_sq).abs() < 1e-9 * w.frobenius_sq);
    }
    // Threshold sketches are refused, and so are overlapping inputs.
    let err = run_err(
        tmp.path(),
        &format!(
            "{SOURCES}{}{}{}{}[stages.m]\nop = \"sketch_merge\"\ninputs = [\"t0\", \"t1\"]\n",
            part("even", "key % 2 = 0"),
            part("odd", "key % 2 = 1"),
            sketch_stage("t0", "even", "method = \"threshold\""),
            sketch_stage("t1", "odd", "method = \"threshold\""),
        ),
    )
    .await;
    assert!(err.contains("threshold sketches do not merge"), "{err}");
    let err = run_err(
        tmp.path(),
        &format!(
            "{SOURCES}{}{}[stages.m]\nop = \"sketch_merge\"\ninputs = [\"x0\", \"x1\"]\n",
            sketch_stage("x0", "a", "method = \"exact\""),
            sketch_stage("x1", "a", "method = \"exact\""),
        ),
    )
    .await;
    assert!(
        err.contains("is in more than one of the merged sketches"),
        "{err}"
    );
}

/// Regression over a join, from two sketches: the planted `β_j = 1/(j + 1)` of
/// `generate sparse-pair` is recovered on the shared keys.
#[tokio::test]
async fn regression_over_a_join_recovers_the_planted_coefficients() {
    let tmp = TempDir::new().unwrap();
    let spec = SparsePair {
        rows: 6000,
        dim: 5,
        dim_right: 1,
        density: 0.6,
        overlap: 0.6,
        outliers: 0,
        seed: 4,
    };
    spec.write(&tmp.path().join("pair"), ProgressMode::Quiet)
        .unwrap();
    let beta = spec.beta();
    let reg = |name: &str, l: &str, r: &str| {
        format!("[stages.{name}]\nop = \"sketch_regression\"\nleft = \"{l}\"\nright = \"{r}\"\ntarget = \"y\"\n")
    };
    let y_stage = |name: &str, extra: &str| {
        format!("[stages.{name}]\nop = \"coordinated_sketch\"\nsource = \"b\"\nkey = \"key\"\ncolumns = [\"y\"]\n{extra}\n")
    };
    let text = format!(
        "{SOURCES}{}{}{}{}{}{}",
        sketch_stage("xa", "a", "method = \"exact\""),
        y_stage("ya", "method = \"exact\""),
        sketch_stage("xp", "a", "size = 2000"),
        y_stage("yp", "size = 2000"),
        reg("exact", "xa", "ya"),
        reg("sampled", "xp", "yp"),
    );
    run_ok(tmp.path(), &text).await;
    let coefficients = |stage: &str| -> Vec<f64> {
        let b = read_parquet(&tmp.path().join(format!("out/{stage}/coefficients.parquet")));
        b.column_by_name("coefficient")
            .unwrap()
            .as_primitive::<Float64Type>()
            .values()
            .to_vec()
    };
    for (stage, tolerance) in [("exact", 0.02), ("sampled", 0.05)] {
        let got = coefficients(stage);
        let worst = got
            .iter()
            .zip(&beta)
            .map(|(g, b)| (g - b).abs())
            .fold(0.0, f64::max);
        println!("{stage}: β̂ = {got:.4?}, max |β̂ − β| = {worst:.4}");
        assert!(worst < tolerance, "{stage}: {got:?} vs {beta:?}");
    }
    // Linear sketches are refused.
    let err = run_err(
        tmp.path(),
        &format!(
            "{SOURCES}{}{}{}",
            sketch_stage("xj", "a", "method = \"jl\"\nsize = 16"),
            y_stage("yj", "method = \"jl\"\nsize = 16"),
            reg("r", "xj", "yj")
        ),
    )
    .await;
    assert!(err.contains("needs sampling sketches"), "{err}");
}

#[tokio::test]
async fn sparse_input_sketches_exactly_like_the_same_rows_dense() {
    let tmp = TempDir::new().unwrap();
    pair(tmp.path(), 2000);
    let rows = rows_of(&tmp.path().join("pair/left.parquet"));
    crate::common::write_parquet(
        &tmp.path().join("sparse.parquet"),
        &sparse_batch(&rows, None),
    );
    let text = format!(
        "{SOURCES}[sources.s]\npath = \"sparse.parquet\"\n{}{}[stages.from_sparse]\nop = \"coordinated_sketch\"\nsource = \"s\"\nkey = \"key\"\ncolumns = [\"sparse\"]\ndim = 6\nsize = 300\n[stages.jl_sparse]\nop = \"coordinated_sketch\"\nsource = \"s\"\nkey = \"key\"\ncolumns = [\"sparse\"]\ndim = 6\nmethod = \"jl\"\nsize = 8\n",
        sketch_stage("from_dense", "a", "size = 300"),
        sketch_stage("jl_dense", "a", "method = \"jl\"\nsize = 8"),
    );
    run_ok(tmp.path(), &text).await;
    for (sparse, dense) in [("from_sparse", "from_dense"), ("jl_sparse", "jl_dense")] {
        let read = |stage: &str| {
            table::read(&tmp.path().join(format!("out/{stage}/sketch.parquet")))
                .unwrap()
                .0
        };
        assert!(read(sparse) == read(dense), "{sparse} differs from {dense}");
    }
    // A missing dim and an index out of range are refused.
    let err = run_err(
        tmp.path(),
        "[sources.s]\npath = \"sparse.parquet\"\n[stages.x]\nop = \"coordinated_sketch\"\nsource = \"s\"\nkey = \"key\"\ncolumns = [\"sparse\"]\n",
    )
    .await;
    assert!(err.contains("dim"), "{err}");
    crate::common::write_parquet(
        &tmp.path().join("bad.parquet"),
        &sparse_batch(&rows, Some(6)),
    );
    let err = run_err(
        tmp.path(),
        "[sources.s]\npath = \"bad.parquet\"\n[stages.x]\nop = \"coordinated_sketch\"\nsource = \"s\"\nkey = \"key\"\ncolumns = [\"sparse\"]\ndim = 6\n",
    )
    .await;
    assert!(
        err.contains("index 6 is outside [0, 6)") && err.contains("row 0"),
        "{err}"
    );
}

/// The default key check holds at most half of `[pipeline] memory` of key hashes (8 bytes each)
/// and spills past it: at 64 MiB that is 2²¹ hashes, so 2 200 000 keys spill once. A key
/// repeated across the spill (its first copy on disk, its second in memory) is still named,
/// and unique keys still pass. The log says the check spilled (so the test fails if it did
/// not).
#[test]
fn the_key_check_spills_and_still_finds_a_repeat_across_the_spill() {
    use crate::common::{assert_ok, sketchpipe, stderr, write_pipeline};
    use datafusion::arrow::array::{Float64Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let tmp = TempDir::new().unwrap();
    let n = 2_200_000i64;
    let write = |name: &str, repeat: bool| {
        let keys = (0..n).map(|i| if repeat && i == n - 1 { 5 } else { i * 3 + 2 });
        let schema = Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            Field::new("x", DataType::Float64, false),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from_iter_values(keys)),
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| (i % 7) as f64 + 1.0),
                )),
            ],
        )
        .unwrap();
        crate::common::write_parquet(&tmp.path().join(name), &batch);
    };
    write("unique.parquet", false);
    write("repeat.parquet", true);
    let run = |file: &str| {
        let pipeline = write_pipeline(
            tmp.path(),
            &format!(
                "[pipeline]\noutput_dir = \"out\"\nmemory = \"64MiB\"\n[sources.t]\n\
                 path = \"{file}\"\n[stages.s]\nop = \"coordinated_sketch\"\nsource = \"t\"\n\
                 key = \"key\"\ncolumns = [\"x\"]\nsize = 100\n"
            ),
        );
        sketchpipe(&["run", pipeline.to_str().unwrap()])
    };
    let spilled = "stage `s`: the duplicate-key check of `key` held more hashes than half of \
                   [pipeline] memory and spilled";
    let ok = run("unique.parquet");
    assert_ok(&ok);
    assert!(stderr(&ok).contains(spilled), "{}", stderr(&ok));
    let bad = run("repeat.parquet");
    let log = stderr(&bad);
    assert_eq!(bad.status.code(), Some(3), "{log}");
    assert!(log.contains(spilled), "{log}");
    assert!(
        log.contains("`key` = 5 appears on 2 rows") && log.contains("stage `s`"),
        "{log}"
    );
    // No scratch file of the check is left behind.
    let leftovers: Vec<_> = crate::common::files_under(&tmp.path().join("out"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("keys-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
