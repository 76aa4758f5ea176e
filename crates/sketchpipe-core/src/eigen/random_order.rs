//! The random-order-stream top eigenvector of P. Kacham, D. P. Woodruff, *Approximating the
//! Top Eigenvector in Random Order Streams*, NeurIPS 2024, arXiv:2412.11963: heavy rows are
//! stored exactly, the light rows drive a block power method, and the two are combined at the
//! end without forming a `d × d` matrix (§1c of `docs/algorithms.md`, a reconstruction).
//!
//! With `n` rows and `F = ‖A‖_F²` known in advance (`n` from Parquet footers; `F` exact from a
//! first pass or estimated from a prefix, see [`StreamScale`]):
//! 1. A row is **heavy** if `‖a‖² ≥ τ = heavy_factor · F / (d ln² d)`; heavy rows are kept
//!    verbatim in `H` (there are at most `d ln² d / heavy_factor` of them). Keeping them is
//!    necessary, not a shortcut: the paper's lower bound says an algorithm with `o(h d / R)` bits
//!    cannot beat correlation `1 − Ω(1/R²)`.
//! 2. The stream is cut into `p = ⌈2 ln d⌉` consecutive blocks (equal in the paper; see the
//!    deviations below for the lengths used here). Each block's
//!    light rows perform one power step `Y = A_Bᵀ A_B Z`, then `Z ← orth(Y)`. In a random-order
//!    stream each block is a uniform sample of the light rows, so `(n_L / n_B) A_BᵀA_B`
//!    concentrates around `A_LᵀA_L` (matrix Bernstein, which needs every light row small: what
//!    the heavy/light split buys), and the noisy power method converges in `O(log d / log R)`
//!    steps.
//! 3. Output: the top eigenvector of `M = HᵀH + L̂`, where `L̂` approximates `A_LᵀA_L`. It is
//!    computed as the top right singular vector of the stacked `(h + k) × d` matrix
//!    `C = [H; Wᵀ]` with `L̂ = W Wᵀ` — through the smaller of `CCᵀ` and `CᵀC`, so no `d × d`
//!    matrix is formed unless `H` already holds more than `d` rows.
//!
//! Deviations from the pseudo-code of §1c, each an improvement measured by the tests and the
//! gap table of `docs/performance.md`:
//! * **A block of `k` vectors** (subspace iteration, `block_width`, default 4) instead of one:
//!   it converges at rate `σ_{k+1}²/σ_1²` rather than `σ_2²/σ_1²` and represents a light part
//!   whose top directions are close in value.
//! * **Nyström reconstruction** of the light part from the last block:
//!   `L̂ = Y (ZᵀY)⁺ Yᵀ` with `Y = (n_L/n_B) A_BᵀA_B Z`, instead of the rank-one `λ_L z zᵀ`.
//!   It is one more power step's worth of accuracy for free, stays `≼` the block's own light
//!   Gram matrix, and is exact when `Z` spans the light part's top-`k` space.
//! * **A long last block** (`last_block_fraction`, default ½): the last block's product is
//!   what the reconstruction is built from, so its sampling noise is the error floor; the
//!   first `p − 1` power steps only have to turn `Z` towards the top space and share the first
//!   half of the stream. On low-rank data (`n = 20 000`, `d = 128`, `cargo bench --bench
//!   gap_table`) this took `⟨v, v₁⟩²` at `R = 1.5` from 0.9945 (equal blocks, `k = 4`) to
//!   0.9995, and at `R = 2` from 0.9970 to 0.9997.
//! * The light scaling uses the actual count of light rows (`n_L / n_B`) instead of `p`, so
//!   heavy rows removed from a block do not bias the estimate.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{canonical_sign, has_avx2, Gram, StreamScale, TopEigen};
use crate::{Error, Result};

