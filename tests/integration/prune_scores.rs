//! `op = "prune_scores"` end to end through the library: scores against their definitions,
//! by-id averaging independent of file order, the masks' exact sizes, bad inputs, and proxy
//! mode finding injected label noise.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::{auroc, read_parquet, run_err, run_ok, write_parquet};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int32Type, Int64Type, Schema, UInt32Type, UInt64Type,
};
use sketchpipe::generate::{Classification, Logits};
use sketchpipe::progress::ProgressMode;
use sketchpipe::prune::{el2n, softmax_into, Target};
use tempfile::TempDir;

/// One row of a `scores` table.
#[derive(Debug, Clone, PartialEq)]
struct Score {
    id: i64,
    label: i64,
    el2n: f64,
    el2n_std: Option<f64>,
    grand: Option<f64>,
    runs: u32,
    rank: u64,
    keep: bool,
}

fn read_scores(stage: &Path) -> Vec<Score> {
    let b = read_parquet(&stage.join("scores.parquet"));
    let col = |n: &str| b.column_by_name(n).unwrap().clone();
    let id = datafusion::arrow::compute::cast(&col("id"), &DataType::Int64).unwrap();
    let label = datafusion::arrow::compute::cast(&col("label"), &DataType::Int64).unwrap();
    let (id, label) = (
        id.as_primitive::<Int64Type>(),
        label.as_primitive::<Int64Type>(),
    );
    let (e, es, g) = (col("el2n"), col("el2n_std"), col("grand"));
    let (e, es, g) = (
        e.as_primitive::<Float64Type>(),
        es.as_primitive::<Float64Type>(),
        g.as_primitive::<Float64Type>(),
    );
    let (runs, rank, keep) = (col("runs"), col("rank"), col("keep"));
    let (runs, rank, keep) = (
        runs.as_primitive::<UInt32Type>(),
        rank.as_primitive::<UInt64Type>(),
        keep.as_boolean(),
    );
    (0..b.num_rows())
        .map(|i| Score {
            id: id.value(i),
            label: label.value(i),
            el2n: e.value(i),
            el2n_std: (!es.is_null(i)).then(|| es.value(i)),
            grand: (!g.is_null(i)).then(|| g.value(i)),
            runs: runs.value(i),
            rank: rank.value(i),
            keep: keep.value(i),
        })
        .collect()
}

fn stat(stage: &Path, column: &str) -> u64 {
    let b = read_parquet(&stage.join("stats.parquet"));
    let c = datafusion::arrow::compute::cast(b.column_by_name(column).unwrap(), &DataType::UInt64)
        .unwrap();
    c.as_primitive::<UInt64Type>().value(0)
}

/// `generate logits` into `dir/runs`: `run-R.parquet` with id, run, label, logits, noisy.
fn logits(dir: &Path, rows: u64, classes: usize, runs: usize) -> PathBuf {
    let out = dir.join("runs");
    Logits {
        rows,
        classes,
        runs,
        noise: 0.1,
        sigma: 1.0,
        seed: 5,
    }
    .write(&out, ProgressMode::Quiet)
    .unwrap();
    out
}

