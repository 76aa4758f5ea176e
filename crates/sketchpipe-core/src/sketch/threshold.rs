//! Threshold sampling (expected size `k`, one pass) — Daliri, Freire, Musco, Santos, Zhang,
//! VLDB 2024, as used for matrices in arXiv:2501.17836; §2 of `docs/algorithms.md`:
//! `p_i = min(1, λ w_i)` with `w_i = ‖a_i‖²` (or 1 under `uniform` weights), keep row `i` iff
//! `u(key_i) ≤ p_i`. Below, `‖A‖_F²` stands for `Σ w_i`.
//!
//! `λ = k / ‖A‖_F²` unless some `p_i` would exceed 1; then **water-filling**: the `c` heaviest
//! rows get `p = 1` and `λ = (k − c) / (‖A‖_F² − Σ_{capped} w)`, with `c` the smallest count for
//! which every other row has `λ w < 1`, so the `p_i` sum to `k` exactly (when `n ≥ k`). Only
//! rows with `w ≥ ‖A‖_F²/k` can be capped, and there are at most `k` of them, so `λ` needs
//! `‖A‖_F²` and the `k` largest weights — `O(k)` memory.
//!
//! **One pass, the two-pass sample.** `λ` depends on the whole input, but the level of a prefix
//! of the rows is an upper bound on it: adding a row adds a term to `Σ_i min(1, λ w_i)` at every
//! `λ`, so the `λ` that brings the sum to `k` can only fall. A row with `u > min(1, λ_t w)` for
//! the level `λ_t` of any prefix is therefore out of the final sample too. The sketch keeps the
//! rows that pass the latest bound as candidates, recomputes the bound (water-filling over the
//! rows so far) whenever the candidates reach `4k` (at least 1 024), dropping those that fail
//! it — about `k` survive, since the bound's own probabilities sum to `k` — and at the end
//! keeps the candidates that pass the final `λ`: exactly the rows the two-pass algorithm keeps,
//! with the same `λ` to the bit (the same sums in the same order).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{KeyValue, Method, RowRef, Sample, SampledRow, Weights};
use crate::hash::{uniform, Key};

/// A weight in a heap (total order on f64).
#[derive(Debug, Clone, Copy, PartialEq)]
struct W(f64);
impl Eq for W {}
impl PartialOrd for W {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for W {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// A threshold sample being built: [`Self::update`] every row once, then [`Self::finish`].
#[derive(Debug, Clone)]
pub struct ThresholdSketch {
    k: usize,
    seed: u64,
    dim: usize,
    frobenius_sq: f64,
    /// `Σ w_i` (`‖A‖_F²` under `norm` weights, the row count under `uniform`).
    total_weight: f64,
    weights: Weights,
    zero_weight_rows: u64,
    heaviest: BinaryHeap<Reverse<W>>,
    /// An upper bound on the final `λ` (the level of a prefix; ∞ before the first).
    bound: f64,
    /// Rows with `u ≤ min(1, bound · w)` for the bound when they came.
    rows: Vec<SampledRow>,
    rows_seen: u64,
}

impl ThresholdSketch {
    pub fn new(k: usize, dim: usize, seed: u64) -> Self {
        ThresholdSketch {
            k,
            seed,
            dim,
            frobenius_sq: 0.0,
            total_weight: 0.0,
            weights: Weights::Norm,
            zero_weight_rows: 0,
            heaviest: BinaryHeap::with_capacity(k + 1),
            bound: f64::INFINITY,
            rows: Vec::new(),
            rows_seen: 0,
        }
    }

    /// The same sketch with rows weighted by `weights` (`w_i` of the module docs).
    pub fn with_weights(mut self, weights: Weights) -> Self {
        self.weights = weights;
        self
    }

    /// Candidates that trigger a new bound.
    fn limit(&self) -> usize {
        (4 * self.k).max(1024)
    }

    /// One row: its weight counts towards `Σ w_i`, and it is kept as a candidate if it passes
    /// the current bound.
    pub fn update<'r>(&mut self, key: Key<'_>, row: impl Into<RowRef<'r>>) {
        let row = row.into();
        self.rows_seen += 1;
        let norm_sq = row.norm_sq();
        self.frobenius_sq += norm_sq;
        let w = self.weights.of(norm_sq);
        if w == 0.0 {
            self.zero_weight_rows += 1;
            return;
        }
        self.total_weight += w;
        self.heaviest.push(Reverse(W(w)));
        if self.heaviest.len() > self.k {
            self.heaviest.pop();
        }
        let u = uniform(key, self.seed);
        if u <= (self.bound * w).min(1.0) {
            self.rows.push(SampledRow {
                key: KeyValue::from_key(key),
                u,
                weight: w,
                row: row.to_sparse(),
            });
            if self.rows.len() >= self.limit() {
                self.tighten();
            }
        }
    }

    /// The level of the rows so far.
    fn level(&self) -> f64 {
        let mut heavy: Vec<f64> = self.heaviest.iter().map(|r| r.0 .0).collect();
        heavy.sort_by(|a, b| b.total_cmp(a));
        water_fill(self.k, self.total_weight, &heavy)
    }

    /// Recomputes the bound and drops the candidates that fail it.
    fn tighten(&mut self) {
        let bound = self.level();
        self.bound = bound;
        self.rows.retain(|r| r.u <= (bound * r.weight).min(1.0));
    }

