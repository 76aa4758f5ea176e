//! Estimates over a join from two coordinated samples, each with a confidence interval — the
//! dataset-search questions of Daliri, Freire, Musco, Santos, Zhang, *Sampling Methods for
//! Inner Product Sketching*, VLDB 2024 (arXiv:2309.16157) and of Daliri, Freire, Li, Musco,
//! arXiv:2501.17836: how many keys two tables share, how a column of one correlates with a
//! column of the other over the shared keys, how well one table's columns predict a target of
//! the other — without joining them. §2 of `docs/algorithms.md`, "Estimates over a join".
//!
//! A key kept by both samples was kept with probability `p_i = min(1, p_i^A, p_i^B)`, known
//! from the two samples ([`super::for_each_joined`]). Every sum over the join,
//! `S = Σ_{i ∈ A ⋈ B} g(a_i, b_i)`, then has the Horvitz–Thompson estimate
//! `Ŝ = Σ_{i kept by both} g_i / p_i` and the variance estimate `V̂ = Σ_{kept} g_i² (1 − p_i) / p_i²`
//! (unbiased for threshold sampling, whose keys are kept independently; for priority sampling
//! the estimates of distinct keys are uncorrelated — Duffield, Lund, Thorup, *Priority
//! sampling for estimation of arbitrary subset sums*, J. ACM 2007 — and the same `V̂` is
//! used). From these sums:
//!
//! * **join size** `Σ 1`: `Ŝ ± z √V̂`, the lower bound no less than the keys seen in both
//!   samples and the upper bound (and the estimate) no more than the smaller table;
//! * **inner product** `Σ a_ij b_ik`: `Ŝ ± z √V̂`;
//! * **correlation** of column `i` of `A` with column `j` of `B` over the join: the Pearson
//!   correlation of the weighted (`1/p`) joined sample — a ratio of the six sums `n, Σx, Σy,
//!   Σx², Σy², Σxy` — with the delta-method variance (the HT variance of its linearisation
//!   `z_i = (x̃_i ỹ_i − r (x̃_i² + ỹ_i²) / 2) / n`, `x̃, ỹ` standardised), the interval made on
//!   Fisher's `atanh(r)` scale so it stays inside `[−1, 1]`;
//! * **R²** of the ridge regression (with an intercept, penalty `λ` on the slopes) of column
//!   `t` of `A` on every column of `B` over the join: fitted on the weighted joined sample,
//!   `R² = 1 − RSS/TSS`, with the delta-method variance of its linearisation
//!   `z_i = ((1 − R²) ỹ_i² − e_i²) / TSS` (`ỹ` centred, `e` the residual; the fit's own
//!   derivative vanishes at its optimum), the interval clipped to `[0, 1]`.
//!
//! Each needs every key of the join to have a chance to be kept: a `norm`-weighted sketch of a
//! table with all-zero rows never keeps those keys, so its estimates over the join would be
//! biased — they are refused with that reason ([`Estimate::Err`]), as is a join too small to
//! estimate. With `exact` sketches every `p_i = 1`: the estimates are the exact values and the
//! intervals have width 0.

use faer::prelude::Solve;
use faer::Mat;

use super::{for_each_joined_p, Sample, SparseRow};
use crate::{Error, Result};

/// An estimate and its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

/// An estimate, or the reason there is none (a join too small, a constant column, a sketch
/// that cannot see every key) — a null with a note, never a NaN.
pub type Estimate = std::result::Result<Interval, String>;

/// The two-sided standard normal quantile `Φ⁻¹((1 + confidence) / 2)` of a confidence level
/// in `(0, 1)`.
pub fn z_value(confidence: f64) -> Result<f64> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::Config(format!(
            "confidence must be between 0 and 1 (exclusive), got {confidence}"
        )));
    }
    Ok(normal_quantile(0.5 + confidence / 2.0))
}

