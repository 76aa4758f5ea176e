//! Priority sampling (fixed size `k`, one pass, mergeable) — Daliri, Freire, Li, Musco,
//! arXiv:2501.17836, and §2 of `docs/algorithms.md`:
//!
//! ```text
//! w_i = ‖a_i‖²,  r_i = u(key_i) / w_i      (rows with w_i = 0 are never sampled)
//! keep the k rows with the smallest r_i;  τ = the (k+1)-th smallest rank (∞ if n ≤ k)
//! inclusion probability p_i = min(1, w_i τ)
//! ```
//!
//! Memory: a max-heap of `k + 1` ranks; a row is copied (sparsely) only when it enters the
//! heap. Merging sketches of disjoint row sets made with the same seed and `k` gives exactly
//! the one-pass sketch of their union ([`PrioritySketch::merge`]).

use std::collections::BinaryHeap;

use super::{KeyValue, Method, RowRef, Sample, SampledRow, Weights};
use crate::hash::{uniform, Key};

#[derive(Debug, Clone)]
struct Ranked {
    rank: f64,
    /// Boxed, so the heap moves 16-byte entries: a corpus of many small tables keeps
    /// replacing its samples' rows, and sifting whole rows was most of its time.
    row: Box<SampledRow>,
}

impl PartialEq for Ranked {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ranked {
    /// By rank, then by key: a total order, so ties cannot make two runs differ.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.rank
            .total_cmp(&o.rank)
            .then_with(|| self.row.key.cmp(&o.row.key))
    }
}

/// A priority sample being built; see the module docs.
#[derive(Debug, Clone)]
pub struct PrioritySketch {
    k: usize,
    seed: u64,
    dim: usize,
    /// The `k + 1` smallest ranks so far (a max-heap: the top is the largest of them).
    heap: BinaryHeap<Ranked>,
    frobenius_sq: f64,
    rows_seen: u64,
    /// An upper bound on τ carried over from merged sketches (∞ otherwise).
    tau_cap: f64,
    weights: Weights,
    /// Rows of weight 0 (never kept); `None` once a sketch without the count is merged in.
    zero_weight_rows: Option<u64>,
}

impl PrioritySketch {
    pub fn new(k: usize, dim: usize, seed: u64) -> Self {
        PrioritySketch {
            k,
            seed,
            dim,
            heap: BinaryHeap::with_capacity(k + 1),
            frobenius_sq: 0.0,
            rows_seen: 0,
            tau_cap: f64::INFINITY,
            weights: Weights::Norm,
            zero_weight_rows: Some(0),
        }
    }

    /// The same sketch with rows weighted by `weights` (`w_i` of the module docs).
    pub fn with_weights(mut self, weights: Weights) -> Self {
        self.weights = weights;
        self
    }

