//! The join-estimates report: join size, inner product and join correlation estimated from
//! two sketches, against the exact join, for coordinated sampling (`priority` and `threshold`,
//! `norm` and `uniform` weights) and the linear baselines (`jl`, `countsketch`) at equal
//! storage — the comparison of Daliri, Freire, Musco, Santos, Zhang, VLDB 2024
//! (arXiv:2309.16157), on a synthetic corpus; and the empirical coverage of the sampling
//! sketches' intervals, and search quality (recall@10).
//!
//! `cargo bench --bench join_report`. Per setting — a join overlap level (1 %, 10 %, 50 %,
//! 100 %) × values normal or heavy-tailed (1 % of the values ×30) — one query table `q(key, y)`
//! and `SKETCHPIPE_JOIN_TABLES` (default 50) candidates `c(key, x)` of `SKETCHPIPE_JOIN_ROWS`
//! (default 5 000) keys each: candidate `c` shares a fraction of the query's keys drawn
//! uniformly in `[level/2, min(1, 3·level/2)]`, and `x = ρ_c y + √(1−ρ_c²) ε` on them with
//! `ρ_c` uniform in `[−0.95, 0.95]`. Every pair is sketched with `SKETCHPIPE_JOIN_SEEDS`
//! (default 3) seeds. Each sketch stores `SKETCHPIPE_JOIN_WORDS` (default 1 000) 64-bit words:
//! a sampled row of one value costs 2.5 words (§2 of `docs/algorithms.md`), so `k = W / 2.5`;
//! a linear sketch holds the columns `[1, v, v²]` the reduction of correlation to inner
//! products needs, so `t = W / 3`. Prints, per setting and estimator, each method's mean
//! absolute error, the R² of estimate against truth over the pairs, the share of pairs it gave
//! an estimate for, and for the samplers the coverage of the 95 % intervals; then recall@10 of
//! the candidates ranked by estimated |correlation|.

mod common;

use common::env_or;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use sketchpipe::hash::Key;
use sketchpipe::sketch::join::{Estimate, JoinEstimator};
use sketchpipe::sketch::linear::{self, LinearSketch};
use sketchpipe::sketch::priority::PrioritySketch;
use sketchpipe::sketch::threshold::ThresholdSketch;
use sketchpipe::sketch::{Method, Sample, Weights};

/// A table: keys and one value per key.
struct Table {
    keys: Vec<i64>,
    values: Vec<f64>,
}

/// The exact join statistics of `q` and `c`: size, `Σ y x`, Pearson correlation.
fn truth(q: &Table, c: &Table) -> (f64, f64, f64) {
    let index: std::collections::HashMap<i64, f64> = q
        .keys
        .iter()
        .copied()
        .zip(q.values.iter().copied())
        .collect();
    let pairs: Vec<(f64, f64)> = c
        .keys
        .iter()
        .zip(&c.values)
        .filter_map(|(k, x)| index.get(k).map(|y| (*y, *x)))
        .collect();
    let n = pairs.len() as f64;
    let ip = pairs.iter().map(|(y, x)| y * x).sum();
    let (my, mx) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut syy, mut sxx, mut sxy) = (0.0, 0.0, 0.0);
    for (y, x) in &pairs {
        syy += (y - my) * (y - my);
        sxx += (x - mx) * (x - mx);
        sxy += (y - my) * (x - mx);
    }
    (n, ip, sxy / (sxx * syy).sqrt())
}

/// The sampling methods compared.
const SAMPLERS: [(&str, Method, Weights); 4] = [
    ("priority/norm", Method::Priority, Weights::Norm),
    ("priority/uniform", Method::Priority, Weights::Uniform),
    ("threshold/norm", Method::Threshold, Weights::Norm),
    ("threshold/uniform", Method::Threshold, Weights::Uniform),
];
const LINEAR: [(&str, Method); 2] = [("jl", Method::Jl), ("countsketch", Method::CountSketch)];

fn sample(t: &Table, method: Method, weights: Weights, k: usize, seed: u64) -> Sample {
    match method {
        Method::Priority => {
            let mut s = PrioritySketch::new(k, 1, seed).with_weights(weights);
            for (key, v) in t.keys.iter().zip(&t.values) {
                s.update(Key::Int(*key), &[*v][..]);
            }
            s.finish()
        }
        _ => {
            let mut s = ThresholdSketch::new(k, 1, seed).with_weights(weights);
            for (key, v) in t.keys.iter().zip(&t.values) {
                s.update(Key::Int(*key), &[*v][..]);
            }
            s.finish()
        }
    }
}

/// A linear sketch of the columns `[1, v, v²]`.
fn linear_sketch(t: &Table, method: Method, rows: usize, seed: u64) -> LinearSketch {
    let mut s = LinearSketch::new(method, rows, 3, seed).expect("a linear method");
    for (key, v) in t.keys.iter().zip(&t.values) {
        s.update(Key::Int(*key), &[1.0, *v, v * v][..]);
    }
    s
}

