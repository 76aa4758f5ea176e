//! `op = "pca"` and `op = "project"` end to end: against scikit-learn's `PCA` on real tables
//! (the reference made by `tests/reference/pca_sklearn.py`), on generated rows with a known
//! spectrum and a large mean, projections against the written tables, bad inputs refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::*;
use datafusion::arrow::array::{
    ArrayRef, AsArray, Float64Array, Int64Array, ListArray, RecordBatch,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, UInt32Type};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde_json::Value;
use tempfile::TempDir;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Float64 column of a stage's table.
pub(crate) fn column(stage: &Path, table: &str, name: &str) -> Vec<f64> {
    let b = read_parquet(&stage.join(format!("{table}.parquet")));
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("{table}.{name}"))
        .as_primitive::<Float64Type>()
        .values()
        .to_vec()
}

/// The `components` table as `k` vectors.
pub(crate) fn components(stage: &Path) -> Vec<Vec<f64>> {
    let b = read_parquet(&stage.join("components.parquet"));
    let pc = b.column_by_name("pc").unwrap().as_primitive::<UInt32Type>();
    let value = b
        .column_by_name("value")
        .unwrap()
        .as_primitive::<Float64Type>();
    let mut out: Vec<Vec<f64>> = Vec::new();
    for i in 0..b.num_rows() {
        let p = pc.value(i) as usize;
        if out.len() <= p {
            out.push(Vec::new());
        }
        out[p].push(value.value(i));
    }
    out
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn toml_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Exact PCA agrees with scikit-learn to 1e-9 (components up to sign, explained variance and
/// its ratio, mean, scale), centred and scaled, on three real tables with their own column
/// scales; Frequent Directions' eigenvalues are within its stated bound of the exact ones.
#[test]
fn exact_matches_scikit_learn_on_real_tables() {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/reference/pca_sklearn.json")).unwrap(),
    )
    .unwrap();
    let tmp = TempDir::new().unwrap();
    let mut text = String::from("[pipeline]\noutput_dir = \"out\"\n");
    let tables = reference.as_object().unwrap();
    for (name, table) in tables {
        let path = repo().join(format!("data/real/{name}.parquet"));
        text += &format!(
            "[sources.{name}]\npath = {:?}\n",
            path.display().to_string()
        );
        for (run, r) in table["runs"].as_object().unwrap() {
            let cols: Vec<String> = r["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            let scale = run == "scaled";
            for (suffix, extra) in [
                ("", ""),
                ("_fd", "algorithm = \"frequent-directions\"\nell = 12\n"),
            ] {
                text += &format!(
                    "[stages.{name}_{run}{suffix}]\nop = \"pca\"\nsource = \"{name}\"\ncolumns = {}\n\
                     components = 5\nscale = {scale}\n{extra}",
                    toml_list(&cols)
                );
            }
        }
    }
    let file = write_pipeline(tmp.path(), &text);
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap(), "--quiet"]));
    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "{what}: {a} vs {b}"
        );
    };
    for (name, table) in tables {
        for (run, r) in table["runs"].as_object().unwrap() {
            let stage = tmp.path().join(format!("out/{name}_{run}"));
            let what = format!("{name} {run}");
            let want = r["components"].as_array().unwrap();
            let got = components(&stage);
            assert_eq!(got.len(), 5, "{what}");
            for (p, (g, w)) in got.iter().zip(want).enumerate() {
                let w = floats(w);
                let sign = if g.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() < 0.0 {
                    -1.0
                } else {
                    1.0
                };
                for (a, b) in g.iter().zip(&w) {
                    assert!((sign * a - b).abs() <= 1e-9, "{what} pc {p}: {a} vs {b}");
                }
            }
            for (key, table_col) in [
                ("explained_variance", "explained_variance"),
                ("explained_variance_ratio", "explained_variance_ratio"),
            ] {
                let got = column(&stage, "spectrum", table_col);
                for (a, b) in got.iter().zip(floats(&r[key])) {
                    close(*a, b, &format!("{what} {key}"));
                }
            }
            for (a, b) in column(&stage, "mean", "value")
                .iter()
                .zip(floats(&r["mean"]))
            {
                close(*a, b, &format!("{what} mean"));
            }
            if run == "scaled" {
                for (a, b) in column(&stage, "scale", "value")
                    .iter()
                    .zip(floats(&r["scale"]))
                {
                    close(*a, b, &format!("{what} scale"));
                }
            }
            // Frequent Directions: below the exact eigenvalues by at most its bound.
            let fd = tmp.path().join(format!("out/{name}_{run}_fd"));
            let exact = column(&stage, "spectrum", "eigenvalue");
            let sketched = column(&fd, "spectrum", "eigenvalue");
            let bound = column(&fd, "spectrum", "error_bound")[0];
            for (e, f) in exact.iter().zip(&sketched) {
                assert!(
                    *f <= e * (1.0 + 1e-9) && e - f <= bound * (1.0 + 1e-9) + 1e-9 * e.max(1.0),
                    "{what} fd: {f} vs {e} (Δ {bound})"
                );
            }
            assert_eq!(column(&stage, "spectrum", "error_bound"), vec![0.0; 5]);
        }
    }
}