/// Tunable parameters of [`RandomOrder`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomOrderParams {
    /// `c` in the heavy threshold `τ = c · ‖A‖_F² / (d ln² d)`.
    pub heavy_factor: f64,
    /// Number of power steps (= blocks of the stream); `None` means `⌈2 ln d⌉`.
    pub power_steps: Option<usize>,
    /// Vectors in the power-method block (`k`).
    pub block_width: usize,
    /// Bytes allowed for heavy rows; exceeding it is an error that says what to change.
    pub heavy_memory: u64,
    /// Share of the stream given to the last block, whose product is the light part's
    /// reconstruction (the other blocks split the rest evenly); `None` = equal blocks.
    pub last_block_fraction: Option<f64>,
}

impl Default for RandomOrderParams {
    fn default() -> Self {
        RandomOrderParams {
            heavy_factor: 1.0,
            power_steps: None,
            block_width: 4,
            heavy_memory: 1 << 30,
            last_block_fraction: Some(0.5),
        }
    }
}

impl RandomOrderParams {
    /// The number of power steps used for dimension `d`.
    pub fn steps_for(&self, d: usize) -> usize {
        self.power_steps
            .unwrap_or_else(|| (2.0 * (d.max(2) as f64).ln()).ceil() as usize)
            .max(1)
    }

    /// Where each block but the last ends, for a stream of `n` rows and `steps` blocks.
    fn block_ends(&self, n: u64, steps: usize) -> Vec<u64> {
        let last = match (self.last_block_fraction, steps) {
            (_, 1) => n,
            (Some(f), _) => ((n as f64) * f.clamp(0.0, 1.0)).round() as u64,
            (None, _) => n / steps as u64,
        };
        let rest = n - last.min(n);
        let others = (steps - 1) as u64;
        (1..=others)
            .map(|j| (rest * j).div_ceil(others.max(1)))
            .collect()
    }

    /// The heavy threshold on `‖a‖²`.
    pub fn threshold(&self, d: usize, frobenius_sq: f64) -> f64 {
        let ln = (d.max(3) as f64).ln();
        self.heavy_factor * frobenius_sq / (d as f64 * ln * ln)
    }
}

/// The last completed power step: the basis it multiplied and the product.
#[derive(Debug, Clone)]
struct Step {
    z: Mat<f64>,
    y: Mat<f64>,
    light_rows: u64,
}

/// The streaming state (see the module docs).
#[derive(Debug, Clone)]
pub struct RandomOrder {
    d: usize,
    params: RandomOrderParams,
    tau: f64,
    steps: usize,
    /// End (exclusive stream position) of each block but the last.
    block_ends: Vec<u64>,
    /// Heavy rows, row-major `h × d`.
    heavy: Vec<f64>,
    /// Block width `k`.
    k: usize,
    /// Current orthonormal basis `Z` and the running product `Y = A_BᵀA_B Z`, both `d × k`
    /// row-major (row `i` holds the `k` entries the `i`-th coordinate of a row multiplies).
    zr: Vec<f64>,
    yr: Vec<f64>,
    /// `Zᵀa` for [`Self::row_step_any`].
    t: Vec<f64>,
    /// The CPU has AVX2 (the per-row kernel uses it).
    avx2: bool,
    /// Index of the current block and the light rows it has consumed.
    block: usize,
    light_in_block: u64,
    light_total: u64,
    last: Option<Step>,
    rows: u64,
    frobenius_sq: f64,
    peak_bytes: u64,
}

