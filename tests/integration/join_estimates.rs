//! The estimates over a join (`join_size`, `join_inner_product`, `join_correlation`,
//! `join_r2`) through a real session over Parquet files, against the exact join computed here;
//! the `weights` key of the stage; and the refusals (other seeds, linear sketches, keys a
//! sketch cannot see).

use std::sync::Arc;

use crate::common::*;
use datafusion::arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::Float64Type;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use sketchpipe::operators::coordinated_sketch::StoredSketch;
use sketchpipe::pipeline::source::session;
use tempfile::TempDir;

/// A query table `q(id, y)` on keys `0..n` and a candidate `c(id, x, z)` on keys
/// `offset..offset + n`, `x` correlated with `y` on the shared keys.
struct Tables {
    y: Vec<f64>,
    x: Vec<f64>,
    z: Vec<f64>,
    n: usize,
    offset: usize,
}

fn write_tables(dir: &std::path::Path, n: usize, offset: usize, zero_rows: bool) -> Tables {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut g = || -> f64 { StandardNormal.sample(&mut rng) };
    let all = offset + n;
    let y: Vec<f64> = (0..all).map(|_| g() + 2.0).collect();
    let x: Vec<f64> = y.iter().map(|y| 0.7 * y + 0.7 * g()).collect();
    let z: Vec<f64> = (0..all).map(|_| g()).collect();
    let mut qy = y[..n].to_vec();
    if zero_rows {
        qy[offset + 1] = 0.0; // a shared key whose query row is all zero
    }
    let q = RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..n as i64)) as _,
        ),
        ("y", Arc::new(Float64Array::from(qy.clone())) as _),
    ])
    .unwrap();
    let c = RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from_iter_values(offset as i64..all as i64)) as _,
        ),
        ("x", Arc::new(Float64Array::from(x[offset..].to_vec())) as _),
        ("z", Arc::new(Float64Array::from(z[offset..].to_vec())) as _),
    ])
    .unwrap();
    write_parquet(&dir.join("q.parquet"), &q);
    write_parquet(&dir.join("c.parquet"), &c);
    let mut y = y;
    y[..n].copy_from_slice(&qy);
    Tables { y, x, z, n, offset }
}

/// The exact join's size, corr(y, x), and R² of y on (x, z) with an intercept (unadjusted).
fn exact(t: &Tables) -> (f64, f64, f64) {
    let shared: Vec<usize> = (t.offset..t.n).collect();
    let m = shared.len() as f64;
    let mean = |v: &[f64]| shared.iter().map(|&i| v[i]).sum::<f64>() / m;
    let (my, mx, mz) = (mean(&t.y), mean(&t.x), mean(&t.z));
    let s = |a: &[f64], ma: f64, b: &[f64], mb: f64| {
        shared
            .iter()
            .map(|&i| (a[i] - ma) * (b[i] - mb))
            .sum::<f64>()
    };
    let (syy, sxx, szz) = (
        s(&t.y, my, &t.y, my),
        s(&t.x, mx, &t.x, mx),
        s(&t.z, mz, &t.z, mz),
    );
    let (sxy, szy, sxz) = (
        s(&t.x, mx, &t.y, my),
        s(&t.z, mz, &t.y, my),
        s(&t.x, mx, &t.z, mz),
    );
    let r = sxy / (sxx * syy).sqrt();
    // Two-regressor normal equations by Cramer's rule.
    let det = sxx * szz - sxz * sxz;
    let bx = (sxy * szz - szy * sxz) / det;
    let bz = (szy * sxx - sxy * sxz) / det;
    let r2 = (bx * sxy + bz * szy) / syy;
    (m, r, r2)
}

/// The `{estimate, lower_bound, upper_bound, note}` struct of column `c`, row 0.
fn stat(b: &RecordBatch, c: &str) -> (Option<f64>, Option<f64>, Option<f64>, Option<String>) {
    let s = b.column_by_name(c).unwrap().as_struct();
    let f = |k: usize| {
        let a = s.column(k).as_primitive::<Float64Type>();
        a.is_valid(0).then(|| a.value(0))
    };
    let note = s.column(3).as_string::<i32>();
    (
        f(0),
        f(1),
        f(2),
        note.is_valid(0).then(|| note.value(0).to_string()),
    )
}