/// `n` rows `μ + Σ_j sqrt(λ_j) z_j e_j` rotated by a Householder reflection, as a list column
/// `emb` with an `id`: the centred covariance's top eigenvector is the reflected `e_0`, and the
/// mean (large, and not along it) dominates the uncentred `AᵀA`. Returns the rows and `v₁`.
fn spectrum_file(
    path: &Path,
    n: usize,
    lambdas: &[f64],
    mean_size: f64,
    seed: u64,
) -> (Vec<f64>, Vec<f64>) {
    let d = lambdas.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let h: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
    let hh: f64 = h.iter().map(|x| x * x).sum();
    let reflect = |x: &mut [f64]| {
        let p: f64 = h.iter().zip(x.iter()).map(|(a, b)| a * b).sum();
        x.iter_mut()
            .zip(&h)
            .for_each(|(xi, hi)| *xi -= 2.0 * p / hh * hi);
    };
    let mean: Vec<f64> = (0..d)
        .map(|j| {
            if j == d - 1 {
                mean_size
            } else {
                0.5 * j as f64
            }
        })
        .collect();
    let mut rows = Vec::with_capacity(n * d);
    for _ in 0..n {
        let mut x: Vec<f64> = lambdas
            .iter()
            .map(|l| l.sqrt() * rng.sample::<f64, _>(StandardNormal))
            .collect();
        reflect(&mut x);
        rows.extend(x.iter().zip(&mean).map(|(a, m)| a + m));
    }
    let mut v1 = vec![0.0; d];
    v1[0] = 1.0;
    reflect(&mut v1);
    write_parquet(path, &list_batch(&rows, d));
    (rows, v1)
}

/// A batch `id Int64, emb List<Float64>` of row-major `rows` of dimension `d`.
fn list_batch(rows: &[f64], d: usize) -> RecordBatch {
    let n = rows.len() / d;
    let values = Float64Array::from(rows.to_vec());
    let item = Arc::new(Field::new("item", DataType::Float64, false));
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(d, n));
    let list = ListArray::new(item, offsets, Arc::new(values), None);
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
    RecordBatch::try_from_iter([("id", ids), ("emb", Arc::new(list) as ArrayRef)]).unwrap()
}

const LAMBDAS: [f64; 8] = [20.0, 2.0, 1.5, 1.0, 0.8, 0.5, 0.3, 0.1];

