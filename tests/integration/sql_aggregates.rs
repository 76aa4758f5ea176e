//! The SQL aggregates `top_eigenvector`, `top_eigenvector_stats`, `priority_sketch`,
//! `sketch_merge` and the scalar `sketch_product`: against known answers, the same as the
//! pipeline stages, and partition-parallel (several files scanned by 4 partitions, partial
//! states merged) equal to one partition — exactly for the priority sample, to rounding for
//! the exact Gram, within its bound for Frequent Directions.

use std::path::Path;

use crate::common::*;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, UInt64Type};
use datafusion::prelude::{SessionConfig, SessionContext};
use sketchpipe::operators::coordinated_sketch::{table, StoredSketch};
use sketchpipe::sketch::Sample;
use tempfile::TempDir;

const D: usize = 8;

/// `dir/t/part-{0..3}.parquet`: the rows of a known spectrum split over four files.
fn data(dir: &Path) -> KnownSpectrum {
    let known = KnownSpectrum::new(D, 50, 11);
    known.write_parts(&dir.join("t"), 4);
    known
}

async fn ctx(dir: &Path, partitions: usize) -> SessionContext {
    let ctx =
        SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
    sketchpipe::udf::register(&ctx);
    ctx.register_parquet("t", &format!("{}/t/", dir.display()), Default::default())
        .await
        .unwrap();
    ctx
}

async fn query(ctx: &SessionContext, sql: &str) -> RecordBatch {
    let batches = collect_sql(ctx, sql).await;
    let schema = batches[0].schema();
    datafusion::arrow::compute::concat_batches(&schema, &batches).unwrap()
}

async fn query_err(ctx: &SessionContext, sql: &str) -> String {
    let result = match ctx.sql(sql).await {
        Ok(frame) => frame.collect().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => panic!("{sql} should have failed"),
        Err(e) => e.to_string(),
    }
}

fn vector(b: &RecordBatch, column: usize, row: usize) -> Vec<f64> {
    b.column(column)
        .as_list::<i32>()
        .value(row)
        .as_primitive::<Float64Type>()
        .values()
        .to_vec()
}

fn sample(b: &RecordBatch, row: usize) -> Sample {
    let bytes = b.column(0).as_binary::<i32>().value(row).to_vec();
    match table::from_bytes(&bytes, "test").unwrap().0 {
        StoredSketch::Sample(s) => s,
        StoredSketch::Linear(_) => panic!("a priority sketch is a sample"),
    }
}

/// Whether the plan really aggregates in partial states merged at the end.
async fn runs_partitioned(ctx: &SessionContext, sql: &str) -> bool {
    let plan = query(ctx, &format!("EXPLAIN {sql}")).await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&[plan])
        .unwrap()
        .to_string();
    text.contains("mode=Partial") && text.contains("file_groups={4 groups")
}

#[tokio::test]
async fn top_eigenvector_exact_is_the_known_eigenvector_on_one_or_four_partitions() {
    let tmp = TempDir::new().unwrap();
    let known = data(tmp.path());
    let sql = "SELECT top_eigenvector(emb), top_eigenvector_stats(emb) FROM t";
    let mut results = Vec::new();
    for partitions in [1, 4] {
        let ctx = ctx(tmp.path(), partitions).await;
        if partitions == 4 {
            assert!(runs_partitioned(&ctx, sql).await, "not partition-parallel");
        }
        let b = query(&ctx, sql).await;
        let v = vector(&b, 0, 0);
        assert!(
            alignment(&v, &known.v1) > 1.0 - 1e-10,
            "{partitions}: {v:?}"
        );
        let stats = b.column(1).as_struct();
        let eigenvalue = stats
            .column_by_name("eigenvalue")
            .unwrap()
            .as_primitive::<Float64Type>()
            .value(0);
        assert!((eigenvalue - 10.0).abs() < 1e-9, "{eigenvalue}");
        let rows = stats
            .column_by_name("rows")
            .unwrap()
            .as_primitive::<UInt64Type>()
            .value(0);
        assert_eq!(rows, known.n() as u64);
        results.push((v, eigenvalue));
    }
    // The Gram matrices are summed in a different order: equal to rounding.
    let (a, b) = (&results[0], &results[1]);
    assert!(a.0.iter().zip(&b.0).all(|(x, y)| (x - y).abs() < 1e-10));
    assert!((a.1 - b.1).abs() < 1e-10 * a.1);
}