fn query(method: &str, size: usize, weights: &str) -> String {
    format!(
        "WITH q AS (SELECT coordinated_sketch(id, y, '{method}', {size}, 5, '{weights}') AS s \
         FROM 'q.parquet'), c AS (SELECT coordinated_sketch(id, make_array(x, z), '{method}', \
         {size}, 5, '{weights}') AS s FROM 'c.parquet') SELECT join_size(q.s, c.s) AS js, \
         join_correlation(q.s, c.s, 1, 1) AS r, join_r2(q.s, c.s, 1) AS r2, \
         join_inner_product(q.s, c.s, 1, 1, 0.99) AS ip FROM q, c"
    )
}

async fn run_query(dir: &std::path::Path, sql: &str) -> sketchpipe::Result<RecordBatch> {
    let ctx = session();
    let sql = sql
        .replace(
            "'q.parquet'",
            &format!("'{}'", dir.join("q.parquet").display()),
        )
        .replace(
            "'c.parquet'",
            &format!("'{}'", dir.join("c.parquet").display()),
        );
    let batches = ctx.sql(&sql).await?.collect().await?;
    Ok(batches.into_iter().find(|b| b.num_rows() > 0).unwrap())
}

#[tokio::test]
async fn exact_sketches_give_the_exact_join_statistics_with_zero_width() {
    let dir = TempDir::new().unwrap();
    let t = write_tables(dir.path(), 2000, 1200, false);
    let (size, r, r2) = exact(&t);
    let b = run_query(dir.path(), &query("exact", 0, "uniform"))
        .await
        .unwrap();
    let (js, lo, hi, note) = stat(&b, "js");
    assert_eq!(
        (js, lo, hi, note),
        (Some(size), Some(size), Some(size), None)
    );
    let (got_r, lo, hi, _) = stat(&b, "r");
    assert!((got_r.unwrap() - r).abs() < 1e-12, "{got_r:?} vs {r}");
    assert_eq!((lo, hi), (got_r, got_r));
    // The adjusted R² of 800 exact rows on two regressors: 1 − (1 − R²)(n − 1)/(n − 3).
    let adjusted = 1.0 - (1.0 - r2) * (size - 1.0) / (size - 3.0);
    let got = stat(&b, "r2").0.unwrap();
    assert!((got - adjusted).abs() < 1e-10, "{got} vs {adjusted}");
}

#[tokio::test]
async fn sampled_estimates_bracket_the_truth() {
    let dir = TempDir::new().unwrap();
    let t = write_tables(dir.path(), 4000, 2000, false);
    let (size, r, r2) = exact(&t);
    for weights in ["uniform", "norm"] {
        let b = run_query(dir.path(), &query("priority", 800, weights))
            .await
            .unwrap();
        for (c, truth) in [("js", size), ("r", r), ("r2", r2)] {
            let (e, lo, hi, note) = stat(&b, c);
            let (e, lo, hi) = (e.unwrap(), lo.unwrap(), hi.unwrap());
            assert!(note.is_none());
            assert!(lo <= e && e <= hi, "{weights} {c}: {lo} {e} {hi}");
            // A 95 % interval: a miss has probability 5 %, at these fixed seeds it does not.
            assert!(
                lo <= truth && truth <= hi,
                "{weights} {c}: {truth} not in [{lo}, {hi}]"
            );
            assert!(
                hi - lo < 0.5 * truth.abs().max(0.2),
                "{weights} {c}: too wide"
            );
        }
    }
}

