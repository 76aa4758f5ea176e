//! Cores for the top eigenvector of `AᵀA`, where the rows `a_i` of `A` arrive as a stream.
//!
//! Each core is a small state machine: `new(params)`, `update(rows)`, `merge(other)` where the
//! math allows, and `finish() -> Result<TopEigen>`. Rows are passed as one contiguous
//! row-major `&[f64]` buffer of `n × d` values (see [`crate::rows`]).

pub mod exact;
pub mod fd;
pub mod oja;
pub mod pca;
pub mod random_order;

pub use exact::Gram;
pub use fd::FrequentDirections;
pub use oja::Oja;
pub use pca::{CentredFd, Moments, Pca, Scatter};
pub use random_order::{RandomOrder, RandomOrderParams};

/// What the stream-order algorithms (`random-order`, `oja`) must know before the pass: the
/// number of rows `n` (Parquet footers carry it; SQL sources need a `COUNT(*)`) and
/// `‖A‖_F²` — exact from a first pass, or `(n/m) Σ_{i≤m} ‖a_i‖²` from a prefix of `m` rows,
/// which is unbiased when the order is random.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamScale {
    pub rows: u64,
    pub frobenius_sq: f64,
}

/// What every top-eigenvector core reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TopEigen {
    /// Unit-norm estimate of `v_1`; the sign is fixed so that the largest-magnitude component
    /// is positive (the contract says "sign arbitrary"; a fixed rule makes runs comparable).
    pub vector: Vec<f64>,
    /// Estimate of `σ_1²`, the top eigenvalue of `AᵀA`.
    pub eigenvalue: f64,
    /// The second eigenvalue `σ_2²` when the core knows it (the exact core does).
    pub second_eigenvalue: Option<f64>,
    /// `‖A‖_F² = trace(AᵀA)`.
    pub frobenius_sq: f64,
    /// Rows consumed.
    pub rows: u64,
    /// Rows stored verbatim ("heavy" rows in Kacham–Woodruff); zero for the exact core.
    pub heavy_rows: u64,
    /// Bytes of algorithm state held at the end of the pass (counted, not estimated).
    pub state_bytes: u64,
}

/// Whether the CPU has AVX2: the hand-written per-row kernels have a copy compiled for it,
/// chosen at run time (the crate itself targets baseline x86-64, i.e. SSE2).
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `⟨a, b⟩` with four partial sums, so the additions of consecutive terms do not wait on each
/// other and the loop vectorises (a single running sum cannot be reordered by the compiler).
#[inline(always)]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, a_rest) = a.split_at(a.len() - a.len() % 4);
    let (b4, b_rest) = b.split_at(a4.len());
    for (x, y) in a4.chunks_exact(4).zip(b4.chunks_exact(4)) {
        for j in 0..4 {
            acc[j] += x[j] * y[j];
        }
    }
    let tail: f64 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Flips `v` so that its largest-magnitude component is positive (first one on ties).
pub fn canonical_sign(v: &mut [f64]) {
    let mut best = 0usize;
    for (i, x) in v.iter().enumerate() {
        if x.abs() > v[best].abs() {
            best = i;
        }
    }
    if v.get(best).is_some_and(|x| *x < 0.0) {
        v.iter_mut().for_each(|x| *x = -*x);
    }
}

/// Sign-free alignment `⟨u, v⟩² / (‖u‖² ‖v‖²)` ∈ [0, 1]: the metric of every eigenvector test.
pub fn alignment(u: &[f64], v: &[f64]) -> f64 {
    assert_eq!(
        u.len(),
        v.len(),
        "alignment of vectors of different lengths"
    );
    let (mut uv, mut uu, mut vv) = (0.0, 0.0, 0.0);
    for (a, b) in u.iter().zip(v) {
        uv += a * b;
        uu += a * a;
        vv += b * b;
    }
    if uu == 0.0 || vv == 0.0 {
        return 0.0;
    }
    (uv * uv) / (uu * vv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sign_makes_largest_component_positive() {
        let mut v = vec![0.1, -0.9, 0.3];
        canonical_sign(&mut v);
        assert_eq!(v, vec![-0.1, 0.9, -0.3]);
    }

    #[test]
    fn alignment_is_sign_free_and_scale_free() {
        let u = [1.0, 2.0, -3.0];
        let v = [-2.0, -4.0, 6.0];
        assert!((alignment(&u, &v) - 1.0).abs() < 1e-15);
        assert_eq!(alignment(&[1.0, 0.0], &[0.0, 5.0]), 0.0);
    }
}