    /// Offers one row.
    pub fn update<'r>(&mut self, key: Key<'_>, row: impl Into<RowRef<'r>>) {
        let row = row.into();
        self.rows_seen += 1;
        let norm_sq = row.norm_sq();
        self.frobenius_sq += norm_sq;
        let w = self.weights.of(norm_sq);
        if w == 0.0 {
            self.zero_weight_rows = self.zero_weight_rows.map(|z| z + 1);
            return;
        }
        let u = uniform(key, self.seed);
        let rank = u / w;
        if self.heap.len() == self.k + 1 {
            let top = self.heap.peek().expect("full");
            if rank > top.rank {
                return;
            }
        }
        self.push(Ranked {
            rank,
            row: Box::new(SampledRow {
                key: KeyValue::from_key(key),
                u,
                weight: w,
                row: row.to_sparse(),
            }),
        });
    }

    fn push(&mut self, r: Ranked) {
        if self.heap.len() == self.k + 1 {
            let mut top = self.heap.peek_mut().expect("full");
            if r < *top {
                // Replaces the largest in one sift (a pop and a push would sift twice).
                *top = r;
            }
            return;
        }
        self.heap.push(r);
    }

    /// Folds in a sketch of a disjoint set of rows made with the same seed and `k`.
    pub fn merge(&mut self, other: PrioritySketch) {
        assert_eq!(
            (self.k, self.seed, self.dim, self.weights),
            (other.k, other.seed, other.dim, other.weights)
        );
        self.zero_weight_rows = self
            .zero_weight_rows
            .zip(other.zero_weight_rows)
            .map(|(a, b)| a + b);
        self.frobenius_sq += other.frobenius_sq;
        self.rows_seen += other.rows_seen;
        self.tau_cap = self.tau_cap.min(other.tau_cap);
        for r in other.heap {
            self.push(r);
        }
    }

    /// The finished sample: the `k` smallest ranks, and `τ` = the (k+1)-th.
    pub fn finish(self) -> Sample {
        let mut ranked = self.heap.into_sorted_vec();
        let tau = if ranked.len() > self.k {
            ranked.pop().expect("k + 1 rows").rank
        } else {
            f64::INFINITY
        }
        .min(self.tau_cap);
        let mut rows: Vec<SampledRow> = ranked.into_iter().map(|r| *r.row).collect();
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        Sample {
            method: Method::Priority,
            seed: self.seed,
            dim: self.dim,
            level: tau,
            size: self.k,
            rows,
            frobenius_sq: self.frobenius_sq,
            rows_seen: self.rows_seen,
            weights: self.weights,
            zero_weight_rows: self.zero_weight_rows,
        }
    }

    /// Continues from a finished sample (e.g. one read back from disk) so that more rows or
    /// sketches can be merged in: its rows, with `τ` as a cap on the new `τ`.
    pub fn resume(sample: Sample) -> Self {
        let mut s =
            PrioritySketch::new(sample.size, sample.dim, sample.seed).with_weights(sample.weights);
        s.zero_weight_rows = sample.zero_weight_rows;
        s.frobenius_sq = sample.frobenius_sq;
        s.rows_seen = sample.rows_seen;
        s.tau_cap = sample.level;
        for row in sample.rows {
            s.push(Ranked {
                rank: row.u / row.weight,
                row: Box::new(row),
            });
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{frobenius, product, table};
    use super::super::{estimate_product, Sample};
    use super::*;
    use proptest::prelude::*;

    fn sketch(t: &[(i64, Vec<f64>)], k: usize, seed: u64) -> Sample {
        let d = t[0].1.len();
        let mut s = PrioritySketch::new(k, d, seed);
        for (key, row) in t {
            s.update(Key::Int(*key), row);
        }
        s.finish()
    }

    /// Over 400 seeds the mean estimate of every entry of AᵀB is within 4 standard errors.
    #[test]
    fn the_product_estimate_is_unbiased() {
        let a = table(60, 3, 0.7, 1);
        let b = table(60, 2, 0.7, 2);
        let exact = product(&a, &b);
        let seeds = 400;
        let mut sum = vec![0.0; exact.len()];
        let mut sum_sq = vec![0.0; exact.len()];
        for seed in 0..seeds {
            let w = estimate_product(&sketch(&a, 12, seed), &sketch(&b, 12, seed)).unwrap();
            for (i, v) in w.iter().enumerate() {
                sum[i] += v;
                sum_sq[i] += v * v;
            }
        }
        for i in 0..exact.len() {
            let mean = sum[i] / seeds as f64;
            let var = (sum_sq[i] / seeds as f64 - mean * mean).max(0.0);
            let se = (var / seeds as f64).sqrt();
            assert!(
                (mean - exact[i]).abs() <= 4.0 * se + 1e-12,
                "entry {i}: mean {mean} vs exact {} (se {se})",
                exact[i]
            );
        }
    }

    /// The relative Frobenius error falls like 1/√k: quadrupling k about halves it.
    #[test]
    fn error_shrinks_like_one_over_root_k() {
        let a = table(4000, 8, 0.3, 3);
        let b = table(4000, 6, 0.3, 4);
        let exact = product(&a, &b);
        let norm_a: f64 = a
            .iter()
            .map(|r| r.1.iter().map(|v| v * v).sum::<f64>())
            .sum();
        let norm_b: f64 = b
            .iter()
            .map(|r| r.1.iter().map(|v| v * v).sum::<f64>())
            .sum();
        let scale = (norm_a * norm_b).sqrt();
        let err = |k: usize| -> f64 {
            let seeds = 30;
            (0..seeds)
                .map(|seed| {
                    let w = estimate_product(&sketch(&a, k, seed), &sketch(&b, k, seed)).unwrap();
                    let diff: Vec<f64> = w.iter().zip(&exact).map(|(x, y)| x - y).collect();
                    frobenius(&diff) / scale
                })
                .sum::<f64>()
                / seeds as f64
        };
        let (e64, e256, e1024) = (err(64), err(256), err(1024));
        // Each ×4 in k should divide the error by about 2; allow 1.5–2.7.
        for (big, small) in [(e64, e256), (e256, e1024)] {
            let ratio = big / small;
            assert!((1.5..2.7).contains(&ratio), "errors {e64} {e256} {e1024}");
        }
        // And within the bound E‖W − AᵀB‖_F² ≤ 2/(k−1) ‖A‖_F² ‖B‖_F².
        assert!(e64 <= (2.0 / 63.0f64).sqrt(), "{e64}");
    }

    proptest! {
        /// Two partitions sketched apart and merged give exactly the one-pass sketch.
        #[test]
        fn merge_equals_one_pass(split in 1usize..199, k in 1usize..40, seed in 0u64..1000) {
            let t = table(200, 4, 0.5, seed);
            let whole = sketch(&t, k, seed);
            let (left, right) = t.split_at(split);
            let mut a = PrioritySketch::new(k, 4, seed);
            left.iter().for_each(|(key, row)| a.update(Key::Int(*key), row));
            let mut b = PrioritySketch::new(k, 4, seed);
            right.iter().for_each(|(key, row)| b.update(Key::Int(*key), row));
            // Merge a finished sketch back in too: what a stored sketch goes through.
            let b = PrioritySketch::resume(b.finish());
            a.merge(b);
            let merged = a.finish();
            prop_assert_eq!(&merged.rows, &whole.rows);
            prop_assert_eq!(merged.level, whole.level);
            prop_assert!((merged.frobenius_sq - whole.frobenius_sq).abs() < 1e-9);
        }
    }

    /// The sparse (CSR) product holds the same sums as the dense one, and counts the join.
    #[test]
    fn sparse_product_equals_the_dense_one() {
        let a = table(500, 7, 0.3, 11);
        let b = table(500, 5, 0.3, 12);
        let (sa, sb) = (sketch(&a, 80, 2), sketch(&b, 80, 2));
        let dense = estimate_product(&sa, &sb).unwrap();
        let (csr, joined) = super::super::estimate_product_sparse(&sa, &sb).unwrap();
        let mut from_csr = vec![0.0; 7 * 5];
        for (v, (i, j)) in csr.iter() {
            from_csr[i * 5 + j] = *v;
        }
        for (x, y) in from_csr.iter().zip(&dense) {
            assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{x} vs {y}");
        }
        let keys: std::collections::HashSet<_> = sa.rows.iter().map(|r| &r.key).collect();
        let both = sb.rows.iter().filter(|r| keys.contains(&r.key)).count() as u64;
        assert_eq!(joined, both);
        assert!(joined > 0);
    }

    #[test]
    fn zero_rows_are_never_sampled_and_small_inputs_keep_everything() {
        let t = vec![
            (1, vec![0.0, 0.0]),
            (2, vec![1.0, 0.0]),
            (3, vec![0.0, 2.0]),
        ];
        let s = sketch(&t, 5, 9);
        assert_eq!(s.rows.len(), 2);
        assert!(s.level.is_infinite());
        assert_eq!(s.probability(1.0), 1.0);
        assert_eq!(s.stored_words(), 5.0);
    }
}