/// With a centred gap `λ₁/λ₂ = 10`, random-order and oja behind a shuffle find the centred top
/// direction (⟨v, v₁⟩² ≥ 0.95) for every seed tried, whatever the mean came from (the spill
/// pass, a first pass, the prefix), while the uncentred top eigenvector is the mean's
/// direction; exact agrees with the reflected `e₀` and reports the exact total variance.
#[test]
fn random_order_finds_the_centred_top_direction() {
    let tmp = TempDir::new().unwrap();
    let (rows, v1) = spectrum_file(&tmp.path().join("t.parquet"), 20_000, &LAMBDAS, 40.0, 7);
    let mut text = String::from("[pipeline]\noutput_dir = \"out\"\n[sources.t]\npath = \"t.parquet\"\n\
        [stages.exact]\nop = \"pca\"\nsource = \"t\"\ncolumns = [\"emb\"]\ncomponents = 3\n\
        [stages.uncentred]\nop = \"top_eigenvector\"\nsource = \"t\"\ncolumns = [\"emb\"]\nalgorithm = \"exact\"\n");
    for seed in [1, 2, 3] {
        for (name, extra) in [
            ("shuffled", "shuffle = true\n"),
            ("pass", "shuffle = true\nfrobenius = \"exact\"\n"),
            ("firstpass", "frobenius = \"exact\"\n"),
            ("prefix", "shuffle = true\n"),
        ] {
            for alg in ["random-order", "oja"] {
                let stage = format!("{}_{name}_{seed}", alg.replace('-', "_"));
                text += &format!(
                    "[stages.{stage}]\nop = \"pca\"\nsource = \"t\"\ncolumns = [\"emb\"]\n\
                     algorithm = \"{alg}\"\nseed = {seed}\n{extra}"
                );
            }
        }
    }
    let file = write_pipeline(tmp.path(), &text);
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap(), "--quiet"]));
    let out = tmp.path().join("out");
    let exact = components(&out.join("exact"));
    assert!(
        alignment(&exact[0], &v1) > 0.999,
        "{}",
        alignment(&exact[0], &v1)
    );
    let uncentred = read_vector(&out.join("uncentred"));
    assert!(
        alignment(&uncentred, &v1) < 0.5,
        "the uncentred top is the mean: {}",
        alignment(&uncentred, &v1)
    );
    // The total variance is the exact one: Σ_j var(column j), n − 1.
    let d = LAMBDAS.len();
    let n = rows.len() / d;
    let mut total = 0.0;
    for j in 0..d {
        let m: f64 = rows.iter().skip(j).step_by(d).sum::<f64>() / n as f64;
        total += rows
            .iter()
            .skip(j)
            .step_by(d)
            .map(|x| (x - m).powi(2))
            .sum::<f64>()
            / (n - 1) as f64;
    }
    assert!((stat_f64(&out.join("exact"), "total_variance") - total).abs() < 1e-9 * total);
    for seed in [1, 2, 3] {
        for (name, from) in [
            ("shuffled", "shuffle"),
            ("pass", "shuffle"),
            ("firstpass", "pass"),
            ("prefix", "shuffle"),
        ] {
            for alg in ["random_order", "oja"] {
                let stage = out.join(format!("{alg}_{name}_{seed}"));
                let v = &components(&stage)[0];
                let a = alignment(v, &v1);
                assert!(a >= 0.95, "{alg} {name} seed {seed}: ⟨v, v₁⟩² = {a}");
                let b = read_parquet(&stage.join("stats.parquet"));
                let mean_from = b
                    .column_by_name("mean_from")
                    .unwrap()
                    .as_string::<i32>()
                    .value(0)
                    .to_string();
                assert_eq!(mean_from, from, "{alg} {name}");
                let t = stat_f64(&stage, "total_variance");
                assert!(
                    (t - total).abs() < 1e-6 * total,
                    "{alg} {name}: total {t} vs {total}"
                );
            }
        }
    }
}

