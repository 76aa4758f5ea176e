//! The pruning report: a small version of Paul, Ganguli, Dziugaite (arXiv:2107.07075, §4) on
//! tabular data with injected label noise.
//!
//! `cargo bench --bench prune_report`. Generates `generate classification` data
//! (`SKETCHPIPE_REPORT_ROWS` training rows, default 20 000, plus half as many held out; 32
//! features, 10 classes, 10 % flipped labels) and runs one pipeline over the training rows
//! whose `prune_scores` stages (proxy mode: 5 logistic regressions, 5 epochs) keep 50 % with
//! `keep_max`, `offset` (skipping the 10 % highest), `class_balanced` and `random`. Then, for
//! each kept half and for all rows, it trains a fresh logistic regression (`SKETCHPIPE_REPORT_SEEDS`
//! seeds, default 3, 10 epochs of minibatch SGD) and prints its accuracy on the held-out rows
//! whose labels were not flipped — with how many flipped rows each mask kept, and the AUROC of
//! EL2N, GraNd and a random score at finding the flipped rows.

mod common;

use std::path::Path;

use common::env_or;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sketchpipe::generate::Classification;
use sketchpipe::pipeline::{self, PipelineSpec, RunOptions};
use sketchpipe::progress::ProgressMode;
use sketchpipe::prune::proxy::{Proxy, Scratch};
use sketchpipe::prune::{auroc, Target};
use sketchpipe::rows::{DenseRowReader, OnInvalid};

/// Rows of one query: standardised later; `(features row-major, labels, flipped)`.
struct Rows {
    x: Vec<f64>,
    y: Vec<i64>,
    noisy: Vec<bool>,
    d: usize,
}

async fn rows(ctx: &datafusion::prelude::SessionContext, query: &str) -> Rows {
    let batches: Vec<RecordBatch> = ctx.sql(query).await.unwrap().collect().await.unwrap();
    let mut out = Rows {
        x: Vec::new(),
        y: Vec::new(),
        noisy: Vec::new(),
        d: 0,
    };
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let mut reader =
            DenseRowReader::new(&b.schema(), &["features".to_string()], OnInvalid::Error).unwrap();
        let dense = reader.read(b).unwrap();
        out.d = dense.dim;
        out.x.extend_from_slice(dense.values);
        let y =
            datafusion::arrow::compute::cast(b.column_by_name("label").unwrap(), &DataType::Int64)
                .unwrap();
        out.y.extend(y.as_primitive::<Int64Type>().values().iter());
        out.noisy.extend(
            b.column_by_name("noisy")
                .unwrap()
                .as_boolean()
                .iter()
                .map(|v| v.unwrap()),
        );
    }
    out
}

/// Trains a logistic regression on `train` and returns its accuracy on `test`.
fn accuracy(train: &Rows, test: &Rows, classes: usize, seed: u64) -> f64 {
    let d = train.d;
    let mut model = Proxy::new(d, classes, None, seed).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut s, mut grad) = (Scratch::default(), Vec::new());
    let mut order: Vec<usize> = (0..train.y.len()).collect();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        order.shuffle(&mut rng);
        for chunk in order.chunks(32) {
            xs.clear();
            ys.clear();
            for &i in chunk {
                xs.extend_from_slice(&train.x[i * d..(i + 1) * d]);
                ys.push(Target::Class(train.y[i]));
            }
            model.sgd_step(&xs, &ys, 0.05, &mut s, &mut grad).unwrap();
        }
    }
    let right = (0..test.y.len())
        .filter(|&i| {
            model.predict(&test.x[i * d..(i + 1) * d], &mut s).unwrap() as i64 == test.y[i]
        })
        .count();
    right as f64 / test.y.len() as f64
}

const MODES: [(&str, &str); 4] = [
    ("keep_max", "mode = \"keep_max\""),
    ("offset", "mode = \"offset\"\noffset = OFFSET"),
    ("class_balanced", "mode = \"class_balanced\""),
    ("random", "mode = \"random\""),
];

fn pipeline_text(data: &Path, out: &Path, n: u64) -> String {
    let mut text = format!(
        "[pipeline]\noutput_dir = \"{}\"\n[sources.all]\npath = \"{}\"\n[sources.train]\nsql = \"SELECT * FROM all WHERE id < {n}\"\n",
        out.display(),
        data.display()
    );
    for (name, mode) in MODES {
        text.push_str(&format!(
            "[stages.{name}]\nop = \"prune_scores\"\nsource = \"train\"\nid = \"id\"\nfeatures = [\"features\"]\nkeep_fraction = 0.5\n{}\n[stages.{name}.proxy]\nepochs = 5\nseeds = 5\n",
            mode.replace("OFFSET", &(n / 10).to_string())
        ));
    }
    text
}