#[tokio::test]
async fn estimates_the_sketches_cannot_make_are_null_with_the_reason() {
    let dir = TempDir::new().unwrap();
    write_tables(dir.path(), 500, 200, true);
    // Norm weights never keep the all-zero query row of a shared key.
    let b = run_query(dir.path(), &query("priority", 100, "norm"))
        .await
        .unwrap();
    for c in ["js", "r", "r2"] {
        let (e, lo, hi, note) = stat(&b, c);
        assert_eq!((e, lo, hi), (None, None, None), "{c}");
        let note = note.unwrap();
        assert!(
            note.contains("all zero") && note.contains("uniform"),
            "{note}"
        );
    }
    // The inner product does not need those keys (their row adds nothing).
    assert!(stat(&b, "ip").0.is_some());
    // Uniform weights see every key.
    let b = run_query(dir.path(), &query("priority", 100, "uniform"))
        .await
        .unwrap();
    assert!(stat(&b, "js").0.is_some());
}

#[tokio::test]
async fn mixing_seeds_methods_or_linear_sketches_is_refused_with_the_cause() {
    let dir = TempDir::new().unwrap();
    write_tables(dir.path(), 300, 100, false);
    let pair = |a: &str, b: &str| {
        format!(
            "SELECT join_size(q.s, c.s) FROM (SELECT coordinated_sketch(id, y, {a}) AS s FROM \
             'q.parquet') q, (SELECT coordinated_sketch(id, make_array(x, z), {b}) AS s FROM \
             'c.parquet') c"
        )
    };
    let cases = [
        (
            pair("'priority', 50, 1", "'priority', 50, 2"),
            "different seeds",
        ),
        (
            pair("'priority', 50, 1", "'exact', 0, 1"),
            "different methods",
        ),
        (pair("'jl', 8, 1", "'jl', 8, 1"), "sampling sketches"),
    ];
    for (sql, want) in cases {
        let err = run_query(dir.path(), &sql).await.unwrap_err().to_string();
        assert!(err.contains(want), "{sql}: {err}");
    }
    let err = run_query(
        dir.path(),
        "SELECT join_correlation(s, s, 0, 1) FROM (SELECT coordinated_sketch(id, y, 'priority', \
         50, 1) AS s FROM 'q.parquet')",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("column position"), "{err}");
}

#[tokio::test]
async fn the_stage_writes_uniform_weights_and_refuses_them_for_linear_methods() {
    let dir = TempDir::new().unwrap();
    write_tables(dir.path(), 300, 100, true);
    let stage = |method: &str| {
        format!(
            "[sources.q]\npath = \"q.parquet\"\n\n[stages.s]\nop = \"coordinated_sketch\"\n\
             source = \"q\"\nkey = \"id\"\ncolumns = [\"y\"]\nmethod = \"{method}\"\nsize = 50\n\
             weights = \"uniform\"\n"
        )
    };
    run_ok(dir.path(), &stage("priority")).await;
    let s = read_sample(&dir.path().join("out/s"));
    assert_eq!(s.weights, sketchpipe::sketch::Weights::Uniform);
    assert_eq!(s.zero_weight_rows, Some(0));
    assert_eq!(s.rows.len(), 50);
    assert!(s.rows.iter().all(|r| r.weight == 1.0));
    let err = run_err(dir.path(), &stage("jl")).await;
    assert!(
        err.contains("weights") && err.contains("sampling methods"),
        "{err}"
    );
}

/// A corpus from `generate corpus` in `dir/corpus`: the planted tables.
fn corpus(
    dir: &std::path::Path,
    tables: usize,
    rows: u64,
) -> Vec<sketchpipe::generate::corpus::Planted> {
    let spec = sketchpipe::generate::Corpus {
        tables,
        rows,
        min_overlap: 0.05,
        outliers: 0.0,
        seed: 3,
    };
    spec.write(
        &dir.join("corpus"),
        sketchpipe::progress::ProgressMode::Quiet,
    )
    .unwrap();
    spec.planted()
}

const SOURCES: &str = "[sources.q]\npath = \"corpus/query.parquet\"\n\n[sources.c]\npath = \
                       \"corpus/corpus.parquet\"\n\n";