/// Join size, inner product and correlation from the 3 × 3 product of `[1, y, y²]` and
/// `[1, x, x²]` (row-major): the reduction of correlation to inner products.
fn from_products(p: &[f64]) -> [Option<f64>; 3] {
    let at = |i: usize, j: usize| p[i * 3 + j];
    let (n, sy, syy, sx, sxx, sxy) = (at(0, 0), at(1, 0), at(2, 0), at(0, 1), at(0, 2), at(1, 1));
    let (vy, vx) = (n * syy - sy * sy, n * sxx - sx * sx);
    let r =
        (vy > 0.0 && vx > 0.0).then(|| ((n * sxy - sx * sy) / (vx * vy).sqrt()).clamp(-1.0, 1.0));
    [Some(n), Some(sxy), r]
}

/// Estimates (and intervals) of one method over all pairs of a setting.
#[derive(Default, Clone)]
struct Tally {
    /// (estimate, truth) where an estimate was given.
    points: Vec<(f64, f64)>,
    asked: usize,
    covered: usize,
    intervals: usize,
}

impl Tally {
    fn add(&mut self, estimate: Option<f64>, truth: f64) {
        self.asked += 1;
        if let Some(e) = estimate.filter(|e| e.is_finite()) {
            self.points.push((e, truth));
        }
    }

    fn add_interval(&mut self, e: &Estimate, truth: f64) {
        self.add(e.as_ref().ok().map(|i| i.estimate), truth);
        if let Ok(i) = e {
            self.intervals += 1;
            if i.lower <= truth && truth <= i.upper {
                self.covered += 1;
            }
        }
    }

    fn mae(&self) -> f64 {
        self.points.iter().map(|(e, t)| (e - t).abs()).sum::<f64>() / self.points.len() as f64
    }

    /// `1 − Σ(e − t)² / Σ(t − t̄)²` over the pairs estimated.
    fn r2(&self) -> f64 {
        let mean = self.points.iter().map(|p| p.1).sum::<f64>() / self.points.len() as f64;
        let (mut res, mut tot) = (0.0, 0.0);
        for (e, t) in &self.points {
            res += (e - t) * (e - t);
            tot += (t - mean) * (t - mean);
        }
        1.0 - res / tot
    }
}

/// `k` keys of `0..n` fixed by `rng`, shuffled.
fn choose(rng: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = rng.random_range(i..n);
        all.swap(i, j);
    }
    all.truncate(k);
    all
}