impl RandomOrder {
    /// A fresh state for rows of dimension `d`; `scale` gives `n` and `‖A‖_F²`.
    pub fn new(d: usize, scale: StreamScale, params: RandomOrderParams, seed: u64) -> Result<Self> {
        if d == 0 {
            return Err(Error::Input("rows have dimension 0".into()));
        }
        if !(scale.frobenius_sq.is_finite() && scale.frobenius_sq > 0.0) {
            return Err(Error::Input(format!(
                "random-order: ‖A‖_F² must be positive and finite to set the heavy threshold, got {}",
                scale.frobenius_sq
            )));
        }
        if params.block_width == 0 || params.heavy_factor.is_nan() || params.heavy_factor <= 0.0 {
            return Err(Error::Config(format!(
                "random-order: block_width must be ≥ 1 and heavy_factor > 0, got {} and {}",
                params.block_width, params.heavy_factor
            )));
        }
        let k = params.block_width.min(d);
        let steps = params.steps_for(d);
        let block_ends = params.block_ends(scale.rows, steps);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start = Mat::<f64>::from_fn(d, k, |_, _| StandardNormal.sample(&mut rng));
        let zr = row_major(&start.qr().compute_thin_Q());
        let mut this = RandomOrder {
            d,
            params,
            tau: params.threshold(d, scale.frobenius_sq),
            steps,
            block_ends,
            heavy: Vec::new(),
            k,
            zr,
            yr: vec![0.0; d * k],
            t: vec![0.0; k],
            avx2: has_avx2(),
            block: 0,
            light_in_block: 0,
            light_total: 0,
            last: None,
            rows: 0,
            frobenius_sq: 0.0,
            peak_bytes: 0,
        };
        this.note_memory();
        Ok(this)
    }

    /// The heavy threshold `τ` on `‖a‖²` in use.
    pub fn threshold(&self) -> f64 {
        self.tau
    }

    /// Number of power steps (blocks).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Heavy rows kept so far.
    pub fn heavy_rows(&self) -> u64 {
        (self.heavy.len() / self.d) as u64
    }

    /// Feeds the rows of a row-major `n × d` buffer, in stream order.
    pub fn update(&mut self, rows: &[f64]) -> Result<()> {
        assert_eq!(rows.len() % self.d, 0, "row buffer is not n × d");
        let d = self.d;
        let mut rest = rows;
        while !rest.is_empty() {
            // The segment of `rest` that belongs to the current block.
            let end = self.block_ends.get(self.block).copied();
            let left_in_block = end.map_or(u64::MAX, |e| e.saturating_sub(self.rows));
            let take = ((rest.len() / d) as u64).min(left_in_block) as usize;
            let (segment, tail) = rest.split_at(take * d);
            self.consume_segment(segment)?;
            rest = tail;
            if end.is_some_and(|e| self.rows >= e) {
                self.close_block();
            }
        }
        Ok(())
    }

    /// One block's worth of rows. Each row is read twice while it sits in L1: once for
    /// `‖a‖²` and `t = Zᵀa` together, and — if it is light — once for `Y += a tᵀ`. (The first
    /// version ran two skinny GEMMs `XZ`, `Xᵀ(XZ)` over the light rows; `perf` on a d = 64 run
    /// showed them spending twice as long packing `X` as multiplying it.)
    fn consume_segment(&mut self, segment: &[f64]) -> Result<()> {
        let d = self.d;
        let n = segment.len() / d;
        let mut light = 0u64;
        for a in segment.chunks_exact(d) {
            let sq = match self.k {
                1 => self.row_step::<1>(a),
                2 => self.row_step::<2>(a),
                4 => self.row_step::<4>(a),
                8 => self.row_step::<8>(a),
                _ => self.row_step_any(a),
            };
            self.frobenius_sq += sq;
            if sq < self.tau {
                light += 1;
                continue;
            }
            let limit = self.params.heavy_memory / (d as u64 * 8);
            if self.heavy_rows() + 1 > limit {
                return Err(Error::Input(format!(
                    "random-order: more than {limit} heavy rows (‖a‖² ≥ τ = {:.6e}) of dimension {d} \
                     would exceed heavy_memory = {} bytes; raise `heavy_memory`, raise \
                     `heavy_factor` to keep fewer rows, or use algorithm = \"frequent-directions\"",
                    self.tau, self.params.heavy_memory
                )));
            }
            self.heavy.extend_from_slice(a);
        }
        self.rows += n as u64;
        self.light_in_block += light;
        self.light_total += light;
        self.note_memory();
        Ok(())
    }