fn catalog_stage(name: &str, method: &str, seed: u64) -> String {
    let size = if method == "exact" {
        String::new()
    } else {
        "size = 200\n".into()
    };
    format!(
        "[stages.{name}]\nop = \"coordinated_sketch\"\nsource = \"c\"\nkey = \"key\"\ncolumns = \
         [\"x\", \"z\"]\ntable_column = \"table\"\nmethod = \"{method}\"\n{size}seed = {seed}\n\
         weights = \"uniform\"\n\n"
    )
}

fn query_stage(name: &str, method: &str, seed: u64) -> String {
    let size = if method == "exact" {
        String::new()
    } else {
        "size = 200\n".into()
    };
    format!(
        "[stages.{name}]\nop = \"coordinated_sketch\"\nsource = \"q\"\nkey = \"key\"\ncolumns = \
         [\"y\"]\nmethod = \"{method}\"\n{size}seed = {seed}\nweights = \"uniform\"\n\n"
    )
}

/// The `(table, sketch)` entries of stage `stage`'s catalog under `dir/out`, in file order.
fn read_catalog(dir: &std::path::Path, stage: &str) -> Vec<(String, StoredSketch)> {
    let mut out = Vec::new();
    sketchpipe::operators::coordinated_sketch::catalog::scan(
        &dir.join(format!("out/{stage}/sketches.parquet")),
        |name, s, _| {
            out.push((name.to_string(), s));
            Ok(())
        },
    )
    .unwrap();
    out
}

/// The catalog's sketch of each table is exactly the sketch a stage makes of that table alone.
#[tokio::test]
async fn a_catalog_holds_each_tables_own_sketch() {
    let dir = TempDir::new().unwrap();
    let planted = corpus(dir.path(), 6, 400);
    let mut text = format!("{SOURCES}{}", catalog_stage("cat", "priority", 9));
    for p in &planted {
        text.push_str(&format!(
            "[sources.only_{0}]\nsql = \"SELECT key, x, z FROM c WHERE \\\"table\\\" = '{0}'\"\n\n\
             [stages.one_{0}]\nop = \"coordinated_sketch\"\nsource = \"only_{0}\"\nkey = \
             \"key\"\ncolumns = [\"x\", \"z\"]\nsize = 200\nseed = 9\nweights = \"uniform\"\n\n",
            p.name
        ));
    }
    run_ok(dir.path(), &text).await;
    use sketchpipe::operators::coordinated_sketch::{catalog, table};
    let mut seen = Vec::new();
    catalog::scan(
        &dir.path().join("out/cat/sketches.parquet"),
        |name, s, h| {
            let (alone, ah) =
                table::read(&dir.path().join(format!("out/one_{name}/sketch.parquet")))?;
            assert_eq!((&s, &h), (&alone, &ah), "table {name}");
            seen.push(name.to_string());
            Ok(())
        },
    )
    .unwrap();
    let names: Vec<String> = planted.iter().map(|p| p.name.clone()).collect();
    assert_eq!(seen, names);
}

