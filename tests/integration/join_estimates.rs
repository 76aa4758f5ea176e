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