#[tokio::test]
async fn frequent_directions_in_sql_stays_within_its_bound_when_merged() {
    let tmp = TempDir::new().unwrap();
    let known = data(tmp.path());
    let sql = "SELECT top_eigenvector(emb, 'frequent-directions', 0, 4), \
               top_eigenvector_stats(emb, 'frequent-directions', 0, 4) FROM t";
    for partitions in [1, 4] {
        let ctx = ctx(tmp.path(), partitions).await;
        let b = query(&ctx, sql).await;
        let stats = b.column(1).as_struct();
        let get = |c: &str| {
            stats
                .column_by_name(c)
                .unwrap()
                .as_primitive::<Float64Type>()
                .value(0)
        };
        let (eigenvalue, bound) = (get("eigenvalue"), get("error_bound"));
        // FD's guarantee: σ₁² − Δ ≤ σ₁(B)² ≤ σ₁², whatever the merge tree.
        // One partition keeps its rows' Gram matrix (the Gram route at this small d) and does
        // not shrink; partitions hand over states of ℓ rows, which shrink.
        assert!(partitions == 1 || bound > 0.0, "ell = 4 < d must shrink");
        assert!(
            eigenvalue <= 10.0 + 1e-9 && eigenvalue >= 10.0 - bound - 1e-9,
            "{partitions} partitions: {eigenvalue} outside [10 − {bound}, 10]"
        );
        let v = vector(&b, 0, 0);
        assert!(alignment(&v, &known.v1) > 0.9, "{partitions}");
    }
}

#[tokio::test]
async fn group_by_gives_one_vector_per_group_equal_to_filtering_that_group() {
    let tmp = TempDir::new().unwrap();
    data(tmp.path());
    let ctx = ctx(tmp.path(), 4).await;
    let grouped = query(
        &ctx,
        "SELECT id % 3 AS g, top_eigenvector(emb) AS v FROM t GROUP BY id % 3 ORDER BY g",
    )
    .await;
    assert_eq!(grouped.num_rows(), 3);
    for g in 0..3 {
        let alone = query(
            &ctx,
            &format!("SELECT top_eigenvector(emb) FROM t WHERE id % 3 = {g}"),
        )
        .await;
        let (a, b) = (vector(&grouped, 1, g), vector(&alone, 0, 0));
        assert!(alignment(&a, &b) > 1.0 - 1e-10, "group {g}");
    }
}

#[tokio::test]
async fn priority_sketch_is_identical_on_one_or_four_partitions_and_to_the_stage() {
    let tmp = TempDir::new().unwrap();
    data(tmp.path());
    let sql = "SELECT priority_sketch(id, emb, 50, 7) FROM t";
    let mut samples = Vec::new();
    for partitions in [1, 4] {
        let ctx = ctx(tmp.path(), partitions).await;
        if partitions == 4 {
            assert!(runs_partitioned(&ctx, sql).await, "not partition-parallel");
        }
        samples.push(sample(&query(&ctx, sql).await, 0));
    }
    let (one, four) = (&samples[0], &samples[1]);
    assert_eq!(one.rows.len(), 50);
    assert_eq!(one.rows, four.rows, "kept rows differ");
    assert_eq!(one.level.to_bits(), four.level.to_bits(), "τ differs");
    assert!((one.frobenius_sq - four.frobenius_sq).abs() < 1e-12 * one.frobenius_sq);

    // The coordinated_sketch stage on the same rows keeps the same rows and τ.
    run_ok(
        tmp.path(),
        "[sources.t]\npath = \"t\"\n[stages.s]\nop = \"coordinated_sketch\"\nsource = \"t\"\n\
         key = \"id\"\ncolumns = [\"emb\"]\nsize = 50\nseed = 7\n",
    )
    .await;
    let (stage, _) = table::read(&tmp.path().join("out/s/sketch.parquet")).unwrap();
    let StoredSketch::Sample(stage) = stage else {
        panic!("a sample")
    };
    assert_eq!(stage.rows, one.rows);
    assert_eq!(stage.level.to_bits(), one.level.to_bits());
}