    /// `‖a‖²`, and `Y += a (Zᵀa)ᵀ` when the row is light; `K` = the block width.
    #[inline]
    fn row_step<const K: usize>(&mut self, a: &[f64]) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is set only when the CPU reports AVX2.
            return unsafe { step_avx2::<K>(a, &self.zr, &mut self.yr, self.tau) };
        }
        step::<K>(a, &self.zr, &mut self.yr, self.tau)
    }

    /// [`Self::row_step`] for a block width without a specialised copy.
    fn row_step_any(&mut self, a: &[f64]) -> f64 {
        let k = self.k;
        self.t.iter_mut().for_each(|v| *v = 0.0);
        let mut sq = 0.0;
        for (x, z) in a.iter().zip(self.zr.chunks_exact(k)) {
            sq += x * x;
            for (t, z) in self.t.iter_mut().zip(z) {
                *t += x * z;
            }
        }
        if sq < self.tau {
            for (x, y) in a.iter().zip(self.yr.chunks_exact_mut(k)) {
                for (y, t) in y.iter_mut().zip(&self.t) {
                    *y += x * t;
                }
            }
        }
        sq
    }

    /// Ends a power step: remember it for the reconstruction, then `Z ← orth(Y)`.
    fn close_block(&mut self) {
        self.block += 1;
        if self.light_in_block == 0 {
            return;
        }
        let y = as_mat(&self.yr, self.d, self.k);
        let z_next = row_major(&y.qr().compute_thin_Q());
        let step = Step {
            z: as_mat(&std::mem::replace(&mut self.zr, z_next), self.d, self.k),
            y,
            light_rows: self.light_in_block,
        };
        self.yr.iter_mut().for_each(|v| *v = 0.0);
        self.last = Some(step);
        self.light_in_block = 0;
    }

    fn note_memory(&mut self) {
        let mats = 2 * self.d * self.k * if self.last.is_some() { 2 } else { 1 };
        let bytes = 8 * (self.heavy.capacity() + mats);
        self.peak_bytes = self.peak_bytes.max(bytes as u64);
    }

    /// Peak bytes of state: heavy rows, the basis and products.
    pub fn state_bytes(&self) -> u64 {
        self.peak_bytes
    }

    /// `W` with `L̂ = W Wᵀ` (Nyström from the last power step), as `k' × d` row-major rows.
    fn light_rows(&self) -> Result<Vec<f64>> {
        // The step in progress is the final block of a full stream; a stream shorter than its
        // announced `n` may leave it much smaller than the last completed one — then use that.
        let current = (
            as_mat(&self.zr, self.d, self.k),
            as_mat(&self.yr, self.d, self.k),
        );
        let (z, y, block_light) = match &self.last {
            Some(s) if 2 * self.light_in_block < s.light_rows => (&s.z, &s.y, s.light_rows),
            _ if self.light_in_block > 0 => (&current.0, &current.1, self.light_in_block),
            Some(s) => (&s.z, &s.y, s.light_rows),
            None => return Ok(Vec::new()),
        };
        let scale = self.light_total as f64 / block_light as f64;
        let k = z.ncols();
        // K = scale · ZᵀY, symmetrised.
        let mut kmat = Mat::<f64>::zeros(k, k);
        matmul(&mut kmat, Accum::Replace, z.transpose(), y, scale, Par::Seq);
        let sym = Mat::<f64>::from_fn(k, k, |i, j| 0.5 * (kmat[(i, j)] + kmat[(j, i)]));
        let evd = sym
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| Error::Numeric(format!("random-order: eigensolver failed: {e:?}")))?;
        let s = evd.S().column_vector();
        let u = evd.U();
        let top = (0..k).map(|i| s[i]).fold(0.0f64, f64::max);
        let mut w = Vec::new();
        for j in 0..k {
            if s[j] <= top * 1e-12 || s[j] <= 0.0 {
                continue;
            }
            // Column j of W = scale · Y u_j / sqrt(s_j).
            let f = scale / s[j].sqrt();
            for r in 0..self.d {
                let mut acc = 0.0;
                for c in 0..k {
                    acc += y[(r, c)] * u[(c, j)];
                }
                w.push(f * acc);
            }
        }
        Ok(w)
    }

    /// Combines heavy rows and the light reconstruction into the answer.
    pub fn finish(&self) -> Result<TopEigen> {
        if self.rows == 0 {
            return Err(Error::Input(
                "no rows: the eigenvector of an empty matrix is undefined".into(),
            ));
        }
        let mut c = self.heavy.clone();
        c.extend(self.light_rows()?);
        let r = c.len() / self.d;
        if r == 0 {
            return Err(Error::Input(
                "random-order: every row is zero; the top eigenvector is undefined".into(),
            ));
        }
        let (mut vector, eigenvalue, second) = top_of_stacked(&c, r, self.d)?;
        canonical_sign(&mut vector);
        Ok(TopEigen {
            vector,
            eigenvalue,
            second_eigenvalue: second,
            frobenius_sq: self.frobenius_sq,
            rows: self.rows,
            heavy_rows: self.heavy_rows(),
            state_bytes: self.state_bytes(),
        })
    }
}