/// `Φ⁻¹(q)` for `q ∈ (0, 1)`: P. J. Acklam's rational approximation (relative error below
/// 1.2·10⁻⁹, far below what an interval needs). No crate in the tree has it; `statrs` would
/// add a dependency tree for one function.
fn normal_quantile(q: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |p: f64| {
        let t = (-2.0 * p.ln()).sqrt();
        (((((C[0] * t + C[1]) * t + C[2]) * t + C[3]) * t + C[4]) * t + C[5])
            / ((((D[0] * t + D[1]) * t + D[2]) * t + D[3]) * t + 1.0)
    };
    if q < 0.02425 {
        tail(q)
    } else if q > 1.0 - 0.02425 {
        -tail(1.0 - q)
    } else {
        let r = q - 0.5;
        let s = r * r;
        (((((A[0] * s + A[1]) * s + A[2]) * s + A[3]) * s + A[4]) * s + A[5]) * r
            / (((((B[0] * s + B[1]) * s + B[2]) * s + B[3]) * s + B[4]) * s + 1.0)
    }
}

/// The keys kept by both samples: each side's row and `p = min(1, p^A, p^B)`, in the left
/// sample's key order (so sums run in the same order every time).
struct Joined<'a> {
    rows: Vec<(&'a SparseRow, &'a SparseRow, f64)>,
}

impl<'a> Joined<'a> {
    fn new(a: &'a Sample, b: &'a Sample) -> Result<Self> {
        let mut rows = Vec::new();
        for_each_joined_p(a, b, |ra, rb, p| rows.push((ra, rb, p)))?;
        Ok(Joined { rows })
    }

    /// `(Ŝ, V̂)` of `Σ g` over the join (module docs).
    fn sum(&self, g: impl Fn(&SparseRow, &SparseRow) -> f64) -> (f64, f64) {
        let (mut s, mut v) = (0.0, 0.0);
        for &(ra, rb, p) in &self.rows {
            let x = g(ra, rb);
            s += x / p;
            v += x * x * (1.0 - p) / (p * p);
        }
        (s, v)
    }

    /// `V̂` of the sum of per-key values `z` (one per joined key, in order).
    fn variance(&self, z: &[f64]) -> f64 {
        self.rows
            .iter()
            .zip(z)
            .map(|(&(_, _, p), z)| z * z * (1.0 - p) / (p * p))
            .sum()
    }
}

/// The value of column `j` of a stored row (0 where it has no entry).
fn value(row: &SparseRow, j: usize) -> f64 {
    row.indices
        .iter()
        .position(|&i| i as usize == j)
        .map_or(0.0, |k| row.values[k])
}

/// Why a sample cannot estimate sums over a join, if it cannot: it never keeps some keys.
fn blind_spot(s: &Sample, side: &str) -> Option<String> {
    match s.zero_weight_rows {
        Some(0) => None,
        Some(z) => Some(format!(
            "{side}: {z} of its rows are all zero, and `norm` weights never keep them, so \
             estimates over the join would miss those keys; sketch it with weights = \"uniform\""
        )),
        None => Some(format!(
            "{side}: the sketch was stored without its count of never-kept (all-zero) rows; \
             sketch the table again with this version"
        )),
    }
}

fn check_column(s: &Sample, j: usize, side: &str) -> Result<()> {
    if j >= s.dim {
        return Err(Error::Config(format!(
            "{side}: column position {} is out of range (the sketch has {} columns; positions \
             start at 1)",
            j + 1,
            s.dim
        )));
    }
    Ok(())
}

/// Estimates over the join of two coordinated samples (left `a`, right `b`) at one confidence
/// level; see the module docs.
pub struct JoinEstimator<'a> {
    a: &'a Sample,
    b: &'a Sample,
    joined: Joined<'a>,
    z: f64,
    /// Why nothing over the join can be estimated, if so.
    blind: Option<String>,
}

/// The fewest keys kept by both samples for a correlation or R²: from fewer, a correlation is
/// noise that even the floored interval does not cover (on the real tables of
/// `benches/case_study.py`, 4 joined months gave 0.996 in [0.90, 1.00] for a true 0.29).
pub const MIN_JOINED: usize = 10;