fn main() {
    let n: usize = env_or("SKETCHPIPE_JOIN_ROWS", 5000);
    let tables: usize = env_or("SKETCHPIPE_JOIN_TABLES", 50);
    let seeds: u64 = env_or("SKETCHPIPE_JOIN_SEEDS", 3);
    let words: f64 = env_or("SKETCHPIPE_JOIN_WORDS", 1000.0);
    let k = (words / 2.5) as usize;
    let t = (words / 3.0) as usize;
    println!(
        "{tables} candidate tables of {n} keys per setting, {seeds} seeds per pair, {words} words \
         per sketch (samplers k = {k}, linear t = {t} rows of [1, v, v²])"
    );
    let names: Vec<&str> = SAMPLERS
        .iter()
        .map(|s| s.0)
        .chain(LINEAR.iter().map(|l| l.0))
        .collect();
    let mut coverage_all = vec![[(0usize, 0usize); 3]; SAMPLERS.len()];
    for heavy in [false, true] {
        for level in [0.01f64, 0.1, 0.5, 1.0] {
            let mut rng = ChaCha8Rng::seed_from_u64((level * 1000.0) as u64 + heavy as u64);
            let g = |rng: &mut ChaCha8Rng| -> f64 {
                let v: f64 = StandardNormal.sample(rng);
                if heavy && rng.random::<f64>() < 0.01 {
                    30.0 * v
                } else {
                    v
                }
            };
            // The query: keys 0..n, values around 2 (so the constant column matters).
            let y: Vec<f64> = (0..n).map(|_| 2.0 + g(&mut rng)).collect();
            let query = Table {
                keys: (0..n as i64).collect(),
                values: y.clone(),
            };
            let candidates: Vec<(Table, (f64, f64, f64))> = (0..tables)
                .map(|c| {
                    let frac = rng.random_range(level / 2.0..(1.5 * level).min(1.0));
                    let shared = ((frac * n as f64).round() as usize).max(1);
                    let rho: f64 = rng.random_range(-0.95..0.95);
                    let mut keys = Vec::with_capacity(n);
                    let mut values = Vec::with_capacity(n);
                    for i in choose(&mut rng, n, shared) {
                        keys.push(i as i64);
                        values.push(rho * y[i] + (1.0 - rho * rho).sqrt() * g(&mut rng));
                    }
                    // The rest of its keys are its own (outside the query's).
                    let base = (n * (c + 1)) as i64 * 10;
                    for j in 0..n - shared {
                        keys.push(base + j as i64);
                        values.push(2.0 + g(&mut rng));
                    }
                    let table = Table { keys, values };
                    let truth = truth(&query, &table);
                    (table, truth)
                })
                .collect();
            let mut tallies = vec![[Tally::default(), Tally::default(), Tally::default()]; 6];
            let mut recall = [0.0; 6];
            for seed in 0..seeds {
                let seed = 1000 + seed;
                let q_samples: Vec<Sample> = SAMPLERS
                    .iter()
                    .map(|(_, m, w)| sample(&query, *m, *w, k, seed))
                    .collect();
                let q_linear: Vec<LinearSketch> = LINEAR
                    .iter()
                    .map(|(_, m)| linear_sketch(&query, *m, t, seed))
                    .collect();
                let mut est_corr: Vec<Vec<Option<f64>>> =
                    (0..6).map(|_| Vec::with_capacity(tables)).collect();
                for (table, (size, ip, r)) in &candidates {
                    let truths = [*size, *ip, *r];
                    for (s, (_, m, w)) in SAMPLERS.iter().enumerate() {
                        let cs = sample(table, *m, *w, k, seed);
                        let e = JoinEstimator::new(&q_samples[s], &cs, 0.95).unwrap();
                        let ests = [
                            e.join_size(),
                            e.inner_product(0, 0).unwrap(),
                            e.correlation(0, 0).unwrap(),
                        ];
                        for (j, est) in ests.iter().enumerate() {
                            tallies[s][j].add_interval(est, truths[j]);
                            coverage_all[s][j].1 += usize::from(est.is_ok());
                            coverage_all[s][j].0 += usize::from(
                                est.as_ref()
                                    .is_ok_and(|i| i.lower <= truths[j] && truths[j] <= i.upper),
                            );
                        }
                        est_corr[s].push(ests[2].as_ref().ok().map(|i| i.estimate));
                    }
                    for (l, (_, m)) in LINEAR.iter().enumerate() {
                        let cl = linear_sketch(table, *m, t, seed);
                        let p = linear::estimate_product(&q_linear[l], &cl).unwrap();
                        let ests = from_products(&p);
                        for (j, est) in ests.iter().enumerate() {
                            tallies[SAMPLERS.len() + l][j].add(*est, truths[j]);
                        }
                        est_corr[SAMPLERS.len() + l].push(ests[2]);
                    }
                }
                let top = |v: &[Option<f64>]| -> Vec<usize> {
                    let mut idx: Vec<usize> = (0..v.len()).collect();
                    idx.sort_by(|&a, &b| {
                        let key = |i: usize| v[i].map_or(-1.0, f64::abs);
                        key(b).total_cmp(&key(a))
                    });
                    idx.truncate(10);
                    idx
                };
                let true_top = top(&candidates.iter().map(|c| Some(c.1 .2)).collect::<Vec<_>>());
                for (m, est) in est_corr.iter().enumerate() {
                    let got = top(est);
                    let hits = got.iter().filter(|i| true_top.contains(i)).count();
                    recall[m] += hits as f64 / 10.0 / seeds as f64;
                }
            }
            println!(
                "\noverlap ≈ {:.0} %, {} values:",
                level * 100.0,
                if heavy { "heavy-tailed" } else { "normal" }
            );
            println!(
                "  {:<18} {:>26} {:>26} {:>26} {:>9}",
                "method",
                "join size MAE/R²/cov",
                "inner product MAE/R²/cov",
                "correlation MAE/R²/cov",
                "recall@10"
            );
            for (m, name) in names.iter().enumerate() {
                let cell = |t: &Tally| {
                    let share = t.points.len() as f64 / t.asked as f64;
                    let cov = if t.intervals > 0 {
                        format!("{:.2}", t.covered as f64 / t.intervals as f64)
                    } else {
                        "–".to_string()
                    };
                    if t.points.is_empty() {
                        return format!("{:>26}", "no estimate");
                    }
                    let mark = if share < 1.0 {
                        format!(" ({:.0}%)", share * 100.0)
                    } else {
                        String::new()
                    };
                    format!("{:>9.3}/{:>6.2}/{:>4}{mark}", t.mae(), t.r2(), cov)
                };
                println!(
                    "  {:<18} {:>26} {:>26} {:>26} {:>9.2}",
                    name,
                    cell(&tallies[m][0]),
                    cell(&tallies[m][1]),
                    cell(&tallies[m][2]),
                    recall[m]
                );
            }
        }
    }
    println!("\ncoverage of the 95 % intervals over every setting (trials with an estimate):");
    for (s, (name, _, _)) in SAMPLERS.iter().enumerate() {
        let c = |j: usize| {
            let (hit, of) = coverage_all[s][j];
            format!("{:.3} of {of}", hit as f64 / of.max(1) as f64)
        };
        println!(
            "  {name:<18} join size {}, inner product {}, correlation {}",
            c(0),
            c(1),
            c(2)
        );
    }
}
