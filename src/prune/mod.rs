//! Cores for data-pruning scores: EL2N and GraNd of
//! M. Paul, S. Ganguli, G. K. Dziugaite, *Deep Learning on a Data Diet: Finding Important
//! Examples Early in Training*, NeurIPS 2021, arXiv:2107.07075 (§3 of `ALGORITHMS.md`).
//!
//! For an example with logits `z` (`K` classes), `p = softmax(z)` and target `y` (one-hot `e_y`,
//! or a soft label distribution):
//! * **EL2N** `= ‖p − y‖₂` (the paper's Eq. 2, per run; the operator averages runs by id);
//! * **GraNd** for a last linear layer `z = W h + b` with cross-entropy loss: `∇_W ℓ = (p − y) hᵀ`
//!   and `∇_b ℓ = p − y`, so `‖∇_{W,b} ℓ‖ = ‖p − y‖ · sqrt(‖h‖² + 1)` (without a bias, drop the
//!   `+ 1`). This is exact GraNd for softmax regression on `h` and a lower bound of the full
//!   network's gradient norm; [`proxy`] has the exact norm of a one-hidden-layer model.
//!
//! Pure functions on slices: no Arrow, no I/O. The operator layer validates shapes and labels
//! through these same functions, so the errors are the same everywhere.

pub mod proxy;

use crate::{Error, Result};

/// What an example's output is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target<'a> {
    /// An integer class in `[0, K)`: the one-hot `e_y`.
    Class(i64),
    /// A label distribution over the `K` classes (one-hot or soft); must be finite,
    /// non-negative and sum to 1 (within `1e-6`).
    Distribution(&'a [f64]),
}

/// `p = softmax(z)` into `p`, with the maximum subtracted first so large logits cannot
/// overflow. Fails on a non-finite logit.
pub fn softmax_into(z: &[f64], p: &mut Vec<f64>) -> Result<()> {
    p.clear();
    if z.is_empty() {
        return Err(Error::Input(
            "empty logits: at least one class is needed".into(),
        ));
    }
    // One pass for the maximum and the finiteness check (NaN and ±∞ make the sum non-finite).
    let mut max = f64::NEG_INFINITY;
    let mut check = 0.0;
    for &v in z {
        max = max.max(v);
        check += v * 0.0;
    }
    if !check.is_finite() {
        let i = z.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(Error::Input(format!(
            "logit {i} is {} (logits must be finite)",
            z[i]
        )));
    }
    // The exponentials first (the batch kernel's branch-free loop), then their sum.
    p.extend(z.iter().map(|v| v - max));
    exp_nonpositive_in_place(p);
    let sum: f64 = p.iter().sum();
    let inv = 1.0 / sum;
    p.iter_mut().for_each(|v| *v *= inv);
    Ok(())
}

/// EL2N of many rows at once, for class labels: `z` holds `labels.len()` rows of `k` logits
/// (`f32` or `f64`, read as `f64`), row-major; one score per row is appended to `out`. The
/// same arithmetic as [`softmax_into`] then [`el2n`] row by row — bit for bit (a test pins
/// it) — but the exponentials of the whole batch go through one flat loop the compiler
/// vectorises, instead of a loop of `k` per row (10 classes leave a SIMD loop mostly prologue
/// and remainder), and eight rows' sums are in flight at once. `e` is scratch. Returns `None`,
/// appending nothing, if a logit is not finite or a label is outside `[0, k)`: the caller
/// then goes row by row to report which row.
pub fn el2n_rows<T: Copy + Into<f64>>(
    z: &[T],
    k: usize,
    labels: &[i64],
    e: &mut Vec<f64>,
    out: &mut Vec<f64>,
) -> Option<()> {
    let n = labels.len();
    assert_eq!(z.len(), n * k, "{n} rows of {k} logits");
    let finite = z.iter().fold(true, |ok, &v| ok & v.into().is_finite());
    let in_range = labels
        .iter()
        .fold(true, |ok, &y| ok & (0..k as i64).contains(&y));
    if k == 0 || !finite || !in_range {
        return None;
    }
    e.clear();
    for row in z.chunks_exact(k) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v.into()));
        e.extend(row.iter().map(|&v| v.into() - max));
    }
    exp_nonpositive_in_place(e);
    out.reserve(n);
    let mut blocks = e.chunks_exact(8 * k);
    let mut block_labels = labels.chunks_exact(8);
    for (p, y) in (&mut blocks).zip(&mut block_labels) {
        out.extend(el2n_block::<8>(p, y, k));
    }
    for (p, y) in blocks
        .remainder()
        .chunks_exact(k)
        .zip(block_labels.remainder())
    {
        out.extend(el2n_block::<1>(p, std::slice::from_ref(y), k));
    }
    Some(())
}