#[tokio::test]
async fn sketch_merge_of_daily_sketches_equals_one_sketch_and_products_are_exact_when_all_rows_are_kept(
) {
    let tmp = TempDir::new().unwrap();
    let known = data(tmp.path());
    let ctx = ctx(tmp.path(), 4).await;
    let merged = query(
        &ctx,
        "SELECT sketch_merge(s) FROM \
         (SELECT id % 5 AS day, priority_sketch(id, emb, 40, 3) AS s FROM t GROUP BY id % 5)",
    )
    .await;
    let one = query(&ctx, "SELECT priority_sketch(id, emb, 40, 3) FROM t").await;
    let (m, o) = (sample(&merged, 0), sample(&one, 0));
    assert_eq!(m.rows, o.rows);
    assert_eq!(m.level.to_bits(), o.level.to_bits());

    // k above n keeps every row: the product is AᵀA exactly (to rounding).
    let b = query(
        &ctx,
        "WITH s AS (SELECT priority_sketch(id, emb, 100000, 1) AS s FROM t) \
         SELECT sketch_product(s, s) FROM s",
    )
    .await;
    let matrix = b.column(0).as_list::<i32>().value(0);
    let matrix = matrix.as_list::<i32>();
    assert_eq!(matrix.len(), D);
    let n = known.n();
    for i in 0..D {
        let row = matrix.value(i);
        let row = row.as_primitive::<Float64Type>();
        assert_eq!(row.len(), D);
        for j in 0..D {
            let exact: f64 = (0..n)
                .map(|r| known.rows[r * D + i] * known.rows[r * D + j])
                .sum();
            assert!((row.value(j) - exact).abs() < 1e-9, "({i}, {j})");
        }
    }
}

/// `coordinated_sketch` for the methods that merge: one partition or four, or one sketch per
/// group merged by `sketch_merge`, give the stage's sketch — the same rows for `exact` and
/// `priority`, the same matrix to rounding for the linear sketches (parts' sketches add up).
#[tokio::test]
async fn coordinated_sketch_of_every_mergeable_method_is_the_stages_on_one_or_four_partitions() {
    let tmp = TempDir::new().unwrap();
    data(tmp.path());
    let mut stages = String::from("[sources.t]\npath = \"t\"\n");
    for (method, size) in [
        ("exact", 1),
        ("jl", 12),
        ("countsketch", 12),
        ("priority", 25),
    ] {
        // `exact` keeps every row: the stage takes no size (the function ignores it).
        let size = match method {
            "exact" => String::new(),
            _ => format!("size = {size}\n"),
        };
        stages.push_str(&format!(
            "[stages.{method}]\nop = \"coordinated_sketch\"\nsource = \"t\"\nkey = \"id\"\n\
             columns = [\"emb\"]\nmethod = \"{method}\"\n{size}seed = 9\n"
        ));
    }
    run_ok(tmp.path(), &stages).await;
    for (method, size) in [
        ("exact", 1),
        ("jl", 12),
        ("countsketch", 12),
        ("priority", 25),
    ] {
        let (stage, _) =
            table::read(&tmp.path().join(format!("out/{method}/sketch.parquet"))).unwrap();
        let sql = format!("SELECT coordinated_sketch(id, emb, '{method}', {size}, 9) FROM t");
        // Also: one sketch per "day" (GROUP BY), merged.
        let days = format!(
            "SELECT sketch_merge(s) FROM (SELECT id % 4 AS day, \
             coordinated_sketch(id, emb, '{method}', {size}, 9) AS s FROM t GROUP BY id % 4)"
        );
        for (partitions, sql) in [(1, &sql), (4, &sql), (4, &days)] {
            let ctx = ctx(tmp.path(), partitions).await;
            if partitions == 4 {
                assert!(runs_partitioned(&ctx, sql).await, "not partition-parallel");
            }
            let b = query(&ctx, sql).await;
            let bytes = b.column(0).as_binary::<i32>().value(0);
            let (got, _) = table::from_bytes(bytes, "the query's sketch").unwrap();
            match (&stage, &got) {
                (StoredSketch::Sample(a), StoredSketch::Sample(b)) => {
                    assert_eq!(a.rows, b.rows, "{method}, {partitions} partition(s)");
                    assert_eq!(a.level.to_bits(), b.level.to_bits(), "{method}");
                }
                (StoredSketch::Linear(a), StoredSketch::Linear(b)) => {
                    assert_eq!((a.t, a.dim, a.rows_seen), (b.t, b.dim, b.rows_seen));
                    let scale = a.s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    assert!(scale > 0.0);
                    for (x, y) in a.s.iter().zip(&b.s) {
                        assert!((x - y).abs() <= 1e-12 * scale, "{method}: {x} vs {y}");
                    }
                }
                _ => panic!("{method}: a different kind of sketch"),
            }
        }
    }
}