    pub fn finish(mut self) -> Sample {
        let lambda = self.level();
        self.rows.retain(|r| r.u <= (lambda * r.weight).min(1.0));
        self.rows.sort_by(|a, b| a.key.cmp(&b.key));
        Sample {
            method: Method::Threshold,
            seed: self.seed,
            dim: self.dim,
            level: lambda,
            size: self.k,
            rows: self.rows,
            frobenius_sq: self.frobenius_sq,
            rows_seen: self.rows_seen,
            weights: self.weights,
            zero_weight_rows: Some(self.zero_weight_rows),
        }
    }
}

/// `λ` with `Σ_i min(1, λ w_i) = k` given the total weight and the heaviest weights in
/// descending order (see the module docs); ∞ when there are at most `k` rows.
pub fn water_fill(k: usize, total: f64, heaviest_desc: &[f64]) -> f64 {
    if total <= 0.0 {
        return 0.0;
    }
    let mut capped = 0.0;
    for c in 0..=heaviest_desc.len().min(k) {
        let rest = total - capped;
        if rest <= 0.0 || c == k {
            return f64::INFINITY;
        }
        let lambda = (k - c) as f64 / rest;
        match heaviest_desc.get(c) {
            Some(&w) if lambda * w >= 1.0 => capped += w,
            _ => return lambda,
        }
    }
    f64::INFINITY
}

#[cfg(test)]
mod tests {
    use super::super::testing::{product, table};
    use super::super::{estimate_product, Sample};
    use super::*;

    fn sketch(t: &[(i64, Vec<f64>)], k: usize, seed: u64) -> Sample {
        let mut s = ThresholdSketch::new(k, t[0].1.len(), seed);
        t.iter()
            .for_each(|(key, row)| s.update(Key::Int(*key), row));
        s.finish()
    }

    /// The two-pass algorithm, as the definition: `‖A‖_F²` and the heaviest weights first,
    /// then every row against the final `λ`. Keys and `λ`.
    fn two_pass(t: &[(i64, Vec<f64>)], k: usize, seed: u64) -> (Vec<i64>, f64) {
        let weights: Vec<f64> = t
            .iter()
            .map(|(_, r)| r.iter().map(|x| x * x).sum())
            .collect();
        let total = weights.iter().filter(|&&w| w != 0.0).sum::<f64>();
        let mut heavy: Vec<f64> = weights.iter().copied().filter(|&w| w != 0.0).collect();
        heavy.sort_by(|a, b| b.total_cmp(a));
        heavy.truncate(k);
        let lambda = water_fill(k, total, &heavy);
        let mut keys: Vec<i64> = t
            .iter()
            .zip(&weights)
            .filter(|&((key, _), &w)| {
                w != 0.0 && uniform(Key::Int(*key), seed) <= (lambda * w).min(1.0)
            })
            .map(|((key, _), _)| *key)
            .collect();
        keys.sort_unstable();
        (keys, lambda)
    }

    proptest::proptest! {
        /// One pass keeps exactly the two-pass sample, with the same `λ` to the bit, also when
        /// the weights grow along the stream (every early bound loose) and when the candidates
        /// are pruned many times (small `k`, many rows).
        #[test]
        fn one_pass_is_the_two_pass_sample(
            n in 1usize..4000, k in 1usize..40, growth in 0.0f64..3.0, seed in 0u64..1000,
        ) {
            let t: Vec<(i64, Vec<f64>)> = (0..n as i64)
                .map(|i| {
                    let scale = (growth * i as f64 / n as f64).exp();
                    let r = uniform(Key::Int(i), 7);
                    (i * 3 + 1, vec![scale * (r - 0.3), if i % 11 == 0 { 0.0 } else { scale }])
                })
                .collect();
            let s = sketch(&t, k, seed);
            let (keys, lambda) = two_pass(&t, k, seed);
            let got: Vec<i64> = s.rows.iter().map(|r| match r.key {
                KeyValue::Int(v) => v,
                _ => unreachable!(),
            }).collect();
            proptest::prop_assert_eq!(got, keys);
            proptest::prop_assert_eq!(s.level.to_bits(), lambda.to_bits());
        }
    }

    #[test]
    fn water_filling_sums_to_k() {
        let w = [100.0, 10.0, 1.0, 1.0, 1.0, 1.0];
        let total: f64 = w.iter().sum();
        let lambda = water_fill(3, total, &w[..3]);
        let sum: f64 = w.iter().map(|x| (lambda * x).min(1.0)).sum();
        assert!((sum - 3.0).abs() < 1e-12, "{sum}");
        assert_eq!(water_fill(6, total, &w), f64::INFINITY);
        assert!((water_fill(2, 4.0, &[1.0, 1.0]) - 0.5).abs() < 1e-15);
    }

    /// Over 400 seeds the mean estimate of every entry of AᵀB is within 4 standard errors,
    /// and the mean sample size is k.
    #[test]
    fn the_product_estimate_is_unbiased() {
        let a = table(60, 3, 0.7, 5);
        let b = table(60, 2, 0.7, 6);
        let exact = product(&a, &b);
        let seeds = 400;
        let (mut sum, mut sum_sq) = (vec![0.0; exact.len()], vec![0.0; exact.len()]);
        let mut sizes = 0.0;
        for seed in 0..seeds {
            let (sa, sb) = (sketch(&a, 12, seed), sketch(&b, 12, seed));
            sizes += sa.rows.len() as f64;
            let w = estimate_product(&sa, &sb).unwrap();
            for (i, v) in w.iter().enumerate() {
                sum[i] += v;
                sum_sq[i] += v * v;
            }
        }
        for i in 0..exact.len() {
            let mean = sum[i] / seeds as f64;
            let se = ((sum_sq[i] / seeds as f64 - mean * mean).max(0.0) / seeds as f64).sqrt();
            assert!((mean - exact[i]).abs() <= 4.0 * se + 1e-12, "entry {i}");
        }
        let mean_size = sizes / seeds as f64;
        assert!((mean_size - 12.0).abs() < 0.5, "mean size {mean_size}");
    }
}