/// Without a shuffle or a first pass the mean comes from the prefix (`mean_from = "prefix"`),
/// and the components are still found on a file in random order; `project`'s scores equal
/// `(x − μ)/σ · Vᵀ` computed from the written tables, and their summaries match.
#[test]
fn prefix_mean_and_projections_from_the_written_tables() {
    let tmp = TempDir::new().unwrap();
    let (rows, v1) = spectrum_file(&tmp.path().join("t.parquet"), 12_000, &LAMBDAS, 25.0, 3);
    let text = "[pipeline]\noutput_dir = \"out\"\n[sources.t]\npath = \"t.parquet\"\n\
        [stages.ro]\nop = \"pca\"\nsource = \"t\"\ncolumns = [\"emb\"]\nalgorithm = \"random-order\"\n\
        [stages.basis]\nop = \"pca\"\nsource = \"t\"\ncolumns = [\"emb\"]\ncomponents = 3\nscale = true\n\
        [stages.scores]\nop = \"project\"\nsource = \"t\"\npca = \"basis\"\ncolumns = [\"emb\"]\nkeep = [\"id\"]\n";
    let file = write_pipeline(tmp.path(), text);
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap(), "--quiet"]));
    let out = tmp.path().join("out");
    let b = read_parquet(&out.join("ro/stats.parquet"));
    assert_eq!(
        b.column_by_name("mean_from")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "prefix"
    );
    assert!(alignment(&components(&out.join("ro"))[0], &v1) >= 0.95);

    let basis = out.join("basis");
    let (v, mean, scale) = (
        components(&basis),
        column(&basis, "mean", "value"),
        column(&basis, "scale", "value"),
    );
    let d = mean.len();
    let scores = read_parquet(&out.join("scores/scores.parquet"));
    assert_eq!(scores.num_rows(), rows.len() / d);
    let ids = scores
        .column_by_name("id")
        .unwrap()
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    let proj = scores
        .column_by_name("projection")
        .unwrap()
        .as_list::<i32>();
    let mut sums = [0.0f64; 3];
    for i in 0..scores.num_rows() {
        let x = &rows[ids.value(i) as usize * d..][..d];
        let got = proj.value(i);
        let got = got.as_primitive::<Float64Type>().values();
        for p in 0..3 {
            let want: f64 = (0..d).map(|j| (x[j] - mean[j]) / scale[j] * v[p][j]).sum();
            assert!(
                (got[p] - want).abs() <= 1e-12 * want.abs().max(1.0),
                "row {i} pc {p}"
            );
            sums[p] += want;
        }
    }
    let means = column(&out.join("scores"), "stats", "mean");
    for p in 0..3 {
        assert!((means[p] - sums[p] / scores.num_rows() as f64).abs() < 1e-9);
    }
    // The variance of the scores on pc p is its explained variance (the basis's own rows).
    let variances = column(&out.join("scores"), "stats", "variance");
    let explained = column(&basis, "spectrum", "explained_variance");
    for p in 0..3 {
        assert!(
            (variances[p] - explained[p]).abs() < 1e-9 * explained[p],
            "pc {p}"
        );
    }
}

