//! The SQL functions `el2n` and `grand` against their definitions, through a real session
//! over a Parquet file (as `sketchpipe sql` and pipeline `sql` sources run them).

use std::sync::Arc;

use crate::common::*;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, ListArray, RecordBatch};
use datafusion::arrow::datatypes::{Float32Type, Float64Type};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sketchpipe::pipeline::source::session;
use tempfile::TempDir;

/// Naive reference: softmax without tricks (small logits), then the Euclidean distance.
fn reference(z: &[f64], target: &[f64]) -> f64 {
    let e: Vec<f64> = z.iter().map(|v| v.exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter()
        .zip(target)
        .map(|(p, t)| (p / s - t).powi(2))
        .sum::<f64>()
        .sqrt()
}

struct Data {
    logits: Vec<Vec<f64>>,
    labels: Vec<i32>,
    soft: Vec<Vec<f64>>,
    h: Vec<Vec<f64>>,
}

fn write(dir: &std::path::Path, rows: usize, k: usize) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let logits: Vec<Vec<f64>> = (0..rows)
        .map(|_| (0..k).map(|_| rng.random_range(-4.0..4.0)).collect())
        .collect();
    let labels: Vec<i32> = (0..rows).map(|_| rng.random_range(0..k as i32)).collect();
    let soft: Vec<Vec<f64>> = (0..rows)
        .map(|_| {
            let w: Vec<f64> = (0..k).map(|_| rng.random_range(0.0..1.0)).collect();
            let s: f64 = w.iter().sum();
            w.iter().map(|v| v / s).collect()
        })
        .collect();
    let h: Vec<Vec<f64>> = (0..rows)
        .map(|_| (0..3).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let list64 = |v: &Vec<Vec<f64>>| -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(
            v.iter()
                .map(|r| Some(r.iter().map(|x| Some(*x)).collect::<Vec<_>>())),
        ))
    };
    // Logits as f32 lists (the common storage), converted by the function.
    let logits32: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(
        logits
            .iter()
            .map(|r| Some(r.iter().map(|x| Some(*x as f32)).collect::<Vec<_>>())),
    ));
    let batch = RecordBatch::try_from_iter([
        ("logits", logits32),
        (
            "label",
            Arc::new(Int32Array::from(labels.clone())) as ArrayRef,
        ),
        ("soft", list64(&soft)),
        ("h", list64(&h)),
    ])
    .unwrap();
    write_parquet(&dir.join("runs.parquet"), &batch);
    // The reference sees the same f32-rounded logits.
    let logits = logits
        .iter()
        .map(|r| r.iter().map(|x| *x as f32 as f64).collect())
        .collect();
    Data {
        logits,
        labels,
        soft,
        h,
    }
}

async fn column(sql: &str) -> Result<Vec<Option<f64>>, String> {
    let ctx = session();
    let batches = ctx
        .sql(sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(batches
        .iter()
        .flat_map(|b| {
            let c = b.column(0).as_primitive::<Float64Type>().clone();
            (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| c.value(i)))
                .collect::<Vec<_>>()
        })
        .collect())
}

#[tokio::test]
async fn el2n_and_grand_match_their_definitions() {
    let tmp = TempDir::new().unwrap();
    let k = 5;
    let data = write(tmp.path(), 300, k);
    let file = tmp.path().join("runs.parquet");
    let from = format!("FROM '{}'", file.display());
    let hard = column(&format!("SELECT el2n(logits, label) {from}"))
        .await
        .unwrap();
    let soft = column(&format!("SELECT el2n(logits, soft) {from}"))
        .await
        .unwrap();
    let grand = column(&format!("SELECT grand(logits, label, h) {from}"))
        .await
        .unwrap();
    for i in 0..data.labels.len() {
        let mut onehot = vec![0.0; k];
        onehot[data.labels[i] as usize] = 1.0;
        let e = reference(&data.logits[i], &onehot);
        assert!((hard[i].unwrap() - e).abs() < 1e-12, "row {i}");
        assert!((0.0..=2f64.sqrt()).contains(&hard[i].unwrap()));
        assert!((soft[i].unwrap() - reference(&data.logits[i], &data.soft[i])).abs() < 1e-12);
        let h_sq: f64 = data.h[i].iter().map(|v| v * v).sum();
        assert!((grand[i].unwrap() - e * (h_sq + 1.0).sqrt()).abs() < 1e-12);
    }
    // The docs' aggregate example shape: GROUP BY over the score.
    let by_label = column(&format!(
        "SELECT avg(el2n(logits, label)) {from} GROUP BY label ORDER BY label"
    ))
    .await
    .unwrap();
    assert_eq!(by_label.len(), k);
}