/// EL2N of `R` consecutive rows of `k` exponentials `p` (not yet normalised), one accumulator
/// per row: each row's sums still run over its classes in order (the bits of `softmax_into` +
/// `el2n`), with `R` chains in flight instead of one. `(p − t)²` with `t` = 1 at the label
/// and 0 elsewhere is `el2n`'s `(1 − p)²` / `p²` exactly (`p − 1 = −(1 − p)` and `p − 0 = p`).
#[inline(always)]
fn el2n_block<const R: usize>(p: &[f64], labels: &[i64], k: usize) -> [f64; R] {
    let mut sum = [0.0; R];
    for j in 0..k {
        for (r, s) in sum.iter_mut().enumerate() {
            *s += p[r * k + j];
        }
    }
    let inv = sum.map(|s| 1.0 / s);
    let mut sq = [0.0; R];
    for j in 0..k {
        for r in 0..R {
            let v = p[r * k + j] * inv[r];
            let t = if labels[r] == j as i64 { 1.0 } else { 0.0 };
            sq[r] += (v - t) * (v - t);
        }
    }
    sq.map(f64::sqrt)
}

/// [`exp_nonpositive`] of every element, in place: eight at a time, so the compiler keeps
/// several independent polynomial chains in flight (one chain is latency-bound), and on x86-64
/// with AVX2 (checked at run time) four lanes per register instead of two. No fused
/// multiply-add is used on any path, so every machine gives the same bits as the scalar
/// function (the `el2n_rows` test pins that).
pub fn exp_nonpositive_in_place(xs: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { exp_in_place_avx2(xs) };
    }
    exp_in_place(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_in_place_avx2(xs: &mut [f64]) {
    exp_in_place(xs)
}

#[inline(always)]
fn exp_in_place(xs: &mut [f64]) {
    let mut chunks = xs.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut y = [0.0; 8];
        for (y, x) in y.iter_mut().zip(c.iter()) {
            *y = exp_nonpositive(*x);
        }
        c.copy_from_slice(&y);
    }
    for x in chunks.into_remainder() {
        *x = exp_nonpositive(*x);
    }
}

/// `eˣ` for `x ≤ 0` (softmax's `z − max z`), without a libm call so the compiler can
/// vectorise a row's loop: Cody–Waite reduction `x = k·ln 2 + r`, `|r| ≤ ln 2 / 2`, with
/// `ln 2` split in two (fdlibm's `ln2_hi`, whose low bits are zero, makes `k·ln2_hi` exact),
/// a degree-13 Taylor polynomial for `eʳ` (truncation below 5·10⁻¹⁸ relative), and `2ᵏ` built
/// from its bits. Agrees with `f64::exp` to 2.2·10⁻¹⁶ relative on a grid of 2·10⁶ points over
/// `[−708, 0]` (the test pins ≤ 5·10⁻¹⁶); values below `e⁻⁷⁰⁸` (≈ 3·10⁻³⁰⁸, the subnormal
/// range) are returned as 0.
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2 (6.93147180369123816490e-01 and 1.90821492927058770002e-10).
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // Adding 1.5·2⁵² rounds to the nearest integer and leaves it in the low mantissa bits.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    let xc = x.max(-708.0);
    let shifted = xc * LOG2E + SHIFTER;
    let k = shifted - SHIFTER;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    // Horner for Σ_{i ≤ 13} rⁱ / i!.
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // 2ᵏ: k ∈ [−1022, 0] here, a normal number. The low 32 bits of `shifted` hold k.
    let two_k = f64::from_bits(((shifted.to_bits() as i32 as i64 + 1023) as u64) << 52);
    if x < -708.0 {
        0.0
    } else {
        p * two_k
    }
}

/// Checks a probability vector given directly (a `probs` column): finite, in `[0, 1]`, sums
/// to 1 within `1e-6`.
pub fn check_probabilities(p: &[f64]) -> Result<()> {
    check_distribution("probabilities", p)
}

fn check_distribution(what: &str, p: &[f64]) -> Result<()> {
    if p.is_empty() {
        return Err(Error::Input(format!("empty {what}")));
    }
    if let Some(i) = p
        .iter()
        .position(|v| !v.is_finite() || *v < 0.0 || *v > 1.0 + 1e-12)
    {
        return Err(Error::Input(format!(
            "{what}: entry {i} is {} (must be in [0, 1])",
            p[i]
        )));
    }
    let sum: f64 = p.iter().sum();
    if (sum - 1.0).abs() > 1e-6 {
        return Err(Error::Input(format!(
            "{what} sum to {sum}, not 1 (tolerance 1e-6)"
        )));
    }
    Ok(())
}