#[tokio::test]
async fn a_key_repeated_within_a_table_is_refused_by_name_but_not_across_tables() {
    let dir = TempDir::new().unwrap();
    let batch = RecordBatch::try_from_iter([
        (
            "table",
            Arc::new(datafusion::arrow::array::StringArray::from(vec![
                "a", "b", "b", "a",
            ])) as _,
        ),
        ("key", Arc::new(Int64Array::from(vec![1, 1, 2, 3])) as _),
        (
            "x",
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])) as _,
        ),
        (
            "z",
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])) as _,
        ),
    ])
    .unwrap();
    std::fs::create_dir_all(dir.path().join("corpus")).unwrap();
    write_parquet(&dir.path().join("corpus/corpus.parquet"), &batch);
    write_parquet(&dir.path().join("corpus/query.parquet"), &batch);
    let text = format!("{SOURCES}{}", catalog_stage("cat", "exact", 1));
    run_ok(dir.path(), &text).await;
    // Now key 3 twice in table "a".
    let twice = RecordBatch::try_from_iter([
        (
            "table",
            Arc::new(datafusion::arrow::array::StringArray::from(vec![
                "a", "b", "a", "a",
            ])) as _,
        ),
        ("key", Arc::new(Int64Array::from(vec![1, 1, 3, 3])) as _),
        (
            "x",
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])) as _,
        ),
        (
            "z",
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])) as _,
        ),
    ])
    .unwrap();
    write_parquet(&dir.path().join("corpus/corpus.parquet"), &twice);
    let err = run_err(dir.path(), &text).await;
    assert!(
        err.contains("table \"a\"") && err.contains("= 3 appears on 2 rows"),
        "{err}"
    );
    // The previous catalog is untouched.
    assert!(dir.path().join("out/cat/sketches.parquet").exists());
    // Summed per table: table "a" has key 3 once, with x = 3 + 4; table "b" keeps key 1.
    run_ok(
        dir.path(),
        &text.replace(
            "weights = \"uniform\"\n",
            "weights = \"uniform\"\nduplicate_keys = \"sum\"\n",
        ),
    )
    .await;
    let mut rows = Vec::new();
    for (name, s) in read_catalog(dir.path(), "cat") {
        let StoredSketch::Sample(s) = s else {
            panic!("a sample")
        };
        for r in &s.rows {
            rows.push((name.clone(), r.key.to_string(), r.row.values[0]));
        }
    }
    assert_eq!(
        rows,
        vec![
            ("a".to_string(), "1".to_string(), 1.0),
            ("a".to_string(), "3".to_string(), 7.0),
            ("b".to_string(), "1".to_string(), 2.0),
        ]
    );
}