#[tokio::test]
async fn bad_arguments_fail_with_the_reason_and_nulls_stay_null() {
    let tmp = TempDir::new().unwrap();
    write(tmp.path(), 10, 3);
    let from = format!("FROM '{}'", tmp.path().join("runs.parquet").display());
    let err = column(&format!("SELECT el2n(logits, label + 3) {from}"))
        .await
        .unwrap_err();
    assert!(
        err.contains("el2n: row 0") && err.contains("outside [0, 3)"),
        "{err}"
    );
    let err = column(&format!("SELECT el2n(label, logits) {from}"))
        .await
        .unwrap_err();
    assert!(err.contains("expected el2n(logits"), "{err}");
    let err = column(&format!("SELECT el2n(logits, h) {from}"))
        .await
        .unwrap_err();
    assert!(err.contains("label distribution: entry"), "{err}");
    let err = column(&format!("SELECT el2n(logits, make_array(0.5, 0.5)) {from}"))
        .await
        .unwrap_err();
    assert!(
        err.contains("the label has 2 entries but the output has 3 classes"),
        "{err}"
    );
    let err = column("SELECT el2n([1.0, 'NaN'::double], 0)")
        .await
        .unwrap_err();
    assert!(err.contains("NaN"), "{err}");
    let nulls = column("SELECT el2n(NULL::double[], 0)").await;
    match nulls {
        Ok(v) => assert_eq!(v, vec![None]),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_readme_example_gives_the_numbers_it_shows() {
    // The same statement as the README's SQL example, through the real binary and
    // without a pipeline: `sql` needs no outputs for functions and quoted files.
    let out = sketchpipe(&[
        "sql",
        "--format",
        "csv",
        "SELECT el2n(make_array(2.0, 0.5, -1.0), 0) AS el2n, grand(make_array(2.0, 0.5, -1.0), 0, make_array(0.3, 0.4)) AS grand",
    ]);
    assert_ok(&out);
    let text = stdout(&out);
    let values: Vec<f64> = text
        .lines()
        .last()
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    // ‖softmax(2, 0.5, −1) − e₀‖ = 0.2797…, then × sqrt(0.3² + 0.4² + 1) for GraNd.
    let e = reference(&[2.0, 0.5, -1.0], &[1.0, 0.0, 0.0]);
    assert!((values[0] - e).abs() < 1e-12, "{text}");
    assert!((values[1] - e * 1.25f64.sqrt()).abs() < 1e-12, "{text}");
    // The digits the README shows.
    assert_eq!(format!("{:.4}", values[0]), "0.2797");
    assert_eq!(format!("{:.4}", values[1]), "0.3127");
}

#[test]
fn sql_joins_a_raw_file_with_stage_outputs_in_one_statement() {
    let tmp = TempDir::new().unwrap();
    let known = KnownSpectrum::new(3, 5, 1);
    write_parquet(&tmp.path().join("a.parquet"), &known.batch(0..known.n()));
    let file = write_pipeline(
        tmp.path(),
        "[pipeline]\noutput_dir = \"out\"\n[sources.a]\npath = \"a.parquet\"\n\
         [stages.top]\nop = \"top_eigenvector\"\nsource = \"a\"\ncolumns = [\"emb\"]\nalgorithm = \"exact\"\n",
    );
    assert_ok(&sketchpipe(&["-q", "run", file.to_str().unwrap()]));
    // Rows whose id matches a component number, next to that component of the eigenvector.
    let raw = tmp.path().join("a.parquet");
    let query = format!(
        "SELECT count(*) AS n FROM '{}' r JOIN top.vector v ON r.id = v.component",
        raw.display()
    );
    let out = sketchpipe(&[
        "sql",
        "--format",
        "csv",
        "--pipeline",
        file.to_str().unwrap(),
        &query,
    ]);
    assert_ok(&out);
    assert_eq!(stdout(&out).lines().last(), Some("3"), "{}", stdout(&out));
    // Without outputs the error says why a stage table is missing.
    let out = sketchpipe(&["sql", "SELECT * FROM top.vector"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no --pipeline or --dir given"),
        "{}",
        stderr(&out)
    );
}

/// A session with table `runs`: `sketchpipe generate logits` (noise 0.1) with `args`, under
/// `tmp`.
async fn generated_runs(tmp: &TempDir, args: &[&str]) -> datafusion::prelude::SessionContext {
    let dir = tmp.path().join("runs");
    let mut command = vec!["-q", "generate", "logits", "--noise", "0.1"];
    command.extend_from_slice(args);
    command.extend(["--out", dir.to_str().unwrap()]);
    assert_ok(&sketchpipe(&command));
    let ctx = session();
    let glob = format!("{}/run-*.parquet", dir.display());
    ctx.register_parquet("runs", &glob, Default::default())
        .await
        .unwrap();
    ctx
}

#[tokio::test]
async fn el2n_averaged_by_id_over_generated_runs_finds_the_flipped_labels() {
    let tmp = TempDir::new().unwrap();
    let ctx = generated_runs(&tmp, &["--rows", "3000", "--classes", "5", "--runs", "3"]).await;
    // Runs come in different row orders: the first ids differ between files.
    let firsts = ctx
        .sql("SELECT first_value(id) FROM runs GROUP BY run")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let firsts: Vec<i64> = firsts
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(firsts.len(), 3);
    assert!(firsts.windows(2).any(|w| w[0] != w[1]), "{firsts:?}");
    // Average by id (never by position), then rank.
    let batches = ctx
        .sql(
            "SELECT avg(el2n(logits, label)) AS el2n, bool_and(noisy) AS noisy, count(*) AS runs \
             FROM runs GROUP BY id",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut pairs = Vec::new();
    for b in &batches {
        let e = b.column(0).as_primitive::<Float64Type>();
        let noisy = b.column(1).as_boolean();
        let runs = b
            .column(2)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            assert_eq!(runs.value(i), 3);
            pairs.push((e.value(i), noisy.value(i)));
        }
    }
    assert_eq!(pairs.len(), 3000);
    let flipped = pairs.iter().filter(|p| p.1).count();
    assert!(
        (200..400).contains(&flipped),
        "{flipped} flipped of 3000 at 10 %"
    );
    let a = auroc(&mut pairs);
    println!("EL2N averaged over 3 runs: AUROC {a:.4} for {flipped} flipped labels");
    assert!(a >= 0.9, "AUROC {a}");
}

/// `run_stats(score, run)` by id over generated runs equals what it replaces in the
/// `prune_scores` query — `list_mean`/`list_stddev` of `array_agg` and `count(DISTINCT run)`
/// — to the bit, with string runs, and counts rows and scores.
#[tokio::test]
async fn run_stats_equals_the_list_aggregates_it_replaces() {
    let tmp = TempDir::new().unwrap();
    let ctx = generated_runs(&tmp, &["--rows", "5000", "--runs", "4"]).await;
    // Drop a quarter of one run's rows and name runs by strings.
    let rows = "SELECT id, 'r' || CAST(run AS VARCHAR) AS run, el2n(logits, label) AS e \
                FROM runs WHERE NOT (run = 1 AND id % 4 = 0)";
    let query = format!(
        "SELECT id, s['mean'] = m AS mean_ok, s['std'] IS NOT DISTINCT FROM sd AS std_ok, \
         s['runs'] = r AS runs_ok, s['rows'] = n AND s['scored'] = n AS counts_ok, r FROM ( \
         SELECT id, run_stats(e, run) AS s, list_mean(array_agg(e)) AS m, \
         list_stddev(array_agg(e)) AS sd, count(DISTINCT run) AS r, count(*) AS n \
         FROM ({rows}) GROUP BY id)"
    );
    let batches = ctx.sql(&query).await.unwrap().collect().await.unwrap();
    let (mut ids, mut short) = (0, 0);
    for b in &batches {
        for c in 1..5 {
            let ok = b.column(c).as_boolean();
            assert_eq!(ok.true_count(), b.num_rows(), "column {c} of {b:?}");
        }
        let r = b
            .column(5)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        short += r.values().iter().filter(|&&r| r == 3).count();
        ids += b.num_rows();
    }
    assert_eq!((ids, short), (5000, 1250));
}
