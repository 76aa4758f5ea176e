//! Cores for data-pruning scores: EL2N and GraNd of
//! M. Paul, S. Ganguli, G. K. Dziugaite, *Deep Learning on a Data Diet: Finding Important
//! Examples Early in Training*, NeurIPS 2021, arXiv:2107.07075 (§3 of `docs/algorithms.md`).
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
/// it) — laid out for SIMD: rows go in blocks of eight, each block's `z − max z` stored
/// class-major in the scratch `e` (the eight rows' values of class `j` side by side), so the
/// exponentials of the whole batch are one flat loop and every per-row sum is eight lanes
/// added at once, each row still summing its classes in order. On x86-64 with AVX2 (checked at
/// run time) the whole routine is compiled for it; no fused multiply-add on any path, so
/// every machine gives the same bits. Returns `None`, appending nothing, if a logit is not
/// finite or a label is outside `[0, k)`: the caller then goes row by row to report which row.
pub fn el2n_rows<T: Copy + Into<f64>>(
    z: &[T],
    k: usize,
    labels: &[i64],
    e: &mut Vec<f64>,
    out: &mut Vec<f64>,
) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { el2n_rows_avx2(z, k, labels, e, out) };
    }
    el2n_rows_impl(z, k, labels, e, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn el2n_rows_avx2<T: Copy + Into<f64>>(
    z: &[T],
    k: usize,
    labels: &[i64],
    e: &mut Vec<f64>,
    out: &mut Vec<f64>,
) -> Option<()> {
    el2n_rows_impl(z, k, labels, e, out)
}

#[inline(always)]
fn el2n_rows_impl<T: Copy + Into<f64>>(
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
    if e.len() < z.len() {
        e.resize(z.len(), 0.0);
    }
    let e = &mut e[..z.len()];
    let (z_blocks, z_rest) = z.split_at(n / 8 * 8 * k);
    let (e_blocks, e_rest) = e.split_at_mut(z_blocks.len());
    for (zb, eb) in z_blocks
        .chunks_exact(8 * k)
        .zip(e_blocks.chunks_exact_mut(8 * k))
    {
        shift_by_max::<8, T>(zb, k, eb);
    }
    for (zr, er) in z_rest.chunks_exact(k).zip(e_rest.chunks_exact_mut(k)) {
        shift_by_max::<1, T>(zr, k, er);
    }
    exp_in_place(e);
    let (e_blocks, e_rest) = e.split_at(z_blocks.len());
    out.reserve(n);
    let (label_blocks, label_rest) = labels.split_at(n / 8 * 8);
    for (p, y) in e_blocks
        .chunks_exact(8 * k)
        .zip(label_blocks.chunks_exact(8))
    {
        out.extend(el2n_block::<8>(p, y, k));
    }
    for (p, y) in e_rest.chunks_exact(k).zip(label_rest) {
        out.extend(el2n_block::<1>(p, std::slice::from_ref(y), k));
    }
    Some(())
}

/// Writes `z − max z` of `R` consecutive rows of `k` finite logits into `e`, class-major:
/// `e[j·R + r]` is row `r`'s class `j` (for `R = 1`, the row as it is). The `R` maxima are
/// in flight at once (one row's running maximum is a chain of dependent compares). For finite
/// values `if v > m` is `f64::max` up to the sign of a zero maximum, and `v − (±0)` differ only
/// for `v = −0`, where `eˣ` is 1 either way: the exponentials are the row path's bits.
#[inline(always)]
fn shift_by_max<const R: usize, T: Copy + Into<f64>>(z: &[T], k: usize, e: &mut [f64]) {
    // Fixed-size views, so the loops below carry no bounds checks and vectorise.
    let rows: [&[T]; R] = std::array::from_fn(|r| &z[r * k..(r + 1) * k]);
    let mut max = [f64::NEG_INFINITY; R];
    for j in 0..k {
        for (m, row) in max.iter_mut().zip(rows) {
            let v: f64 = row[j].into();
            if v > *m {
                *m = v;
            }
        }
    }
    for (j, column) in e[..k * R].chunks_exact_mut(R).enumerate() {
        let column: &mut [f64; R] = column.try_into().expect("R values");
        for r in 0..R {
            column[r] = rows[r][j].into() - max[r];
        }
    }
}

/// EL2N of `R` rows of `k` exponentials `p` (not yet normalised) stored class-major as
/// [`shift_by_max`] writes them: one accumulator per row, each row's sums still over its
/// classes in order (the bits of `softmax_into` + `el2n`), `R` lanes at once. `(p − t)²` with
/// `t` = 1 at the label and 0 elsewhere is `el2n`'s `(1 − p)²` / `p²` exactly (`p − 1 =
/// −(1 − p)` and `p − 0 = p`).
#[inline(always)]
fn el2n_block<const R: usize>(p: &[f64], labels: &[i64], k: usize) -> [f64; R] {
    // Fixed-size views, so the loops below carry no bounds checks and vectorise.
    let columns = p[..k * R]
        .chunks_exact(R)
        .map(|c| <&[f64; R]>::try_from(c).expect("R values"));
    let labels: [i64; R] = labels[..R].try_into().expect("R labels");
    let mut sum = [0.0; R];
    for column in columns.clone() {
        for r in 0..R {
            sum[r] += column[r];
        }
    }
    let inv = sum.map(|s| 1.0 / s);
    let mut sq = [0.0; R];
    for (j, column) in columns.enumerate() {
        for r in 0..R {
            let v = column[r] * inv[r];
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
/// vectorise the batch loop: the table-driven reduction of Tang (*Table-driven implementation
/// of the exponential function in IEEE floating-point arithmetic*, ACM TOMS 15(2), 1989) with
/// 64 entries: `x = (64m + i)·ln 2 / 64 + r`, `|r| ≤ ln 2 / 128`, `ln 2 / 64` split in two
/// (fdlibm's `ln2_hi`, whose low bits are zero, makes the first product exact), a degree-5
/// Taylor polynomial for `eʳ` (truncation below 4·10⁻¹⁷ relative), `2^(i/64)` from a table of
/// correctly rounded values and `2ᵐ` added to the exponent bits. Agrees with `f64::exp` to a
/// few 10⁻¹⁶ relative on a grid of 2·10⁶ points over `[−708, 0]` and around every reduction
/// boundary (the test pins ≤ 5·10⁻¹⁶); values below `e⁻⁷⁰⁸` (≈ 3·10⁻³⁰⁸, the subnormal range)
/// are returned as 0. (It replaced a degree-13 polynomial over `|r| ≤ ln 2 / 2`: the batch
/// EL2N kernel spent about half its time there.)
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    // 64 / ln 2, and fdlibm's split of ln 2 (6.93147180369123816490e-01 and
    // 1.90821492927058770002e-10) divided by 64 (exactly: a power of two).
    const N_LOG2E: f64 = 64.0 * std::f64::consts::LOG2_E;
    const LN2_HI_N: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000) / 64.0;
    const LN2_LO_N: f64 = f64::from_bits(0x3dea_39ef_3579_3c76) / 64.0;
    // Adding 1.5·2⁵² rounds to the nearest integer and leaves it in the low mantissa bits.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    let xc = x.max(-708.0);
    let shifted = xc * N_LOG2E + SHIFTER;
    let kf = shifted - SHIFTER;
    let r = (xc - kf * LN2_HI_N) - kf * LN2_LO_N;
    // Horner for q = eʳ − 1 ≈ Σ_{1 ≤ i ≤ 5} rⁱ / i! (the 1 is added after scaling, below: one
    // rounding fewer than 2^(i/64)·(1 + q)).
    let q = ((((r * (1.0 / 120.0) + 1.0 / 24.0) * r + 1.0 / 6.0) * r + 0.5) * r + 1.0) * r;
    // The integer 64m + i, from the bits (same binade as SHIFTER), split without a shift
    // right (AVX2 has no arithmetic one for 64-bit lanes): 64m << 46 is m << 52.
    let n = shifted.to_bits().wrapping_sub(SHIFTER.to_bits()) as i64;
    let i = (n & 63) as usize;
    let two_m = ((n - i as i64) << 46) as u64;
    // 2^(i/64)·eʳ ∈ [0.99, 2.01); m ≥ −1022 and, where m = −1022, i ≥ 36: the result is normal.
    let t = f64::from_bits(EXP2_64THS[i]);
    let v = f64::from_bits((t + t * q).to_bits().wrapping_add(two_m));
    if x < -708.0 {
        0.0
    } else {
        v
    }
}

/// `2^(i/64)`, `i = 0..64`, correctly rounded (computed with 60-digit decimal arithmetic).
const EXP2_64THS: [u64; 64] = [
    0x3ff0000000000000,
    0x3ff02c9a3e778061,
    0x3ff059b0d3158574,
    0x3ff0874518759bc8,
    0x3ff0b5586cf9890f,
    0x3ff0e3ec32d3d1a2,
    0x3ff11301d0125b51,
    0x3ff1429aaea92de0,
    0x3ff172b83c7d517b,
    0x3ff1a35beb6fcb75,
    0x3ff1d4873168b9aa,
    0x3ff2063b88628cd6,
    0x3ff2387a6e756238,
    0x3ff26b4565e27cdd,
    0x3ff29e9df51fdee1,
    0x3ff2d285a6e4030b,
    0x3ff306fe0a31b715,
    0x3ff33c08b26416ff,
    0x3ff371a7373aa9cb,
    0x3ff3a7db34e59ff7,
    0x3ff3dea64c123422,
    0x3ff4160a21f72e2a,
    0x3ff44e086061892d,
    0x3ff486a2b5c13cd0,
    0x3ff4bfdad5362a27,
    0x3ff4f9b2769d2ca7,
    0x3ff5342b569d4f82,
    0x3ff56f4736b527da,
    0x3ff5ab07dd485429,
    0x3ff5e76f15ad2148,
    0x3ff6247eb03a5585,
    0x3ff6623882552225,
    0x3ff6a09e667f3bcd,
    0x3ff6dfb23c651a2f,
    0x3ff71f75e8ec5f74,
    0x3ff75feb564267c9,
    0x3ff7a11473eb0187,
    0x3ff7e2f336cf4e62,
    0x3ff82589994cce13,
    0x3ff868d99b4492ed,
    0x3ff8ace5422aa0db,
    0x3ff8f1ae99157736,
    0x3ff93737b0cdc5e5,
    0x3ff97d829fde4e50,
    0x3ff9c49182a3f090,
    0x3ffa0c667b5de565,
    0x3ffa5503b23e255d,
    0x3ffa9e6b5579fdbf,
    0x3ffae89f995ad3ad,
    0x3ffb33a2b84f15fb,
    0x3ffb7f76f2fb5e47,
    0x3ffbcc1e904bc1d2,
    0x3ffc199bdd85529c,
    0x3ffc67f12e57d14b,
    0x3ffcb720dcef9069,
    0x3ffd072d4a07897c,
    0x3ffd5818dcfba487,
    0x3ffda9e603db3285,
    0x3ffdfc97337b9b5f,
    0x3ffe502ee78b3ff6,
    0x3ffea4afa2a490da,
    0x3ffefa1bee615a27,
    0x3fff50765b6e4540,
    0x3fffa7c1819e90d8,
];

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
        let edges = (1..130_000).step_by(7).flat_map(|k| {
            let x = -(k as f64) * std::f64::consts::LN_2 / 128.0;
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