/// EL2N `‖p − y‖₂` for probabilities `p` over `K = p.len()` classes.
///
/// For a class label this equals `sqrt(Σ_k p_k² − 2 p_y + 1)`, but is computed as
/// `sqrt(Σ_{k≠y} p_k² + (1 − p_y)²)`: the expanded form cancels catastrophically for
/// confident correct predictions (it returned 0 for a true 2·10⁻¹¹). It lies in `[0, √2]`.
pub fn el2n(p: &[f64], target: Target<'_>) -> Result<f64> {
    let k = p.len();
    match target {
        Target::Class(y) => {
            if y < 0 || y as usize >= k {
                return Err(Error::Input(format!(
                    "label {y} is outside [0, {k}) for {k} classes"
                )));
            }
            let y = y as usize;
            let sq: f64 = p
                .iter()
                .enumerate()
                .map(|(k, v)| if k == y { (1.0 - v) * (1.0 - v) } else { v * v })
                .sum();
            Ok(sq.sqrt())
        }
        Target::Distribution(q) => {
            if q.len() != k {
                return Err(Error::Input(format!(
                    "the label has {} entries but the output has {k} classes",
                    q.len()
                )));
            }
            check_distribution("label distribution", q)?;
            Ok(p.iter()
                .zip(q)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt())
        }
    }
}

/// GraNd of a last linear layer from its EL2N and the squared norm of its input `h`:
/// `‖p − y‖ · sqrt(‖h‖² + 1)` with a bias, `‖p − y‖ · ‖h‖` without.
pub fn grand_last_layer(el2n: f64, h_norm_sq: f64, bias: bool) -> f64 {
    el2n * (h_norm_sq + if bias { 1.0 } else { 0.0 }).sqrt()
}

/// Mean and sample standard deviation (`n − 1`; `None` below two values) of `values`, sorted
/// in place first so the result is bit-identical for any order of the same values (scores
/// averaged over runs read in any order agree exactly).
pub fn mean_std(values: &mut [f64]) -> (Option<f64>, Option<f64>) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return (None, None);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| {
        let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    (Some(mean), std)
}