impl<'a> JoinEstimator<'a> {
    /// Refuses samples of different methods or seeds (not coordinated) and a confidence
    /// outside `(0, 1)`.
    pub fn new(a: &'a Sample, b: &'a Sample, confidence: f64) -> Result<Self> {
        let joined = Joined::new(a, b)?;
        let blind = blind_spot(a, "the left sketch").or_else(|| blind_spot(b, "the right sketch"));
        Ok(JoinEstimator {
            a,
            b,
            joined,
            z: z_value(confidence)?,
            blind,
        })
    }

    /// Keys kept by both samples.
    pub fn joined(&self) -> usize {
        self.joined.rows.len()
    }

    fn interval(&self, (s, v): (f64, f64)) -> Interval {
        let h = self.z * v.max(0.0).sqrt();
        Interval {
            estimate: s,
            lower: s - h,
            upper: s + h,
        }
    }

    /// The number of keys both tables have.
    pub fn join_size(&self) -> Estimate {
        if let Some(why) = &self.blind {
            return Err(why.clone());
        }
        let cap = self.a.rows_seen.min(self.b.rows_seen) as f64;
        let seen = self.joined() as f64;
        let i = self.interval(self.joined.sum(|_, _| 1.0));
        Ok(Interval {
            estimate: i.estimate.min(cap),
            lower: i.lower.max(seen).min(cap),
            upper: i.upper.min(cap),
        })
    }

    /// `Σ_{i ∈ A ⋈ B} a_{i,ca} b_{i,cb}` (0-based columns).
    pub fn inner_product(&self, ca: usize, cb: usize) -> Result<Estimate> {
        check_column(self.a, ca, "the left sketch")?;
        check_column(self.b, cb, "the right sketch")?;
        // Keys a sample never keeps have a zero row there: they add nothing to this sum, so
        // the estimate is unbiased even then.
        Ok(Ok(self.interval(
            self.joined.sum(|ra, rb| value(ra, ca) * value(rb, cb)),
        )))
    }

    /// Why a correlation or R² cannot be estimated from this join, if so.
    fn too_small(&self) -> Option<String> {
        if let Some(why) = &self.blind {
            return Some(why.clone());
        }
        let n = self.joined();
        (n < MIN_JOINED).then(|| {
            format!(
                "only {n} key(s) are kept by both sketches (at least {MIN_JOINED} are needed): \
                 the tables share few keys, or the sketches are too small to catch them"
            )
        })
    }

    /// The Pearson correlation over the join of column `ca` of the left table with column `cb`
    /// of the right (0-based).
    pub fn correlation(&self, ca: usize, cb: usize) -> Result<Estimate> {
        check_column(self.a, ca, "the left sketch")?;
        check_column(self.b, cb, "the right sketch")?;
        if let Some(why) = self.too_small() {
            return Ok(Err(why));
        }
        let xy: Vec<(f64, f64, f64)> = self
            .joined
            .rows
            .iter()
            .map(|&(ra, rb, p)| (value(ra, ca), value(rb, cb), 1.0 / p))
            .collect();
        let n: f64 = xy.iter().map(|t| t.2).sum();
        let mx = xy.iter().map(|t| t.0 * t.2).sum::<f64>() / n;
        let my = xy.iter().map(|t| t.1 * t.2).sum::<f64>() / n;
        let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
        for &(x, y, w) in &xy {
            let (dx, dy) = (x - mx, y - my);
            sxx += w * dx * dx;
            syy += w * dy * dy;
            sxy += w * dx * dy;
        }
        let constant = |s: f64, m: f64| s <= 1e-24 * n * (1.0 + m * m);
        if constant(sxx, mx) || constant(syy, my) {
            let side = if constant(sxx, mx) { "left" } else { "right" };
            return Ok(Err(format!(
                "the {side} column is constant over the keys kept by both sketches: a correlation \
                 is undefined"
            )));
        }
        let r = (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0);
        let (sx, sy) = ((sxx / n).sqrt(), (syy / n).sqrt());
        let z: Vec<f64> = xy
            .iter()
            .map(|&(x, y, _)| {
                let (u, v) = ((x - mx) / sx, (y - my) / sy);
                (u * v - r * (u * u + v * v) / 2.0) / n
            })
            .collect();
        let se = self.joined.variance(&z).sqrt();
        // The floor: Fisher's `Var(atanh r) ≈ 1/(n − 3)` for a sample of `n` pairs, times the
        // share of the join the sample left out (`1 − p̄`, 0 when every key was kept). The delta
        // method alone is far too confident on a handful of joined keys.
        let sum_sq: f64 = xy.iter().map(|t| t.2 * t.2).sum();
        let n_eff = n * n / sum_sq;
        let unseen = (1.0 - xy.len() as f64 / n).max(0.0);
        let floor = match (unseen > 0.0, n_eff > 3.0) {
            (false, _) => 0.0,
            (true, true) => (unseen / (n_eff - 3.0)).sqrt(),
            (true, false) => f64::INFINITY,
        };
        Ok(Ok(fisher_interval(r, se, floor, self.z)))
    }

