//! Threshold sampling (expected size `k`, two passes) — Daliri, Freire, Musco, Santos, Zhang,
//! VLDB 2024, as used for matrices in arXiv:2501.17836; §2 of `docs/algorithms.md`:
//! `p_i = min(1, λ w_i)` with `w_i = ‖a_i‖²`, keep row `i` iff `u(key_i) ≤ p_i`.
//!
//! `λ = k / ‖A‖_F²` unless some `p_i` would exceed 1; then **water-filling**: the `c` heaviest
//! rows get `p = 1` and `λ = (k − c) / (‖A‖_F² − Σ_{capped} w)`, with `c` the smallest count for
//! which every other row has `λ w < 1`, so the `p_i` sum to `k` exactly (when `n ≥ k`). Only
//! rows with `w ≥ ‖A‖_F²/k` can be capped, and there are at most `k` of them, so the first
//! pass keeps `‖A‖_F²` and the `k` largest weights — `O(k)` memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{KeyValue, Method, RowRef, Sample, SampledRow};
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

/// A threshold sample being built: [`Self::observe`] every row, [`Self::start_sampling`], then
/// [`Self::update`] every row again.
#[derive(Debug, Clone)]
pub struct ThresholdSketch {
    k: usize,
    seed: u64,
    dim: usize,
    frobenius_sq: f64,
    heaviest: BinaryHeap<Reverse<W>>,
    lambda: Option<f64>,
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
            heaviest: BinaryHeap::with_capacity(k + 1),
            lambda: None,
            rows: Vec::new(),
            rows_seen: 0,
        }
    }

    /// Pass 1: one row's weight.
    pub fn observe<'r>(&mut self, row: impl Into<RowRef<'r>>) {
        let w = row.into().norm_sq();
        if w == 0.0 {
            return;
        }
        self.frobenius_sq += w;
        self.heaviest.push(Reverse(W(w)));
        if self.heaviest.len() > self.k {
            self.heaviest.pop();
        }
    }

    /// Between the passes: the water-filling level `λ`.
    pub fn start_sampling(&mut self) {
        let mut heavy: Vec<f64> = self.heaviest.iter().map(|r| r.0 .0).collect();
        heavy.sort_by(|a, b| b.total_cmp(a));
        self.lambda = Some(water_fill(self.k, self.frobenius_sq, &heavy));
    }

    /// Pass 2: keeps the row iff `u(key) ≤ min(1, λ w)`.
    pub fn update<'r>(&mut self, key: Key<'_>, row: impl Into<RowRef<'r>>) {
        let row = row.into();
        let lambda = self.lambda.expect("start_sampling comes first");
        self.rows_seen += 1;
        let w = row.norm_sq();
        if w == 0.0 {
            return;
        }
        let u = uniform(key, self.seed);
        if u <= (lambda * w).min(1.0) {
            self.rows.push(SampledRow {
                key: KeyValue::from_key(key),
                u,
                weight: w,
                row: row.to_sparse(),
            });
        }
    }

    pub fn finish(mut self) -> Sample {
        self.rows.sort_by(|a, b| a.key.cmp(&b.key));
        Sample {
            method: Method::Threshold,
            seed: self.seed,
            dim: self.dim,
            level: self.lambda.unwrap_or(0.0),
            size: self.k,
            rows: self.rows,
            frobenius_sq: self.frobenius_sq,
            rows_seen: self.rows_seen,
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
        t.iter().for_each(|(_, row)| s.observe(row));
        s.start_sampling();
        t.iter()
            .for_each(|(key, row)| s.update(Key::Int(*key), row));
        s.finish()
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