fn main() {
    let n: u64 = env_or("SKETCHPIPE_REPORT_ROWS", 20_000);
    let seeds: u64 = env_or("SKETCHPIPE_REPORT_SEEDS", 3);
    let classes = 10;
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("classification.parquet");
    Classification {
        rows: n + n / 2,
        dim: 32,
        classes,
        noise: 0.1,
        separation: 3.0,
        seed: 7,
    }
    .write(&data, ProgressMode::Quiet)
    .unwrap();
    let out = tmp.path().join("out");
    let file = tmp.path().join("report.toml");
    std::fs::write(&file, pipeline_text(&data, &out, n)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let spec = PipelineSpec::load(&file, &[]).unwrap();
        let opts = RunOptions {
            progress: ProgressMode::Quiet,
            ..Default::default()
        };
        pipeline::run(&spec, &opts).await.unwrap();
        let ctx = pipeline::source::session();
        ctx.register_parquet("all", data.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        for (name, _) in MODES {
            let path = out.join(name).join("scores.parquet");
            ctx.register_parquet(name, path.to_str().unwrap(), Default::default())
                .await
                .unwrap();
        }
        let mut test = rows(&ctx, &format!("SELECT features, label, noisy FROM all WHERE id >= {n} AND NOT noisy")).await;
        let mut train_all = rows(&ctx, &format!("SELECT features, label, noisy FROM all WHERE id < {n}")).await;
        // Standardise with the training rows' statistics, as the proxy does.
        let d = train_all.d;
        let m = train_all.y.len() as f64;
        let mean: Vec<f64> = (0..d)
            .map(|j| train_all.x.iter().skip(j).step_by(d).sum::<f64>() / m)
            .collect();
        let sd: Vec<f64> = (0..d)
            .map(|j| {
                let v = train_all.x.iter().skip(j).step_by(d).map(|x| (x - mean[j]).powi(2)).sum::<f64>() / m;
                v.sqrt().max(1e-12)
            })
            .collect();
        let standardise = |r: &mut Rows| {
            for row in r.x.chunks_exact_mut(d) {
                for j in 0..d {
                    row[j] = (row[j] - mean[j]) / sd[j];
                }
            }
        };
        standardise(&mut test);
        standardise(&mut train_all);

        // Noise detection.
        let scores = ctx
            .sql(
                "SELECT s.el2n, s.grand, uniform_hash(s.id, 1) AS random, a.noisy \
                 FROM keep_max s JOIN all a ON s.id = a.id",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut cols: [Vec<(f64, bool)>; 3] = Default::default();
        for b in &scores {
            let noisy = b.column(3).as_boolean();
            for (c, col) in cols.iter_mut().enumerate() {
                let v = b.column(c).as_primitive::<Float64Type>();
                col.extend((0..b.num_rows()).map(|i| (v.value(i), noisy.value(i))));
            }
        }
        let flipped = cols[0].iter().filter(|p| p.1).count();
        println!(
            "noise detection on {n} training rows ({flipped} flipped labels), proxy = 5 logistic regressions × 5 epochs:"
        );
        for (name, col) in ["EL2N", "GraNd", "random"].iter().zip(cols.iter_mut()) {
            println!("  AUROC {name:<7} {:.4}", auroc(col));
        }

        println!(
            "\nheld-out accuracy (clean test rows: {}) of a logistic regression trained on the kept rows, mean of {seeds} seeds:",
            test.y.len()
        );
        println!("  {:<16} {:>6} {:>8} {:>9}", "mask", "kept", "flipped", "accuracy");
        let mean_acc = |train: &Rows| (0..seeds).map(|s| accuracy(train, &test, classes, s)).sum::<f64>() / seeds as f64;
        let all_flipped = train_all.noisy.iter().filter(|v| **v).count();
        println!("  {:<16} {:>6} {:>8} {:>9.4}", "all rows", train_all.y.len(), all_flipped, mean_acc(&train_all));
        for (name, _) in MODES {
            let mut kept = rows(
                &ctx,
                &format!("SELECT a.features, a.label, a.noisy FROM all a JOIN {name} s ON a.id = s.id WHERE s.keep ORDER BY a.id"),
            )
            .await;
            standardise(&mut kept);
            let f = kept.noisy.iter().filter(|v| **v).count();
            println!("  {:<16} {:>6} {:>8} {:>9.4}", name, kept.y.len(), f, mean_acc(&kept));
        }
    });
}