/// AUROC of a score at telling flagged examples (e.g. known flipped labels) from the rest:
/// the probability that a random flagged example scores above a random unflagged one, ties
/// counting half (the Mann–Whitney statistic). Sorts `pairs` by score. `NaN` when either group
/// is empty.
pub fn auroc(pairs: &mut [(f64, bool)]) -> f64 {
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut positives) = (0.0, 0.0);
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let mid_rank = (i + j + 1) as f64 / 2.0;
        for p in &pairs[i..j] {
            if p.1 {
                rank_sum += mid_rank;
                positives += 1.0;
            }
        }
        i = j;
    }
    let negatives = pairs.len() as f64 - positives;
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn probs(z: &[f64]) -> Vec<f64> {
        let mut p = Vec::new();
        softmax_into(z, &mut p).unwrap();
        p
    }

    proptest! {
        /// EL2N equals the definition ‖p − e_y‖ (to 1e-12) and lies in [0, √2].
        #[test]
        fn el2n_is_the_distance_to_the_one_hot_label(
            z in proptest::collection::vec(-30.0f64..30.0, 1..12),
            y_frac in 0.0f64..1.0,
        ) {
            let p = probs(&z);
            let k = p.len();
            let y = ((k as f64 * y_frac) as usize).min(k - 1);
            let mut onehot = vec![0.0; k];
            onehot[y] = 1.0;
            let direct: f64 = p.iter().zip(&onehot).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
            let fast = el2n(&p, Target::Class(y as i64)).unwrap();
            prop_assert!((fast - direct).abs() <= 1e-12, "{fast} vs {direct}");
            prop_assert!((0.0..=2f64.sqrt() + 1e-12).contains(&fast));
            let soft = el2n(&p, Target::Distribution(&onehot)).unwrap();
            prop_assert!((soft - direct).abs() <= 1e-12);
        }

        /// The batch kernel gives the row-by-row scores bit for bit, and refuses (appending
        /// nothing) a batch with a non-finite logit or a label outside [0, k).
        #[test]
        fn el2n_rows_is_the_row_by_row_score_bit_for_bit(
            k in 1usize..13,
            rows in proptest::collection::vec(
                (proptest::collection::vec(-800.0f64..800.0, 12), 0.0f64..1.0),
                1..40,
            ),
            bad in 0usize..3,
        ) {
            let z: Vec<f64> = rows.iter().flat_map(|(r, _)| r[..k].iter().copied()).collect();
            let labels: Vec<i64> = rows
                .iter()
                .map(|(_, f)| ((k as f64 * f) as i64).min(k as i64 - 1))
                .collect();
            let (mut e, mut out) = (Vec::new(), vec![7.0]);
            el2n_rows(&z, k, &labels, &mut e, &mut out).unwrap();
            prop_assert_eq!(out.len(), labels.len() + 1);
            for (i, (row, &y)) in z.chunks_exact(k).zip(&labels).enumerate() {
                let one = el2n(&probs(row), Target::Class(y)).unwrap();
                prop_assert_eq!(out[i + 1].to_bits(), one.to_bits(), "row {}", i);
            }
            // f32 logits (what most model logs hold) are read as the f64 of each value.
            let z32: Vec<f32> = z.iter().map(|&v| v as f32).collect();
            let mut out32 = Vec::new();
            el2n_rows(&z32, k, &labels, &mut e, &mut out32).unwrap();
            for (i, (row, &y)) in z32.chunks_exact(k).zip(&labels).enumerate() {
                let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
                let one = el2n(&probs(&row), Target::Class(y)).unwrap();
                prop_assert_eq!(out32[i].to_bits(), one.to_bits(), "f32 row {}", i);
            }
            let (mut z, mut labels) = (z, labels);
            let (middle, last) = (z.len() / 2, labels.len() - 1);
            match bad {
                0 => z[middle] = f64::NAN,
                1 => z[0] = f64::INFINITY,
                _ => labels[last] = k as i64,
            }
            let mut out = Vec::new();
            prop_assert!(el2n_rows(&z, k, &labels, &mut e, &mut out).is_none());
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn exp_nonpositive_agrees_with_libm_to_a_few_ulp() {
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-800.0), 0.0);
        let mut worst = 0.0f64;
        // A dense grid over [−708, 0], plus points near the reduction's boundaries.
        let grid = (0..=2_000_000).map(|i| -708.0 * i as f64 / 2_000_000.0);
        let edges = (1..2000).flat_map(|k| {
            let x = -(k as f64) * std::f64::consts::LN_2 / 2.0;
            [x, x.next_up(), x.next_down()]
        });
        for x in grid.chain(edges) {
            let (fast, libm) = (exp_nonpositive(x), x.exp());
            worst = worst.max((fast - libm).abs() / libm);
        }
        eprintln!("exp_nonpositive: worst relative error {worst:e}");
        assert!(worst <= 5e-16, "worst relative error {worst:e}");
    }

    #[test]
    fn softmax_survives_huge_logits_and_rejects_nan() {
        let p = probs(&[1000.0, 1000.0, -1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-15 && p[2] == 0.0);
        let mut out = Vec::new();
        let err = softmax_into(&[0.0, f64::NAN], &mut out).unwrap_err();
        assert!(err.to_string().contains("logit 1 is NaN"), "{err}");
        assert!(softmax_into(&[], &mut out).is_err());
    }

    #[test]
    fn bad_labels_are_rejected_with_the_reason() {
        let p = probs(&[0.0, 1.0, 2.0]);
        let err = el2n(&p, Target::Class(3)).unwrap_err().to_string();
        assert!(err.contains("label 3 is outside [0, 3)"), "{err}");
        assert!(el2n(&p, Target::Class(-1)).is_err());
        let err = el2n(&p, Target::Distribution(&[0.5, 0.5])).unwrap_err();
        assert!(err.to_string().contains("2 entries"), "{err}");
        let err = el2n(&p, Target::Distribution(&[0.5, 0.6, 0.0])).unwrap_err();
        assert!(err.to_string().contains("sum to"), "{err}");
        assert!(check_probabilities(&[0.2, 0.8]).is_ok());
        assert!(check_probabilities(&[0.2, f64::NAN]).is_err());
    }

    #[test]
    fn auroc_counts_ordered_pairs_and_ties_half() {
        let mut perfect = [(0.1, false), (0.9, true), (0.2, false), (0.8, true)];
        assert_eq!(auroc(&mut perfect), 1.0);
        let mut reversed = [(0.9, false), (0.1, true)];
        assert_eq!(auroc(&mut reversed), 0.0);
        // One positive at 0.5 against negatives 0.5 (tie) and 0.2: (0.5 + 1) / 2.
        let mut tie = [(0.5, true), (0.5, false), (0.2, false)];
        assert_eq!(auroc(&mut tie), 0.75);
    }

    #[test]
    fn grand_scales_el2n_by_the_input_norm() {
        assert!((grand_last_layer(0.5, 3.0, true) - 1.0).abs() < 1e-15);
        assert!((grand_last_layer(0.5, 4.0, false) - 1.0).abs() < 1e-15);
    }
}