/// `‖a‖²` and `t = Zᵀa` for a row-major `d × K` basis `Z`. Two accumulator sets take the even
/// and odd coordinates, so consecutive additions do not wait on each other.
#[inline(always)]
fn project<const K: usize>(a: &[f64], z: &[f64]) -> (f64, [f64; K]) {
    let (mut t0, mut t1) = ([0.0f64; K], [0.0f64; K]);
    let (mut s0, mut s1) = (0.0, 0.0);
    let even = a.len() - a.len() % 2;
    for (x, z) in a[..even].chunks_exact(2).zip(z.chunks_exact(2 * K)) {
        let (z0, z1) = z.split_at(K);
        s0 += x[0] * x[0];
        s1 += x[1] * x[1];
        for j in 0..K {
            t0[j] += x[0] * z0[j];
            t1[j] += x[1] * z1[j];
        }
    }
    if even < a.len() {
        let x = a[even];
        s0 += x * x;
        for (t, z) in t0.iter_mut().zip(&z[even * K..]) {
            *t += x * z;
        }
    }
    for j in 0..K {
        t0[j] += t1[j];
    }
    (s0 + s1, t0)
}

/// One row of the power step: `‖a‖²`, and `Y += a tᵀ` with `t = Zᵀa` when `‖a‖² < τ`.
#[inline(always)]
fn step<const K: usize>(a: &[f64], z: &[f64], y: &mut [f64], tau: f64) -> f64 {
    let (sq, t) = project::<K>(a, z);
    if sq < tau {
        for (x, y) in a.iter().zip(y.chunks_exact_mut(K)) {
            for j in 0..K {
                y[j] += x * t[j];
            }
        }
    }
    sq
}

/// [`step`] compiled for AVX2 (4 doubles per instruction instead of SSE2's 2); chosen at run
/// time, so the binary still runs on any x86-64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn step_avx2<const K: usize>(a: &[f64], z: &[f64], y: &mut [f64], tau: f64) -> f64 {
    step::<K>(a, z, y, tau)
}

/// A row-major `d × k` buffer as a matrix.
fn as_mat(v: &[f64], d: usize, k: usize) -> Mat<f64> {
    Mat::from_fn(d, k, |i, j| v[i * k + j])
}

/// A matrix as a row-major buffer.
fn row_major(m: &Mat<f64>) -> Vec<f64> {
    let (d, k) = (m.nrows(), m.ncols());
    (0..d * k).map(|x| m[(x / k, x % k)]).collect()
}