/// A nightly job projects new rows on an earlier run's basis (a directory); a basis over other
/// columns or of another dimension is refused naming both, and nothing is written.
#[test]
fn project_on_an_earlier_basis_and_mismatches_refused() {
    let tmp = TempDir::new().unwrap();
    spectrum_file(&tmp.path().join("t.parquet"), 2_000, &LAMBDAS, 5.0, 4);
    spectrum_file(
        &tmp.path().join("narrow.parquet"),
        100,
        &LAMBDAS[..4],
        5.0,
        4,
    );
    let first = write_pipeline(
        tmp.path(),
        "[pipeline]\noutput_dir = \"month\"\n[sources.t]\npath = \"t.parquet\"\n\
        [stages.basis]\nop = \"pca\"\nsource = \"t\"\ncolumns = [\"emb\"]\ncomponents = 2\n",
    );
    assert_ok(&sketchpipe(&["run", first.to_str().unwrap(), "--quiet"]));
    let nightly = |source: &str, columns: &str| {
        let dir = tmp.path().join("night");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(tmp.path().join(source), dir.join("data.parquet")).unwrap();
        let text = format!("[pipeline]\noutput_dir = \"out\"\n[sources.t]\npath = \"data.parquet\"\n\
            [stages.drift]\nop = \"project\"\nsource = \"t\"\npca = \"../month/basis\"\ncolumns = {columns}\n");
        let file = write_pipeline(&dir, &text);
        (sketchpipe(&["run", file.to_str().unwrap(), "--quiet"]), dir)
    };
    let (ok, dir) = nightly("t.parquet", "[\"emb\"]");
    assert_ok(&ok);
    assert_eq!(
        read_parquet(&dir.join("out/drift/stats.parquet")).num_rows(),
        2
    );
    assert_eq!(
        read_parquet(&dir.join("out/drift/scores.parquet")).num_rows(),
        2_000
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let (bad, dir) = nightly("narrow.parquet", "[\"emb\"]");
    let err = stderr(&bad);
    assert_eq!(bad.status.code(), Some(3), "{err}");
    assert!(
        err.contains("dimension 4") && err.contains("dimension 8") && err.contains("month/basis"),
        "{err}"
    );
    assert!(outputs_under(&dir.join("out")).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
    let (bad, dir) = nightly("t.parquet", "[\"id\"]");
    let err = stderr(&bad);
    assert!(!bad.status.success());
    assert!(
        err.contains("computed over column(s) emb") && err.contains("reads id"),
        "{err}"
    );
    assert!(outputs_under(&dir.join("out")).is_empty());
}

/// Rows with an exactly known centred spectrum: for the columns `q_j` of a Householder
/// reflection `Q` and eigenvalues `λ`, `copies` pairs `μ ± sqrt(λ_j / (2 copies)) q_j` per `j`,
/// shuffled. The mean is exactly `μ` and the centred scatter exactly `Q diag(λ) Qᵀ`, however
/// large `μ` is; exact PCA must give `λ` and `q_j` to 1e-9.
#[test]
fn exact_recovers_a_known_centred_spectrum_under_a_large_mean() {
    let (d, copies) = (6, 40);
    let lambdas = [10.0, 4.0, 2.0, 1.0, 0.5, 0.25];
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let u: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
    let uu: f64 = u.iter().map(|x| x * x).sum();
    let q = |i: usize, j: usize| f64::from(u8::from(i == j)) - 2.0 * u[i] * u[j] / uu;
    let mean = [1e4, -5e3, 3.0, 250.0, 0.0, -7.5];
    let mut order: Vec<(usize, f64)> = (0..d)
        .flat_map(|j| (0..copies).flat_map(move |_| [(j, 1.0), (j, -1.0)]))
        .collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut rows = Vec::with_capacity(order.len() * d);
    for (j, sign) in &order {
        let s = sign * (lambdas[*j] / (2.0 * copies as f64)).sqrt();
        rows.extend((0..d).map(|i| mean[i] + s * q(i, *j)));
    }
    let tmp = TempDir::new().unwrap();
    write_parquet(&tmp.path().join("t.parquet"), &list_batch(&rows, d));
    let text = "[pipeline]\noutput_dir = \"out\"\n[sources.t]\npath = \"t.parquet\"\n\
        [stages.pca]\nop = \"pca\"\nsource = \"t\"\ncolumns = [\"emb\"]\ncomponents = 3\n";
    let file = write_pipeline(tmp.path(), text);
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap(), "--quiet"]));
    let stage = tmp.path().join("out/pca");
    let total: f64 = lambdas.iter().sum();
    let n1 = (rows.len() / d - 1) as f64;
    let eig = column(&stage, "spectrum", "eigenvalue");
    let ratio = column(&stage, "spectrum", "explained_variance_ratio");
    let var = column(&stage, "spectrum", "explained_variance");
    for p in 0..3 {
        assert!(
            (eig[p] - lambdas[p]).abs() < 1e-9 * lambdas[p],
            "λ{p}: {}",
            eig[p]
        );
        assert!((ratio[p] - lambdas[p] / total).abs() < 1e-9, "ratio {p}");
        assert!(
            (var[p] - lambdas[p] / n1).abs() < 1e-9 * var[p],
            "variance {p}"
        );
    }
    for (p, v) in components(&stage).iter().enumerate() {
        let qp: Vec<f64> = (0..d).map(|i| q(i, p)).collect();
        let sign = if v.iter().zip(&qp).map(|(a, b)| a * b).sum::<f64>() < 0.0 {
            -1.0
        } else {
            1.0
        };
        for (a, b) in v.iter().zip(&qp) {
            assert!((sign * a - b).abs() < 1e-9, "pc {p}: {a} vs {b}");
        }
    }
    for (a, b) in column(&stage, "mean", "value").iter().zip(mean) {
        assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "mean {a} vs {b}");
    }
    assert!((stat_f64(&stage, "total_variance") - total / n1).abs() < 1e-9 * total / n1);
}