/// Every run file's rows, concatenated.
fn all_rows(runs_dir: &Path) -> RecordBatch {
    let mut files: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let batches: Vec<RecordBatch> = files.iter().map(|f| read_parquet(f)).collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn logits_of(b: &RecordBatch, i: usize) -> Vec<f64> {
    let l = b
        .column_by_name("logits")
        .unwrap()
        .as_list::<i32>()
        .value(i);
    l.as_primitive::<Float32Type>()
        .values()
        .iter()
        .map(|v| *v as f64)
        .collect()
}

const SCORES: &str = r#"
[sources.runs]
path = "runs"
[stages.s]
op = "prune_scores"
source = "runs"
id = "id"
logits = "logits"
run = "run"
"#;

#[tokio::test]
async fn el2n_is_the_mean_over_runs_by_id_whatever_the_file_order() {
    let tmp = TempDir::new().unwrap();
    let runs_dir = logits(tmp.path(), 600, 4, 3);
    run_ok(tmp.path(), SCORES).await;
    let scores = read_scores(&tmp.path().join("out/s"));
    assert_eq!(scores.len(), 600);

    // Against the definition: the mean over the id's runs of ‖softmax(z) − e_y‖.
    let rows = all_rows(&runs_dir);
    let ids = rows
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let labels = rows
        .column_by_name("label")
        .unwrap()
        .as_primitive::<Int32Type>();
    let mut per_id = vec![Vec::new(); 600];
    let mut p = Vec::new();
    for i in 0..rows.num_rows() {
        softmax_into(&logits_of(&rows, i), &mut p).unwrap();
        let e = el2n(&p, Target::Class(labels.value(i) as i64)).unwrap();
        per_id[ids.value(i) as usize].push(e);
    }
    for (rank, s) in scores.iter().enumerate() {
        let es = &per_id[s.id as usize];
        let mean = es.iter().sum::<f64>() / es.len() as f64;
        assert!(
            (s.el2n - mean).abs() < 1e-12,
            "id {}: {} vs {mean}",
            s.id,
            s.el2n
        );
        let var = es.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (es.len() - 1) as f64;
        assert!((s.el2n_std.unwrap() - var.sqrt()).abs() < 1e-12);
        assert!((0.0..=2f64.sqrt()).contains(&s.el2n));
        assert_eq!(
            (s.runs, s.rank, s.keep, s.grand),
            (3, rank as u64, true, None)
        );
    }
    // Ranked ascending by score, ties by id.
    assert!(scores
        .windows(2)
        .all(|w| (w[0].el2n, w[0].id) < (w[1].el2n, w[1].id)));

    // The same rows in other orders and other files: bit-identical scores.
    let other = TempDir::new().unwrap();
    std::fs::create_dir(other.path().join("runs")).unwrap();
    let n = rows.num_rows();
    let shuffled: Vec<u32> = (0..n as u32).map(|i| (i * 7919 + 13) % n as u32).collect();
    let shuffled = RecordBatch::try_new(
        rows.schema(),
        rows.columns()
            .iter()
            .map(|c| {
                take(
                    c,
                    &datafusion::arrow::array::UInt32Array::from(shuffled.clone()),
                    None,
                )
                .unwrap()
            })
            .collect(),
    )
    .unwrap();
    for (k, start) in [0, n / 5, n / 2].iter().enumerate() {
        let end = [n / 5, n / 2, n][k];
        write_parquet(
            &other.path().join(format!("runs/part-{k}.parquet")),
            &shuffled.slice(*start, end - start),
        );
    }
    run_ok(other.path(), SCORES).await;
    assert_eq!(read_scores(&other.path().join("out/s")), scores);
}

/// Replaces the `logits` column of `b` with `f(logits of row i)` as `List<Float64>` named
/// `name`, keeping the other columns.
fn with_list(b: &RecordBatch, name: &str, f: impl Fn(usize, Vec<f64>) -> Vec<f64>) -> RecordBatch {
    let mut values = Vec::new();
    let mut lengths = Vec::new();
    for i in 0..b.num_rows() {
        let v = f(i, logits_of(b, i));
        lengths.push(v.len());
        values.extend(v);
    }
    let item = Arc::new(Field::new("item", DataType::Float64, true));
    let list: ArrayRef = Arc::new(ListArray::new(
        item.clone(),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(Float64Array::from(values)),
        None,
    ));
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if f.name() != "logits" {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    fields.push(Field::new(name, DataType::List(item), true));
    columns.push(list);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

#[tokio::test]
async fn probabilities_and_embeddings_give_the_same_el2n_and_the_closed_form_grand() {
    let tmp = TempDir::new().unwrap();
    let runs_dir = logits(tmp.path(), 300, 3, 2);
    let rows = all_rows(&runs_dir);
    std::fs::create_dir(tmp.path().join("probs")).unwrap();
    let probs = with_list(&rows, "probs", |_, z| {
        let mut p = Vec::new();
        softmax_into(&z, &mut p).unwrap();
        p
    });
    // An embedding h with ‖h‖² = id (so GraNd = EL2N · sqrt(id + 1)), plus the logits back.
    let ids = rows
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let h = with_list(&rows, "h", |i, _| vec![(ids.value(i) as f64).sqrt(), 0.0]);
    let mut fields: Vec<Field> = probs
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = probs.columns().to_vec();
    for (batch, name) in [(&h, "h"), (&rows, "logits")] {
        fields.push(batch.schema().field_with_name(name).unwrap().clone());
        columns.push(batch.column_by_name(name).unwrap().clone());
    }
    let all = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    write_parquet(&tmp.path().join("probs/all.parquet"), &all);
    run_ok(
        tmp.path(),
        r#"
[sources.all]
path = "probs"
[stages.from_logits]
op = "prune_scores"
source = "all"
id = "id"
logits = "logits"
run = "run"
embedding = "h"
score = "grand"
[stages.from_probs]
op = "prune_scores"
source = "all"
id = "id"
probs = "probs"
run = "run"
"#,
    )
    .await;
    let mut a = read_scores(&tmp.path().join("out/from_logits"));
    let mut b = read_scores(&tmp.path().join("out/from_probs"));
    a.sort_by_key(|s| s.id);
    b.sort_by_key(|s| s.id);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.id, y.id);
        assert!((x.el2n - y.el2n).abs() < 1e-12);
        // Each run's GraNd is EL2N · sqrt(‖h‖² + 1), h the same in every run.
        let want = x.el2n * ((x.id as f64) + 1.0).sqrt();
        assert!(
            (x.grand.unwrap() - want).abs() < 1e-9 * want.max(1.0),
            "id {}",
            x.id
        );
    }
    // Ranked by GraNd when asked.
    let ranked: Vec<i64> = read_scores(&tmp.path().join("out/from_logits"))
        .iter()
        .map(|s| s.id)
        .collect();
    let mut by_grand = a.clone();
    by_grand.sort_by(|x, y| {
        x.grand
            .unwrap()
            .total_cmp(&y.grand.unwrap())
            .then(x.id.cmp(&y.id))
    });
    assert_eq!(ranked, by_grand.iter().map(|s| s.id).collect::<Vec<_>>());
}

fn mask_stage(name: &str, keep: &str, mode: &str) -> String {
    format!(
        "[stages.{name}]\nop = \"prune_scores\"\nsource = \"runs\"\nid = \"id\"\nlogits = \"logits\"\nrun = \"run\"\n{keep}\nmode = \"{mode}\"\n"
    )
}

#[tokio::test]
async fn masks_keep_exactly_the_requested_ids() {
    let tmp = TempDir::new().unwrap();
    logits(tmp.path(), 1000, 5, 2);
    let text = format!(
        "[sources.runs]\npath = \"runs\"\n{}{}{}{}{}{}",
        mask_stage("max", "keep_count = 300", "keep_max"),
        mask_stage("off", "keep_count = 300\noffset = 50", "offset"),
        mask_stage("bal", "keep_fraction = 0.37", "class_balanced"),
        mask_stage("rnd", "keep_fraction = 0.3", "random"),
        mask_stage("rnd2", "keep_fraction = 0.3", "random"),
        mask_stage("rnd3", "keep_fraction = 0.3\nseed = 7", "random"),
    );
    run_ok(tmp.path(), &text).await;
    let out = tmp.path().join("out");
    let kept = |stage: &str| -> Vec<Score> {
        read_scores(&out.join(stage))
            .into_iter()
            .filter(|s| s.keep)
            .collect()
    };
    // keep_max: the 300 highest ranks.
    let max = kept("max");
    assert_eq!(max.len(), 300);
    assert!(max.iter().all(|s| s.rank >= 700));
    assert_eq!(stat(&out.join("max"), "kept"), 300);
    // offset: skip the 50 highest, keep the next 300.
    let off = kept("off");
    assert_eq!(off.len(), 300);
    assert!(off.iter().all(|s| (650..950).contains(&s.rank)));
    // class_balanced: 370 in all, each class its proportional share (within one), the
    // hardest of each class.
    let all = read_scores(&out.join("bal"));
    let bal: Vec<&Score> = all.iter().filter(|s| s.keep).collect();
    assert_eq!(bal.len(), 370);
    for class in 0..5 {
        let members: Vec<&Score> = all.iter().filter(|s| s.label == class).collect();
        let kept_c: Vec<&&Score> = bal.iter().filter(|s| s.label == class).collect();
        let share = 370.0 * members.len() as f64 / 1000.0;
        assert!(
            (kept_c.len() as f64 - share).abs() < 1.0,
            "class {class}: {} vs {share}",
            kept_c.len()
        );
        let lowest_kept = kept_c.iter().map(|s| s.rank).min().unwrap();
        let dropped_max = members
            .iter()
            .filter(|s| !s.keep)
            .map(|s| s.rank)
            .max()
            .unwrap();
        assert!(
            dropped_max < lowest_kept,
            "class {class} kept a lower score than it dropped"
        );
    }
    // random: exact size, reproducible with the same seed, another subset with another, and
    // not concentrated on the hardest ids.
    let ids = |v: &[Score]| {
        let mut ids: Vec<i64> = v.iter().map(|s| s.id).collect();
        ids.sort();
        ids
    };
    let (r1, r2, r3) = (kept("rnd"), kept("rnd2"), kept("rnd3"));
    assert_eq!(r1.len(), 300);
    assert_eq!(ids(&r1), ids(&r2));
    assert_ne!(ids(&r1), ids(&r3));
    let mean_rank = r1.iter().map(|s| s.rank as f64).sum::<f64>() / 300.0;
    assert!((mean_rank - 499.5).abs() < 60.0, "mean rank {mean_rank}");
}

/// Writes `batch` as the only file of `dir/bad` and runs a prune stage over it.
async fn run_bad(batch: &RecordBatch, stage_keys: &str) -> String {
    let tmp = TempDir::new().unwrap();
    std::fs::create_dir(tmp.path().join("bad")).unwrap();
    write_parquet(&tmp.path().join("bad/x.parquet"), batch);
    let err = run_err(
        tmp.path(),
        &format!(
            "[sources.bad]\npath = \"bad\"\n[stages.s]\nop = \"prune_scores\"\nsource = \"bad\"\nid = \"id\"\n{stage_keys}\n"
        ),
    )
    .await;
    assert!(
        !tmp.path().join("out/s").exists(),
        "a failed stage left an output behind"
    );
    err
}

fn outputs(ids: &[i64], runs: &[i32], labels: &[i32], logits: &[Vec<f64>]) -> RecordBatch {
    let lengths: Vec<usize> = logits.iter().map(Vec::len).collect();
    let values: Vec<f64> = logits.iter().flatten().copied().collect();
    let item = Arc::new(Field::new("item", DataType::Float64, true));
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("run", DataType::Int32, false),
        Field::new("label", DataType::Int32, false),
        Field::new("logits", DataType::List(item.clone()), true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(Int32Array::from(runs.to_vec())),
            Arc::new(Int32Array::from(labels.to_vec())),
            Arc::new(ListArray::new(
                item,
                OffsetBuffer::from_lengths(lengths),
                Arc::new(Float64Array::from(values)),
                None,
            )),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn bad_outputs_and_labels_are_rejected_with_the_reason() {
    let z = vec![0.5, -0.5, 1.0];
    let keys = "logits = \"logits\"\nrun = \"run\"";
    // A label outside [0, K).
    let err = run_bad(
        &outputs(&[1, 2], &[0, 0], &[0, 3], &[z.clone(), z.clone()]),
        keys,
    )
    .await;
    assert!(err.contains("label 3 is outside [0, 3)"), "{err}");
    // A NaN logit.
    let nan = vec![0.5, f64::NAN, 1.0];
    let err = run_bad(&outputs(&[1, 2], &[0, 0], &[0, 1], &[z.clone(), nan]), keys).await;
    assert!(err.contains("NaN"), "{err}");
    // Rows with different numbers of classes.
    let err = run_bad(
        &outputs(&[1, 2], &[0, 0], &[0, 1], &[z.clone(), vec![0.1, 0.2]]),
        keys,
    )
    .await;
    assert!(err.contains("different numbers of classes"), "{err}");
    assert!(
        err.contains("id 1 has 2") || err.contains("id 2 has 2"),
        "{err}"
    );
    // `classes` stated and wrong.
    let err = run_bad(
        &outputs(&[1, 2], &[0, 0], &[0, 1], &[z.clone(), z.clone()]),
        &format!("{keys}\nclasses = 4"),
    )
    .await;
    assert!(err.contains("classes = 4"), "{err}");
    // No label column.
    let err = run_bad(
        &outputs(&[1, 2], &[0, 0], &[0, 1], &[z.clone(), z.clone()]),
        &format!("{keys}\nlabel = \"target\""),
    )
    .await;
    assert!(err.contains("target"), "{err}");
    // The same id twice without a run column.
    let err = run_bad(
        &outputs(&[1, 1], &[0, 1], &[0, 0], &[z.clone(), z.clone()]),
        "logits = \"logits\"",
    )
    .await;
    assert!(err.contains("id 1 appears 2 times"), "{err}");
    // An (id, run) pair twice.
    let err = run_bad(
        &outputs(
            &[1, 1, 2],
            &[0, 0, 0],
            &[0, 0, 1],
            &[z.clone(), z.clone(), z.clone()],
        ),
        keys,
    )
    .await;
    assert!(err.contains("id 1 has 2 rows over 1"), "{err}");
    // Runs that disagree on a label.
    let err = run_bad(
        &outputs(&[1, 1], &[0, 1], &[0, 2], &[z.clone(), z.clone()]),
        keys,
    )
    .await;
    assert!(err.contains("id 1 has different labels"), "{err}");
    // Keeping more than there is.
    let err = run_bad(
        &outputs(&[1, 2], &[0, 0], &[0, 1], &[z.clone(), z.clone()]),
        &format!("{keys}\nkeep_count = 3"),
    )
    .await;
    assert!(err.contains("keep_count = 3 exceeds the 2 ids"), "{err}");
}

#[tokio::test]
async fn ids_missing_from_some_runs_are_an_error_unless_the_stage_accepts_them() {
    let z = vec![0.5, -0.5];
    let batch = outputs(
        &[1, 2, 3, 1, 2],
        &[0, 0, 0, 1, 1],
        &[0, 1, 1, 0, 1],
        &vec![z; 5],
    );
    let err = run_bad(&batch, "logits = \"logits\"\nrun = \"run\"").await;
    assert!(
        err.contains("1 of 3 ids are missing from some of the 2 runs (e.g. id 3 is in 1)"),
        "{err}"
    );
    assert!(err.contains("average-available"), "{err}");

    let tmp = TempDir::new().unwrap();
    std::fs::create_dir(tmp.path().join("in")).unwrap();
    write_parquet(&tmp.path().join("in/x.parquet"), &batch);
    run_ok(
        tmp.path(),
        "[sources.x]\npath = \"in\"\n[stages.s]\nop = \"prune_scores\"\nsource = \"x\"\nid = \"id\"\nlogits = \"logits\"\nrun = \"run\"\nmissing_runs = \"average-available\"\n",
    )
    .await;
    let stage = tmp.path().join("out/s");
    let mut runs: Vec<(i64, u32)> = read_scores(&stage).iter().map(|s| (s.id, s.runs)).collect();
    runs.sort();
    assert_eq!(runs, vec![(1, 2), (2, 2), (3, 1)]);
    assert_eq!(stat(&stage, "ids_missing_runs"), 1);
    assert_eq!(stat(&stage, "runs"), 2);
}

/// Proxy mode on `generate classification` with 10 % flipped labels: EL2N (and GraNd) rank the
/// flipped rows high.
#[tokio::test]
async fn proxy_mode_finds_flipped_labels() {
    let tmp = TempDir::new().unwrap();
    Classification {
        rows: 4000,
        dim: 16,
        classes: 4,
        noise: 0.1,
        separation: 3.0,
        seed: 3,
    }
    .write(&tmp.path().join("cls.parquet"), ProgressMode::Quiet)
    .unwrap();
    let stage = |name: &str, hidden: &str| {
        format!(
            "[stages.{name}]\nop = \"prune_scores\"\nsource = \"cls\"\nid = \"id\"\nfeatures = [\"features\"]\nkeep_fraction = 0.5\n[stages.{name}.proxy]\nepochs = 3\nseeds = 3\n{hidden}\n"
        )
    };
    run_ok(
        tmp.path(),
        &format!(
            "[sources.cls]\npath = \"cls.parquet\"\n{}{}",
            stage("logistic", ""),
            stage("mlp", "hidden = 16")
        ),
    )
    .await;
    let data = read_parquet(&tmp.path().join("cls.parquet"));
    let noisy = data.column_by_name("noisy").unwrap().as_boolean();
    let data_ids = data
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let mut flag = vec![false; 4000];
    for i in 0..data.num_rows() {
        flag[data_ids.value(i) as usize] = noisy.value(i);
    }
    for model in ["logistic", "mlp"] {
        let dir = tmp.path().join("out").join(model);
        let scores = read_scores(&dir);
        assert_eq!(scores.len(), 4000);
        assert_eq!(scores.iter().filter(|s| s.keep).count(), 2000);
        assert!(scores.iter().all(|s| s.runs == 3 && s.grand.is_some()));
        let mut by_el2n: Vec<(f64, bool)> = scores
            .iter()
            .map(|s| (s.el2n, flag[s.id as usize]))
            .collect();
        let mut by_grand: Vec<(f64, bool)> = scores
            .iter()
            .map(|s| (s.grand.unwrap(), flag[s.id as usize]))
            .collect();
        let (a, g) = (auroc(&mut by_el2n), auroc(&mut by_grand));
        println!("proxy {model}: AUROC EL2N {a:.4}, GraNd {g:.4}");
        assert!(a >= 0.9, "{model}: EL2N AUROC {a}");
        // The training table: one row per seed and epoch, loss going down.
        let t = read_parquet(&dir.join("training.parquet"));
        assert_eq!(t.num_rows(), 9);
        let loss = t
            .column_by_name("loss")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert!(loss.value(6) < loss.value(0), "{model}: loss did not fall");
    }
}

/// The by-id group-by spills to disk under a small memory limit and gives the same scores.
#[tokio::test]
async fn averaging_spills_under_a_small_memory_limit_with_the_same_answer() {
    let tmp = TempDir::new().unwrap();
    logits(tmp.path(), 200_000, 4, 2);
    let with_memory = |memory: &str| format!("memory = \"{memory}\"\n{SCORES}");
    run_ok(tmp.path(), &with_memory("64MiB")).await;
    let small = read_scores(&tmp.path().join("out/s"));
    let spilled = stat(&tmp.path().join("out/s"), "spilled_bytes");
    run_ok(tmp.path(), &with_memory("4GiB")).await;
    let large = read_scores(&tmp.path().join("out/s"));
    assert!(spilled > 0, "nothing spilled at 64MiB");
    assert_eq!(stat(&tmp.path().join("out/s"), "spilled_bytes"), 0);
    assert_eq!(small.len(), 200_000);
    assert!(small == large, "spilled and in-memory scores differ");
}

#[tokio::test]
async fn a_stage_names_exactly_one_kind_of_input() {
    let tmp = TempDir::new().unwrap();
    logits(tmp.path(), 10, 3, 1);
    let err = run_err(
        tmp.path(),
        "[sources.runs]\npath = \"runs\"\n[stages.s]\nop = \"prune_scores\"\nsource = \"runs\"\nid = \"id\"\nlogits = \"logits\"\nprobs = \"logits\"\n",
    )
    .await;
    assert!(
        err.contains(
            "key `probs`: give exactly one of `logits`, `probs` (logged model outputs) or \
             `features` (train a proxy model); got logits and probs"
        ),
        "{err}"
    );
}