    /// The R² of the ridge regression (intercept, penalty `lambda` on the slopes) of column
    /// `target` of the left table on every column of the right table, over the join.
    pub fn r2(&self, target: usize, lambda: f64) -> Result<Estimate> {
        check_column(self.a, target, "the left sketch")?;
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(Error::Config(format!("lambda must be ≥ 0, got {lambda}")));
        }
        if let Some(why) = self.too_small() {
            return Ok(Err(why));
        }
        let m = self.b.dim;
        let rows = &self.joined.rows;
        if lambda == 0.0 && rows.len() <= m + 1 {
            return Ok(Err(format!(
                "only {} key(s) are kept by both sketches for {m} regressor column(s) and an \
                 intercept: the fit is not determined; set lambda > 0, or sketch with a larger size",
                rows.len()
            )));
        }
        // Weighted means, then the centred normal equations.
        let mut x = vec![0.0; rows.len() * m];
        let mut y = Vec::with_capacity(rows.len());
        let mut w = Vec::with_capacity(rows.len());
        for (k, &(ra, rb, p)) in rows.iter().enumerate() {
            for (&j, &v) in rb.indices.iter().zip(&rb.values) {
                x[k * m + j as usize] = v;
            }
            y.push(value(ra, target));
            w.push(1.0 / p);
        }
        let n: f64 = w.iter().sum();
        let my = y.iter().zip(&w).map(|(y, w)| y * w).sum::<f64>() / n;
        let mut mx = vec![0.0; m];
        for (row, wk) in x.chunks_exact(m).zip(&w) {
            for (acc, v) in mx.iter_mut().zip(row) {
                *acc += wk * v / n;
            }
        }
        for row in x.chunks_exact_mut(m) {
            for (v, mean) in row.iter_mut().zip(&mx) {
                *v -= mean;
            }
        }
        for v in &mut y {
            *v -= my;
        }
        let tss: f64 = y.iter().zip(&w).map(|(y, w)| w * y * y).sum();
        if tss <= 1e-24 * n * (1.0 + my * my) {
            return Ok(Err(
                "the target is constant over the keys kept by both sketches: R² is undefined"
                    .into(),
            ));
        }
        let mut g = Mat::<f64>::zeros(m, m);
        let mut c = Mat::<f64>::zeros(m, 1);
        for ((row, yk), wk) in x.chunks_exact(m).zip(&y).zip(&w) {
            for i in 0..m {
                c[(i, 0)] += wk * row[i] * yk;
                for j in 0..m {
                    g[(i, j)] += wk * row[i] * row[j];
                }
            }
        }
        for i in 0..m {
            g[(i, i)] += lambda;
        }
        g.partial_piv_lu().solve_in_place(&mut c);
        let beta: Vec<f64> = (0..m).map(|i| c[(i, 0)]).collect();
        if beta.iter().any(|v| !v.is_finite()) {
            return Ok(Err(format!(
                "the right table's columns are collinear over the {} keys kept by both \
                 sketches: set lambda > 0",
                rows.len()
            )));
        }
        let e: Vec<f64> = x
            .chunks_exact(m)
            .zip(&y)
            .map(|(row, yk)| yk - row.iter().zip(&beta).map(|(v, b)| v * b).sum::<f64>())
            .collect();
        let rss: f64 = e.iter().zip(&w).map(|(e, w)| w * e * e).sum();
        // The fit's own optimism: Kish's effective sample size of the weighted sample, and the
        // adjusted R² over it (the in-sample R² of a small joined sample overstates the join's).
        let n_eff = n * n / w.iter().map(|w| w * w).sum::<f64>();
        let adjust = ((n_eff - 1.0) / (n_eff - m as f64 - 1.0)).max(1.0);
        let r2 = (1.0 - adjust * rss / tss).clamp(0.0, 1.0);
        let z: Vec<f64> = e
            .iter()
            .zip(&y)
            .map(|(e, yk)| ((1.0 - r2) * yk * yk - e * e) / tss)
            .collect();
        let h = self.z * self.joined.variance(&z).sqrt();
        Ok(Ok(Interval {
            estimate: r2,
            lower: (r2 - h).max(0.0),
            upper: (r2 + h).min(1.0),
        }))
    }
}