/// The `pca` aggregate gives the stage's basis; `pca_project` on it gives the stage's scores;
/// the SQL functions refuse what cannot run as an aggregate or does not fit the basis.
#[test]
fn sql_pca_equals_the_stage_and_refuses_what_it_cannot_do() {
    let tmp = TempDir::new().unwrap();
    spectrum_file(&tmp.path().join("t.parquet"), 3_000, &LAMBDAS, 30.0, 5);
    let text = "[pipeline]\noutput_dir = \"out\"\n[sources.t]\npath = \"t.parquet\"\n\
        [stages.basis]\nop = \"pca\"\nsource = \"t\"\ncolumns = [\"emb\"]\ncomponents = 2\nscale = true\n\
        [stages.scores]\nop = \"project\"\nsource = \"t\"\npca = \"basis\"\ncolumns = [\"emb\"]\nkeep = [\"id\"]\n";
    let file = write_pipeline(tmp.path(), text);
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap(), "--quiet"]));
    let t = tmp.path().join("t.parquet");
    let t = t.to_str().unwrap();
    let sql = |q: &str| sketchpipe(&["sql", "--pipeline", file.to_str().unwrap(), q]);
    // pc 0's first coordinate and row 7's first score, through SQL and from the stage.
    let out = sql(&format!(
        "SELECT b.basis.components[1][1] AS c, pca_project(x.emb, b.basis)[1] AS s \
         FROM '{t}' x, (SELECT pca(emb, 2, 'exact', true, true) AS basis FROM '{t}') b WHERE x.id = 7"
    ));
    assert_ok(&out);
    let printed: Vec<f64> = stdout(&out)
        .split(|c: char| c == '|' || c.is_whitespace())
        .filter_map(|w| w.parse().ok())
        .collect();
    let stage = components(&tmp.path().join("out/basis"))[0][0];
    let scores = read_parquet(&tmp.path().join("out/scores/scores.parquet"));
    let ids = scores
        .column_by_name("id")
        .unwrap()
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    let row = (0..scores.num_rows()).find(|&i| ids.value(i) == 7).unwrap();
    let proj = scores
        .column_by_name("projection")
        .unwrap()
        .as_list::<i32>()
        .value(row);
    let score = proj.as_primitive::<Float64Type>().value(0);
    assert_eq!(printed.len(), 2, "{}", stdout(&out));
    assert!((printed[0] - stage).abs() < 1e-9, "{printed:?} vs {stage}");
    assert!(
        (printed[1] - score).abs() < 1e-9 * score.abs().max(1.0),
        "{printed:?} vs {score}"
    );
    // Refusals: an ordered algorithm, a row of another length.
    let bad = sql(&format!("SELECT pca(emb, 1, 'random-order') FROM '{t}'"));
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("a pca pipeline stage"),
        "{}",
        stderr(&bad)
    );
    let bad = sql(&format!(
        "SELECT pca_project(make_array(1.0, 2.0), b.basis) FROM (SELECT pca(emb, 2) AS basis FROM '{t}') b"
    ));
    assert_eq!(bad.status.code(), Some(3), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("has 2 values and the basis dimension 8"),
        "{}",
        stderr(&bad)
    );
}