#[tokio::test]
async fn sql_refusals_are_clear() {
    let tmp = TempDir::new().unwrap();
    data(tmp.path());
    let ctx = ctx(tmp.path(), 2).await;
    let e = query_err(&ctx, "SELECT top_eigenvector(emb, 'random-order') FROM t").await;
    assert!(
        e.contains("cannot run as an SQL aggregate") && e.contains("pipeline stage"),
        "{e}"
    );
    let e = query_err(&ctx, "SELECT top_eigenvector(emb, 'power') FROM t").await;
    assert!(e.contains("unknown algorithm 'power'"), "{e}");
    let e = query_err(
        &ctx,
        "SELECT sketch_product(a, b) FROM \
         (SELECT priority_sketch(id, emb, 10, 1) AS a, priority_sketch(id, emb, 10, 2) AS b FROM t)",
    )
    .await;
    assert!(
        e.contains("different seeds") && e.contains("1") && e.contains("2"),
        "{e}"
    );
    let e = query_err(&ctx, "SELECT priority_sketch(id % 3, emb, 1000, 1) FROM t").await;
    assert!(
        e.contains("appears in more than one row") || e.contains("more than one of the merged"),
        "{e}"
    );
    let e = query_err(&ctx, "SELECT priority_sketch(id, emb, 0, 1) FROM t").await;
    assert!(e.contains("k must be at least 1"), "{e}");
    let e = query_err(
        &ctx,
        "SELECT coordinated_sketch(id, emb, 'threshold', 10, 1) FROM t",
    )
    .await;
    assert!(
        e.contains("do not merge") && e.contains("'priority'"),
        "{e}"
    );
    let e = query_err(
        &ctx,
        "SELECT coordinated_sketch(id, emb, 'svd', 10, 1) FROM t",
    )
    .await;
    assert!(e.contains("unknown method 'svd'"), "{e}");
    let e = query_err(
        &ctx,
        "SELECT coordinated_sketch(id, emb, 'jl', 10, 1, 6) FROM t",
    )
    .await;
    assert!(e.contains("dim applies to a sparse"), "{e}");
    let e = query_err(
        &ctx,
        "SELECT coordinated_sketch(id, emb, 'jl', 0, 1) FROM t",
    )
    .await;
    assert!(e.contains("size must be at least 1"), "{e}");
}

/// Every function, one partition against four: the same printed result (row functions and
/// the priority sketches exactly; the exact eigenvector is compared to rounding above).
#[tokio::test]
async fn every_function_gives_the_same_answer_on_one_or_four_partitions() {
    let tmp = TempDir::new().unwrap();
    data(tmp.path());
    let queries = [
        "SELECT id, el2n(emb, id % 8) AS e, grand(emb, id % 8, emb) AS g, uniform_hash(id, 3) AS u, \
         list_mean(emb) AS m, list_stddev(emb) AS s FROM t ORDER BY id",
        "WITH s AS (SELECT priority_sketch(id, emb, 30, 5) AS s FROM t) \
         SELECT sketch_product(s, s) AS w FROM s",
        "WITH d AS (SELECT id % 4 AS day, priority_sketch(id, emb, 30, 5) AS s FROM t GROUP BY id % 4) \
         SELECT sketch_product(m, m) AS w FROM (SELECT sketch_merge(s) AS m FROM d)",
        "SELECT id % 2 AS g, top_eigenvector_stats(emb, 'frequent-directions', 0, 8)['rows'] AS n \
         FROM t GROUP BY id % 2 ORDER BY g",
    ];
    for sql in queries {
        let mut printed = Vec::new();
        for partitions in [1, 4] {
            let ctx = ctx(tmp.path(), partitions).await;
            let b = query(&ctx, sql).await;
            printed.push(
                datafusion::arrow::util::pretty::pretty_format_batches(&[b])
                    .unwrap()
                    .to_string(),
            );
        }
        assert!(printed[0].lines().count() > 3, "{sql}: {}", printed[0]);
        assert_eq!(printed[0], printed[1], "{sql}");
    }
}