/// Top eigenpair (and second eigenvalue) of `CᵀC` for a row-major `r × d` matrix `C`, through
/// the smaller of `CCᵀ` (`r × r`) and `CᵀC` (`d × d`).
pub fn top_of_stacked(c: &[f64], r: usize, d: usize) -> Result<(Vec<f64>, f64, Option<f64>)> {
    if r > d {
        let mut g = Gram::new(d)?;
        g.update(c);
        let top = g.finish()?;
        return Ok((top.vector, top.eigenvalue, top.second_eigenvalue));
    }
    let cm = MatRef::from_row_major_slice(c, r, d);
    let mut small = Mat::<f64>::zeros(r, r);
    matmul(
        &mut small,
        Accum::Replace,
        cm,
        cm.transpose(),
        1.0,
        Par::Seq,
    );
    let evd = small
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Numeric(format!("symmetric eigensolver failed: {e:?}")))?;
    let s = evd.S().column_vector();
    let u = evd.U();
    let top = r - 1;
    // v = Cᵀ u / ‖Cᵀ u‖.
    let mut v = vec![0.0; d];
    for (i, row) in c.chunks_exact(d).enumerate() {
        let w = u[(i, top)];
        for (vj, x) in v.iter_mut().zip(row) {
            *vj += w * x;
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm.is_nan() || norm <= 0.0 {
        return Err(Error::Input(
            "every row is zero; the top eigenvector is undefined".into(),
        ));
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Ok((v, s[top], (r > 1).then(|| s[top - 1])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eigen::alignment;

    #[test]
    fn stacked_top_agrees_on_both_sides() {
        // 3 × 5 (CCᵀ side) and its 7 × 5 extension (CᵀC side) against the Gram reference.
        let c: Vec<f64> = (0..35).map(|i| ((i * 7919) % 23) as f64 - 11.0).collect();
        for r in [3usize, 7] {
            let rows = &c[..r * 5];
            let (v, l, _) = top_of_stacked(rows, r, 5).unwrap();
            let mut g = Gram::new(5).unwrap();
            g.update(rows);
            let reference = g.finish().unwrap();
            assert!(alignment(&v, &reference.vector) > 1.0 - 1e-12);
            assert!((l - reference.eigenvalue).abs() < 1e-9 * reference.eigenvalue);
        }
    }

    #[test]
    fn keeps_heavy_rows_and_finds_their_direction() {
        // Light rows along e1..e5 and one heavy row along e0 carrying most of the mass.
        let d = 6;
        let mut rows = Vec::new();
        for i in 0..3000 {
            let mut a = vec![0.0; d];
            a[1 + i % 5] = 1.0;
            rows.extend(a);
        }
        let mut heavy = vec![0.0; d];
        heavy[0] = 40.0;
        rows.splice(1500 * d..1500 * d, heavy);
        let f: f64 = rows.iter().map(|x| x * x).sum();
        let scale = StreamScale {
            rows: (rows.len() / d) as u64,
            frobenius_sq: f,
        };
        let mut ro = RandomOrder::new(d, scale, RandomOrderParams::default(), 3).unwrap();
        ro.update(&rows).unwrap();
        let top = ro.finish().unwrap();
        assert_eq!(top.heavy_rows, 1);
        assert!(alignment(&top.vector, &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]) > 1.0 - 1e-12);
        assert!((top.eigenvalue - 1600.0).abs() < 1e-9);
    }

    #[test]
    fn heavy_memory_budget_is_enforced_with_a_clear_error() {
        // 36 small rows and 4 rows of norm² 400: τ ≈ 208, so 4 heavy rows, room for 2.
        let d = 4;
        let mut rows = vec![0.1; 40 * d];
        rows[..4 * d].iter_mut().for_each(|x| *x = 10.0);
        let scale = StreamScale {
            rows: 40,
            frobenius_sq: rows.iter().map(|x| x * x).sum(),
        };
        let params = RandomOrderParams {
            heavy_memory: 64,
            ..Default::default()
        };
        let mut ro = RandomOrder::new(d, scale, params, 1).unwrap();
        let err = ro.update(&rows).unwrap_err().to_string();
        assert!(err.contains("heavy_memory"), "{err}");
    }
}