/// The interval `tanh(atanh(r) ± z · s)` on Fisher's scale, with `s` the larger of the
/// delta method's `se / (1 − r²)` (`se` the standard error of `r`) and `floor`.
fn fisher_interval(r: f64, se: f64, floor: f64, z: f64) -> Interval {
    let sf = if 1.0 - r.abs() < 1e-12 {
        floor
    } else {
        (se / (1.0 - r * r)).max(floor)
    };
    if sf == 0.0 {
        return Interval {
            estimate: r,
            lower: r,
            upper: r,
        };
    }
    let f = r.clamp(-1.0 + 1e-12, 1.0 - 1e-12).atanh();
    Interval {
        estimate: r,
        lower: (f - z * sf).tanh(),
        upper: (f + z * sf).tanh(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::priority::PrioritySketch;
    use super::super::threshold::ThresholdSketch;
    use super::super::{ExactSketch, Weights};
    use super::*;
    use crate::hash::Key;

    #[test]
    fn the_normal_quantile_is_accurate() {
        for (c, z) in [
            (0.95, 1.959963984540054),
            (0.9, 1.6448536269514722),
            (0.99, 2.5758293035489004),
            (0.5, 0.6744897501960817),
            (0.999999, 4.891638475698965),
        ] {
            let got = z_value(c).unwrap();
            assert!((got - z).abs() < 2e-9 * z, "{c}: {got} vs {z}");
        }
        assert!(z_value(1.0).is_err() && z_value(0.0).is_err() && z_value(f64::NAN).is_err());
    }

    /// A query table (keys 0..n, target y) and a candidate (keys offset.., x correlated with y
    /// on the shared keys, plus a second noise column). The values come from their own random
    /// stream: drawn from `u(key)` under other seeds they would correlate slightly with the
    /// samples' selection (measured: the correlation's spread over seeds 12 % above theory).
    struct Pair {
        left: Vec<(i64, Vec<f64>)>,
        right: Vec<(i64, Vec<f64>)>,
    }

    fn pair(n: usize, offset: i64, rho: f64, seed: u64) -> Pair {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut g = || -> f64 { StandardNormal.sample(&mut rng) };
        // Values by key over the union of both tables' keys 0 .. offset + n.
        let all: Vec<[f64; 3]> = (0..offset as usize + n).map(|_| [g(), g(), g()]).collect();
        let left = (0..n as i64)
            .map(|k| (k, vec![all[k as usize][0] + 3.0]))
            .collect();
        let right = (offset..offset + n as i64)
            .map(|k| {
                let [y, noise, other] = all[k as usize];
                let x = rho * (y + 3.0) + (1.0 - rho * rho).sqrt() * noise;
                (k, vec![x, other])
            })
            .collect();
        Pair { left, right }
    }

    /// The exact values over the join: size, correlation of left 0 with right 0, R² of left 0
    /// on both right columns, inner product of left 0 with right 0.
    fn truth(p: &Pair) -> (f64, f64, f64, f64) {
        let exact = |t: &[(i64, Vec<f64>)]| {
            let mut s = ExactSketch::new(t[0].1.len(), 1).with_weights(Weights::Uniform);
            t.iter().for_each(|(k, r)| s.update(Key::Int(*k), r));
            s.finish()
        };
        let (a, b) = (exact(&p.left), exact(&p.right));
        let e = JoinEstimator::new(&a, &b, 0.95).unwrap();
        let one = |x: Estimate| {
            let x = x.unwrap();
            assert_eq!(
                (x.lower, x.upper),
                (x.estimate, x.estimate),
                "exact: width 0"
            );
            x.estimate
        };
        (
            one(e.join_size()),
            one(e.correlation(0, 0).unwrap()),
            one(e.r2(0, 0.0).unwrap()),
            one(e.inner_product(0, 0).unwrap()),
        )
    }

    fn sample(
        t: &[(i64, Vec<f64>)],
        method: &str,
        k: usize,
        weights: Weights,
        seed: u64,
    ) -> Sample {
        let d = t[0].1.len();
        match method {
            "priority" => {
                let mut s = PrioritySketch::new(k, d, seed).with_weights(weights);
                t.iter().for_each(|(key, r)| s.update(Key::Int(*key), r));
                s.finish()
            }
            _ => {
                let mut s = ThresholdSketch::new(k, d, seed).with_weights(weights);
                t.iter().for_each(|(key, r)| s.update(Key::Int(*key), r));
                s.finish()
            }
        }
    }

    /// Exact sketches give the textbook values: a planted correlation on a half overlap.
    #[test]
    fn exact_sketches_give_the_exact_join_statistics() {
        let p = pair(400, 200, 0.8, 3);
        let (size, r, r2, _) = truth(&p);
        assert_eq!(size, 200.0);
        // Against a direct computation over the shared keys 200..400.
        let ys: Vec<f64> = p.left[200..].iter().map(|r| r.1[0]).collect();
        let xs: Vec<f64> = p.right[..200].iter().map(|r| r.1[0]).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (my, mx) = (mean(&ys), mean(&xs));
        let cov: f64 = ys.iter().zip(&xs).map(|(y, x)| (y - my) * (x - mx)).sum();
        let vy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
        let vx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        let direct = cov / (vx * vy).sqrt();
        assert!((r - direct).abs() < 1e-12, "{r} vs {direct}");
        assert!((0.6..0.95).contains(&r));
        // R² on both columns is at least the squared correlation with the first.
        assert!(r2 >= r * r - 1e-12 && r2 < 1.0, "{r2} vs {}", r * r);
    }

    /// Join size and inner product are unbiased across seeds (Horvitz–Thompson), for both
    /// samplers and both weightings.
    #[test]
    fn join_size_and_inner_product_are_unbiased() {
        let p = pair(1500, 900, 0.6, 5);
        let (size, _, _, ip) = truth(&p);
        for method in ["priority", "threshold"] {
            for weights in [Weights::Uniform, Weights::Norm] {
                let trials = 300;
                let (mut s1, mut s2, mut q1, mut q2) = (0.0, 0.0, 0.0, 0.0);
                for seed in 0..trials {
                    let a = sample(&p.left, method, 150, weights, 1000 + seed);
                    let b = sample(&p.right, method, 150, weights, 1000 + seed);
                    let e = JoinEstimator::new(&a, &b, 0.95).unwrap();
                    let j = e.join_size().unwrap().estimate;
                    let i = e.inner_product(0, 0).unwrap().unwrap().estimate;
                    (s1, s2, q1, q2) = (s1 + j, s2 + j * j, q1 + i, q2 + i * i);
                }
                let t = trials as f64;
                for (what, sum, sq, exact) in [("size", s1, s2, size), ("ip", q1, q2, ip)] {
                    let mean = sum / t;
                    let se = ((sq / t - mean * mean).max(0.0) / t).sqrt();
                    assert!(
                        (mean - exact).abs() <= 4.0 * se,
                        "{method}/{weights:?} {what}: mean {mean} vs {exact} (se {se})"
                    );
                }
            }
        }
    }

    /// The 95 % intervals cover the truth in at least 95 % − 3 standard errors of 600 seeded
    /// trials, for join size, correlation and R², at a 40 % overlap.
    #[test]
    fn the_intervals_cover_at_the_nominal_level() {
        let p = pair(3000, 1800, 0.5, 7);
        let (size, r, r2, _) = truth(&p);
        let trials = 600u64;
        let floor = 0.95 - 3.0 * (0.95f64 * 0.05 / trials as f64).sqrt();
        let z = z_value(0.95).unwrap();
        for method in ["priority", "threshold"] {
            let mut hits = [0u32; 3];
            // Per estimate: Σ estimate, Σ estimate², Σ half-width / z (the standard error).
            let mut spread = [(0.0, 0.0, 0.0); 3];
            for seed in 0..trials {
                let a = sample(&p.left, method, 400, Weights::Uniform, 5000 + seed);
                let b = sample(&p.right, method, 400, Weights::Uniform, 5000 + seed);
                let e = JoinEstimator::new(&a, &b, 0.95).unwrap();
                let ests = [
                    e.join_size(),
                    e.correlation(0, 0).unwrap(),
                    e.r2(0, 0.0).unwrap(),
                ];
                for (k, (est, truth)) in ests.iter().zip([size, r, r2]).enumerate() {
                    let i = est.as_ref().expect("enough keys");
                    if i.lower <= truth && truth <= i.upper {
                        hits[k] += 1;
                    }
                    spread[k].0 += i.estimate;
                    spread[k].1 += i.estimate * i.estimate;
                    spread[k].2 += (i.upper - i.lower) / (2.0 * z);
                }
            }
            // Not merely wide enough: the intervals' standard error is the estimates' spread
            // over the seeds, within 12 %.
            for (what, (s1, s2, se)) in ["join size", "correlation", "r2"].iter().zip(spread) {
                let t = trials as f64;
                let sd = (s2 / t - (s1 / t).powi(2)).sqrt();
                let ratio = se / t / sd;
                assert!(
                    (0.88..1.12).contains(&ratio),
                    "{method} {what}: se/sd = {ratio}"
                );
            }
            for (what, hit) in ["join size", "correlation", "r2"].iter().zip(hits) {
                let coverage = hit as f64 / trials as f64;
                assert!(
                    coverage >= floor,
                    "{method} {what}: coverage {coverage} < {floor}"
                );
            }
        }
    }

    #[test]
    fn small_or_blind_joins_give_a_reason_not_a_nan() {
        // Disjoint keys: nothing joined.
        let p = pair(300, 300, 0.5, 1);
        let a = sample(&p.left, "priority", 50, Weights::Uniform, 1);
        let b = sample(&p.right, "priority", 50, Weights::Uniform, 1);
        let e = JoinEstimator::new(&a, &b, 0.95).unwrap();
        assert_eq!(e.join_size().unwrap().estimate, 0.0);
        let why = e.correlation(0, 0).unwrap().unwrap_err();
        assert!(why.contains("only 0 key(s)"), "{why}");
        assert!(e.r2(0, 0.0).unwrap().is_err());
        // All-zero rows under norm weights: the sketch cannot see those keys.
        let mut zeros = p.left.clone();
        zeros[3].1 = vec![0.0];
        let a = sample(&zeros, "priority", 50, Weights::Norm, 1);
        let b = sample(&p.right, "priority", 50, Weights::Norm, 1);
        let e = JoinEstimator::new(&a, &b, 0.95).unwrap();
        let why = e.join_size().unwrap_err();
        assert!(
            why.contains("1 of its rows are all zero") && why.contains("uniform"),
            "{why}"
        );
        // Column positions out of range and other seeds are errors, not reasons.
        assert!(e.correlation(1, 0).is_err());
        let c = sample(&p.right, "priority", 50, Weights::Norm, 2);
        assert!(JoinEstimator::new(&a, &c, 0.95).is_err());
    }
}