/// With exact sketches the search's correlations are the exact ones over each join, and the
/// ranking is by |correlation|; a sampled search keeps the tables it can estimate and ranks
/// the truly strongest near the top.
#[tokio::test]
async fn the_search_ranks_the_catalog_against_the_exact_joins() {
    let dir = TempDir::new().unwrap();
    corpus(dir.path(), 12, 1500);
    let text = format!(
        "{SOURCES}{}{}{}{}[stages.exact]\nop = \"sketch_search\"\nquery = \"qe\"\ncatalog = \
         \"ce\"\n\n[stages.sampled]\nop = \"sketch_search\"\nquery = \"qs\"\ncatalog = \"cs\"\n\
         min_join_size = 120\n",
        query_stage("qe", "exact", 4),
        catalog_stage("ce", "exact", 4),
        query_stage("qs", "priority", 4),
        catalog_stage("cs", "priority", 4),
    );
    run_ok(dir.path(), &text).await;
    // The truth, from the files.
    let q = read_parquet(&dir.path().join("corpus/query.parquet"));
    let c = read_parquet(&dir.path().join("corpus/corpus.parquet"));
    let y: std::collections::HashMap<i64, f64> = q
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .values()
        .iter()
        .copied()
        .zip(
            q.column(1)
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .copied(),
        )
        .collect();
    let mut pairs: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    let names = c.column(0).as_string::<i32>();
    let keys = c
        .column(1)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    let xs = c.column(2).as_primitive::<Float64Type>();
    for i in 0..c.num_rows() {
        if let Some(yv) = y.get(&keys.value(i)) {
            pairs
                .entry(names.value(i).to_string())
                .or_default()
                .push((*yv, xs.value(i)));
        }
    }
    let pearson = |v: &[(f64, f64)]| {
        let n = v.len() as f64;
        let (my, mx) = (
            v.iter().map(|p| p.0).sum::<f64>() / n,
            v.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let cov: f64 = v.iter().map(|p| (p.0 - my) * (p.1 - mx)).sum();
        let vy: f64 = v.iter().map(|p| (p.0 - my).powi(2)).sum();
        let vx: f64 = v.iter().map(|p| (p.1 - mx).powi(2)).sum();
        cov / (vx * vy).sqrt()
    };
    let exact = read_parquet(&dir.path().join("out/exact/ranking.parquet"));
    let col = |b: &RecordBatch, n: &str| b.column_by_name(n).unwrap().clone();
    let (tables, columns) = (col(&exact, "table"), col(&exact, "column"));
    let (tables, columns) = (tables.as_string::<i32>(), columns.as_string::<i32>());
    let corr = col(&exact, "correlation");
    let corr = corr.as_primitive::<Float64Type>();
    let size = col(&exact, "join_size");
    let size = size.as_primitive::<Float64Type>();
    assert_eq!(exact.num_rows(), 24, "12 tables × 2 columns");
    let mut last = f64::INFINITY;
    for i in 0..exact.num_rows() {
        assert!(
            corr.value(i).abs() <= last + 1e-15,
            "ranked by |correlation|"
        );
        last = corr.value(i).abs();
        if columns.value(i) == "x" {
            let truth = &pairs[tables.value(i)];
            assert_eq!(size.value(i), truth.len() as f64);
            assert!(
                (corr.value(i) - pearson(truth)).abs() < 1e-12,
                "{}",
                tables.value(i)
            );
        }
    }
    // The sampled search: tables whose join is estimated below 120 keys are left out, every
    // row has its interval, and the best of its top 3 is among the true top 5.
    let sampled = read_parquet(&dir.path().join("out/sampled/ranking.parquet"));
    let js = col(&sampled, "join_size");
    let js = js.as_primitive::<Float64Type>();
    assert!((0..sampled.num_rows()).all(|i| js.is_null(i) || js.value(i) >= 120.0));
    assert!(sampled.num_rows() < 24 && sampled.num_rows() > 0);
    let true_top: Vec<String> = (0..5).map(|i| tables.value(i).to_string()).collect();
    let s_tables = col(&sampled, "table");
    let s_tables = s_tables.as_string::<i32>();
    assert!(
        (0..3).any(|i| true_top.contains(&s_tables.value(i).to_string())),
        "{true_top:?}"
    );
}

#[tokio::test]
async fn a_search_refuses_other_seeds_and_ambiguous_queries_with_the_cause() {
    let dir = TempDir::new().unwrap();
    corpus(dir.path(), 3, 200);
    let base = format!(
        "{SOURCES}{}{}",
        query_stage("q1", "priority", 1),
        catalog_stage("c2", "priority", 2)
    );
    let err = run_err(
        dir.path(),
        &format!("{base}[stages.s]\nop = \"sketch_search\"\nquery = \"q1\"\ncatalog = \"c2\"\n"),
    )
    .await;
    assert!(err.contains("different seeds"), "{err}");
    let err = run_err(
        dir.path(),
        &format!("{base}[stages.s]\nop = \"sketch_search\"\nquery = \"c2\"\ncatalog = \"c2\"\n"),
    )
    .await;
    assert!(err.contains("holds 3 tables"), "{err}");
    let err = run_err(
        dir.path(),
        &format!(
            "{base}[stages.s]\nop = \"sketch_search\"\nquery = \"q1\"\ncatalog = \"c2\"\ntarget \
             = \"w\"\n"
        ),
    )
    .await;
    assert!(err.contains("no column `w`") && err.contains("y"), "{err}");
}

/// A corpus as one file per table (`table_from = "file"`) gives the catalog the same corpus
/// gives as one file with a table column; a file without a column read is refused by name, or
/// left out with `on_missing = "skip"` and a warning naming it.
#[tokio::test]
async fn a_directory_of_files_is_a_corpus_of_tables() {
    let dir = TempDir::new().unwrap();
    let planted = corpus(dir.path(), 4, 300);
    let all = read_parquet(&dir.path().join("corpus/corpus.parquet"));
    std::fs::create_dir(dir.path().join("files")).unwrap();
    let names = all.column(0).as_string::<i32>().clone();
    for p in &planted {
        let mask = datafusion::arrow::array::BooleanArray::from_iter(
            (0..all.num_rows()).map(|i| Some(names.value(i) == p.name)),
        );
        let part = datafusion::arrow::compute::filter_record_batch(&all, &mask).unwrap();
        let part = part.project(&[1, 2, 3]).unwrap();
        write_parquet(&dir.path().join(format!("files/{}.parquet", p.name)), &part);
    }
    let by_file = "[sources.f]\npath = \"files\"\n\n[stages.byfile]\nop = \"coordinated_sketch\"\n\
                   source = \"f\"\nkey = \"key\"\ncolumns = [\"x\", \"z\"]\ntable_from = \
                   \"file\"\nsize = 200\nseed = 9\nweights = \"uniform\"\n\n";
    let text = format!(
        "{SOURCES}{}{by_file}",
        catalog_stage("bycol", "priority", 9)
    );
    run_ok(dir.path(), &text).await;
    let read = |stage: &str| read_catalog(dir.path(), stage);
    let (a, b) = (read("bycol"), read("byfile"));
    assert_eq!(a.len(), 4);
    assert_eq!(a, b);
    // A file without `z`.
    let lacking = RecordBatch::try_from_iter([
        ("key", Arc::new(Int64Array::from(vec![1, 2])) as _),
        ("x", Arc::new(Float64Array::from(vec![1.0, 2.0])) as _),
    ])
    .unwrap();
    write_parquet(&dir.path().join("files/odd.parquet"), &lacking);
    let err = run_err(dir.path(), &format!("{SOURCES}{by_file}")).await;
    assert!(
        err.contains("odd.parquet") && err.contains("no column `z`"),
        "{err}"
    );
    let skip = by_file.replace("table_from", "on_missing = \"skip\"\ntable_from");
    let file = dir.path().join("pipeline.toml");
    std::fs::write(
        &file,
        format!("[pipeline]\noutput_dir = \"out\"\n{SOURCES}{skip}"),
    )
    .unwrap();
    let o = sketchpipe(&["--log-format", "json", "run", file.to_str().unwrap()]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("\"files_skipped\"") && err.contains("odd.parquet"),
        "{err}"
    );
    assert_eq!(read("byfile"), b);
}

/// An incremental catalog (new files merged into the last run's, table by table) equals the
/// catalog of one full run; a key repeated within a table across increments is refused, the
/// same key in another table is not.
#[tokio::test]
async fn an_incremental_catalog_equals_a_full_run() {
    let dir = TempDir::new().unwrap();
    corpus(dir.path(), 5, 400);
    let all = read_parquet(&dir.path().join("corpus/corpus.parquet"));
    std::fs::create_dir(dir.path().join("parts")).unwrap();
    let half = all.num_rows() / 2;
    let (first, second) = (all.slice(0, half), all.slice(half, all.num_rows() - half));
    write_parquet(&dir.path().join("parts/a.parquet"), &first);
    let stage = |name: &str, incremental: bool| {
        format!(
            "[sources.p]\npath = \"parts\"\n\n[stages.{name}]\nop = \"coordinated_sketch\"\n\
             source = \"p\"\nkey = \"key\"\ncolumns = [\"x\", \"z\"]\ntable_column = \"table\"\n\
             size = 100\nseed = 5\nweights = \"uniform\"\nincremental = {incremental}\n"
        )
    };
    run_ok(dir.path(), &stage("cat", true)).await;
    write_parquet(&dir.path().join("parts/b.parquet"), &second);
    run_ok(dir.path(), &stage("cat", true)).await;
    run_ok(dir.path(), &stage("full", false)).await;
    let read = |stage: &str| read_catalog(dir.path(), stage);
    let (inc, full) = (read("cat"), read("full"));
    assert_eq!(inc.len(), 5);
    for ((ni, si), (nf, sf)) in inc.iter().zip(&full) {
        assert_eq!(ni, nf);
        let (StoredSketch::Sample(a), StoredSketch::Sample(b)) = (si, sf) else {
            panic!("samples")
        };
        // The same kept rows and τ; ‖A‖_F² summed in another order.
        assert_eq!(a.rows, b.rows, "{ni}");
        assert_eq!((a.level, a.rows_seen), (b.level, b.rows_seen), "{ni}");
        assert!(
            (a.frobenius_sq - b.frobenius_sq).abs() <= 1e-12 * b.frobenius_sq,
            "{ni}"
        );
    }
    // A third file: a key of table t00 again (refused), and the same key under another name.
    let names = all.column(0).as_string::<i32>();
    let keys = all
        .column(1)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    let i = (0..all.num_rows())
        .find(|&i| names.value(i) == "t00")
        .unwrap();
    let again = |table: &str| {
        RecordBatch::try_new(
            all.schema(),
            vec![
                Arc::new(datafusion::arrow::array::StringArray::from(vec![table])),
                Arc::new(Int64Array::from(vec![keys.value(i)])),
                Arc::new(Float64Array::from(vec![1.0])),
                Arc::new(Float64Array::from(vec![1.0])),
            ],
        )
        .unwrap()
    };
    write_parquet(&dir.path().join("parts/c.parquet"), &again("t00"));
    let err = run_err(dir.path(), &stage("cat", true)).await;
    assert!(
        err.contains("table \"t00\"")
            && err.contains(&format!("= {} appears on 2 rows", keys.value(i))),
        "{err}"
    );
    write_parquet(&dir.path().join("parts/c.parquet"), &again("elsewhere"));
    run_ok(dir.path(), &stage("cat", true)).await;
    assert_eq!(read("cat").len(), 6);
}

/// Catalogs of disjoint parts of a corpus (days, partitions) merge table by table in SQL with
/// `sketch_merge`, into the catalog of the whole.
#[tokio::test]
async fn catalogs_of_parts_merge_in_sql_into_the_whole() {
    use sketchpipe::operators::coordinated_sketch::{catalog, table};
    let dir = TempDir::new().unwrap();
    corpus(dir.path(), 4, 300);
    let all = read_parquet(&dir.path().join("corpus/corpus.parquet"));
    let half = all.num_rows() / 2;
    for (name, part) in [
        ("one", all.slice(0, half)),
        ("two", all.slice(half, all.num_rows() - half)),
    ] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        write_parquet(&dir.path().join(format!("{name}/part.parquet")), &part);
    }
    let stage = |name: &str, path: &str| {
        format!(
            "[sources.{name}]\npath = \"{path}\"\n\n[stages.{name}]\nop = \"coordinated_sketch\"\n\
             source = \"{name}\"\nkey = \"key\"\ncolumns = [\"x\", \"z\"]\ntable_column = \
             \"table\"\nsize = 80\nseed = 2\nweights = \"uniform\"\n\n"
        )
    };
    let text = format!(
        "{}{}{}",
        stage("one", "one"),
        stage("two", "two"),
        stage("whole", "corpus/corpus.parquet")
    );
    run_ok(dir.path(), &text).await;
    let out = dir.path().join("out");
    let sql = format!(
        "SELECT \"table\", sketch_merge(sketch) AS sketch FROM (SELECT * FROM '{0}/one/sketches.parquet' \
         UNION ALL SELECT * FROM '{0}/two/sketches.parquet') GROUP BY \"table\" ORDER BY \"table\"",
        out.display()
    );
    let batches = collect_sql(&session(), &sql).await;
    let mut merged = Vec::new();
    for b in &batches {
        let names = b.column(0).as_string_view_opt().map(|a| {
            (0..a.len())
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        });
        let names = names.unwrap_or_else(|| {
            let a = b.column(0).as_string::<i32>();
            (0..a.len()).map(|i| a.value(i).to_string()).collect()
        });
        let sketches = b.column(1).as_binary::<i32>();
        for (i, name) in names.into_iter().enumerate() {
            merged.push((
                name,
                table::from_bytes(sketches.value(i), "merged").unwrap().0,
            ));
        }
    }
    let mut whole = Vec::new();
    catalog::scan(&out.join("whole/sketches.parquet"), |name, s, _| {
        whole.push((name.to_string(), s));
        Ok(())
    })
    .unwrap();
    assert_eq!(merged.len(), 4);
    for ((nm, m), (nw, w)) in merged.iter().zip(&whole) {
        assert_eq!(nm, nw);
        let (StoredSketch::Sample(m), StoredSketch::Sample(w)) = (m, w) else {
            panic!("samples")
        };
        assert_eq!(
            (&m.rows, m.level, m.rows_seen),
            (&w.rows, w.level, w.rows_seen),
            "{nm}"
        );
    }
}
