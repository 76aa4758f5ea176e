//! Principal components as users mean them: of the **centred** (optionally standardised)
//! rows, the top `k`, with their eigenvalues and the total variance.
//!
//! Two mergeable accumulators share one centring scheme, and a finishing step turns either
//! into a [`Pca`]:
//!
//! * [`Scatter`] — the exact centred scatter matrix `M = Σ (a − μ)(a − μ)ᵀ` (lower triangle),
//!   solved with a symmetric eigensolver at the end;
//! * [`CentredFd`] — a Frequent Directions sketch `B` of the centred rows with
//!   `0 ≼ M − BᵀB ≼ Δ·I` (Ghashami–Liberty–Phillips–Woodruff, arXiv:1501.01711, Theorem 1.1).
//!
//! **Centring in one pass.** `M = AᵀA − n μμᵀ` in exact arithmetic, but in floating point the
//! subtraction cancels when the mean is large next to the spread. Both accumulators centre
//! each batch on its own mean and fold the batches together with the pairwise update of Chan,
//! Golub and LeVeque (*Algorithms for computing the sample variance*, 1979), in matrix form:
//! for parts `(n₁, μ₁, M₁)` and `(n₂, μ₂, M₂)`, with `δ = μ₂ − μ₁`,
//! `M = M₁ + M₂ + (n₁n₂/n) δδᵀ` and `μ = μ₁ + (n₂/n) δ` — equal to `AᵀA − nμμᵀ`, without its
//! cancellation. The same formula merges partitions. For Frequent Directions the correction
//! `(n₁n₂/n) δδᵀ` is one more row, `sqrt(n₁n₂/n) δ`, fed to the sketch (uncounted as an input
//! row): the sketched rows' Gram matrix is exactly `M`, so FD's bound `Δ` is a bound for the
//! centred matrix itself, in terms of the centred data's own tail.
//!
//! **Scaling** (`scale = true`, correlation-matrix PCA as R's `prcomp(scale. = TRUE)`):
//! `σ_j = sqrt(M_jj / (n − 1))` from the exact diagonal, and the decomposed matrix is
//! `D⁻¹ M D⁻¹` with `D = diag(σ)`. FD's bound carries through as `Δ / min_j σ_j²`.

use faer::{Mat, MatRef, Side};

use super::exact::add_gram_lower;
use super::fd::{FdState, Route};
use super::{canonical_sign, FrequentDirections};
use crate::{Error, Result};

/// Centres a row-major `n × d` batch on its own mean into `out` (resized to fit); returns the
/// batch mean. Sums run over the rows in order, so the result depends only on the batch.
fn centre_batch(rows: &[f64], d: usize, out: &mut Vec<f64>) -> Vec<f64> {
    let n = rows.len() / d;
    let mut mean = vec![0.0; d];
    for row in rows.chunks_exact(d) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    out.clear();
    out.reserve(rows.len());
    for row in rows.chunks_exact(d) {
        out.extend(row.iter().zip(&mean).map(|(x, m)| x - m));
    }
    mean
}

/// The pairwise step shared by updates and merges: the weight `n₁n₂/n` of the correction
/// `δδᵀ`, and the new mean `μ₁ + (n₂/n) δ` written into `mean`. Returns `(δ, weight)`.
fn fold_means(mean: &mut [f64], n1: u64, other: &[f64], n2: u64) -> (Vec<f64>, f64) {
    let n = (n1 + n2) as f64;
    let delta: Vec<f64> = other.iter().zip(mean.iter()).map(|(b, a)| b - a).collect();
    let weight = n1 as f64 * n2 as f64 / n;
    for (m, d) in mean.iter_mut().zip(&delta) {
        *m += d * (n2 as f64 / n);
    }
    (delta, weight)
}

/// Exact centred (or, with `center = false`, raw) scatter matrix, mergeable.
#[derive(Debug, Clone)]
pub struct Scatter {
    d: usize,
    center: bool,
    rows: u64,
    mean: Vec<f64>,
    /// Lower triangle of `M` (`AᵀA` when not centring).
    m: Mat<f64>,
    scratch: Vec<f64>,
}

impl Scatter {
    /// An empty accumulator for rows of dimension `d ≥ 1`.
    pub fn new(d: usize, center: bool) -> Result<Self> {
        if d == 0 {
            return Err(Error::Input("rows have dimension 0".into()));
        }
        Ok(Scatter {
            d,
            center,
            rows: 0,
            mean: vec![0.0; d],
            m: Mat::zeros(d, d),
            scratch: Vec::new(),
        })
    }

    pub fn dim(&self) -> usize {
        self.d
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn centred(&self) -> bool {
        self.center
    }

    /// The mean subtracted (zeros without centring).
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// `M += w δδᵀ` on the lower triangle.
    fn rank_one(&mut self, delta: &[f64], w: f64) {
        for (j, dj) in delta.iter().enumerate() {
            let dj = w * dj;
            for (i, di) in delta.iter().enumerate().skip(j) {
                self.m[(i, j)] += dj * di;
            }
        }
    }

    /// Adds the rows of a row-major `n × d` buffer.
    ///
    /// # Panics
    /// If `rows.len()` is not a multiple of `d`.
    pub fn update(&mut self, rows: &[f64]) {
        assert_eq!(rows.len() % self.d, 0, "row buffer is not n × d");
        let n = (rows.len() / self.d) as u64;
        if n == 0 {
            return;
        }
        if !self.center {
            add_gram_lower(&mut self.m, rows, self.d);
            self.rows += n;
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let batch_mean = centre_batch(rows, self.d, &mut scratch);
        add_gram_lower(&mut self.m, &scratch, self.d);
        self.scratch = scratch;
        let (delta, w) = fold_means(&mut self.mean, self.rows, &batch_mean, n);
        self.rank_one(&delta, w);
        self.rows += n;
    }

    /// Adds an accumulator of other rows (same dimension and centring).
    pub fn merge(&mut self, other: &Scatter) -> Result<()> {
        if other.d != self.d || other.center != self.center {
            return Err(Error::Input(format!(
                "cannot merge PCA states of dimension {} and {}{}",
                self.d,
                other.d,
                if other.center != self.center {
                    " (one centred, one not)"
                } else {
                    ""
                }
            )));
        }
        if other.rows == 0 {
            return Ok(());
        }
        for j in 0..self.d {
            for i in j..self.d {
                self.m[(i, j)] += other.m[(i, j)];
            }
        }
        if self.center {
            let (delta, w) = fold_means(&mut self.mean, self.rows, &other.mean, other.rows);
            self.rank_one(&delta, w);
        }
        self.rows += other.rows;
        Ok(())
    }

    /// With `scale = true`, the first coordinate that is constant over the rows.
    pub fn constant_column(&self) -> Option<usize> {
        let s = Moments::sample_std(self.rows, &self.diagonal());
        constant_column(&self.mean, &s).map(|c| c.0)
    }

    /// The diagonal of `M`.
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.d).map(|i| self.m[(i, i)]).collect()
    }

    /// The lower triangle of `M`, column by column (`d(d+1)/2` values).
    pub fn lower(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.d * (self.d + 1) / 2);
        for j in 0..self.d {
            out.extend((j..self.d).map(|i| self.m[(i, j)]));
        }
        out
    }

    /// The accumulator [`Self::lower`] and [`Self::mean`] came from.
    pub fn from_parts(
        d: usize,
        center: bool,
        rows: u64,
        mean: &[f64],
        lower: &[f64],
    ) -> Result<Self> {
        if lower.len() != d * (d + 1) / 2 || mean.len() != d {
            return Err(Error::Input(format!(
                "a PCA state of dimension {d} needs {} scatter values and {d} means, got {} and {}",
                d * (d + 1) / 2,
                lower.len(),
                mean.len()
            )));
        }
        let mut s = Scatter::new(d, center)?;
        let mut it = lower.iter();
        for j in 0..d {
            for i in j..d {
                s.m[(i, j)] = *it.next().expect("length checked");
            }
        }
        s.mean.copy_from_slice(mean);
        s.rows = rows;
        Ok(s)
    }

    /// Bytes of the state (`d²` + `d` doubles).
    pub fn state_bytes(&self) -> u64 {
        ((self.d * self.d + self.d) * std::mem::size_of::<f64>()) as u64
    }

    /// The top `k` components; see [`Pca`].
    pub fn finish(&self, k: usize, scale: bool) -> Result<Pca> {
        let scales = scales(self.rows, &self.mean, &self.diagonal(), scale, self.center)?;
        check_components(k, self.d, self.rows)?;
        let inv = inverse(&scales, self.d);
        let a = Mat::<f64>::from_fn(self.d, self.d, |i, j| {
            let (r, c) = if i >= j { (i, j) } else { (j, i) };
            self.m[(r, c)] * inv[i] * inv[j]
        });
        let total = (0..self.d).map(|i| a[(i, i)]).sum();
        let (components, eigenvalues) = top_k(a.as_ref(), k)?;
        Ok(Pca {
            components,
            eigenvalues,
            total,
            mean: self.mean.clone(),
            scale: scales,
            rows: self.rows,
            error_bound: Some(0.0),
            state_bytes: self.state_bytes(),
        })
    }
}

/// Frequent Directions over the centred rows (see the module docs), mergeable.
#[derive(Debug, Clone)]
pub struct CentredFd {
    fd: FrequentDirections,
    center: bool,
    mean: Vec<f64>,
    /// The exact diagonal of `M` (for scaling and the total variance).
    diag: Vec<f64>,
    scratch: Vec<f64>,
}

impl CentredFd {
    /// A sketch of rows of dimension `d` keeping `ell ≥ 2` directions.
    pub fn new(d: usize, ell: usize, center: bool) -> Result<Self> {
        Self::with_route(d, ell, center, Route::auto(d, ell))
    }

    /// The same on a chosen [`Route`] of the underlying sketch.
    pub fn with_route(d: usize, ell: usize, center: bool, route: Route) -> Result<Self> {
        Ok(CentredFd {
            fd: FrequentDirections::with_route(d, ell, route)?,
            center,
            mean: vec![0.0; d],
            diag: vec![0.0; d],
            scratch: Vec::new(),
        })
    }

    pub fn dim(&self) -> usize {
        self.fd.dim()
    }

    pub fn ell(&self) -> usize {
        self.fd.ell()
    }

    /// Input rows (the sketch counts them; its correction rows are not counted).
    pub fn rows(&self) -> u64 {
        self.fd.rows()
    }

    pub fn centred(&self) -> bool {
        self.center
    }

    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    pub fn diagonal(&self) -> &[f64] {
        &self.diag
    }

    /// With `scale = true`, the first coordinate that is constant over the rows.
    pub fn constant_column(&self) -> Option<usize> {
        let s = Moments::sample_std(self.rows(), &self.diag);
        constant_column(&self.mean, &s).map(|c| c.0)
    }

    /// Folds the correction `w δδᵀ` in: one sketched row and the exact diagonal.
    fn correction(&mut self, delta: &[f64], w: f64) -> Result<()> {
        if w > 0.0 {
            let root = w.sqrt();
            let row: Vec<f64> = delta.iter().map(|x| x * root).collect();
            self.fd.add_row(&row)?;
            for (g, x) in self.diag.iter_mut().zip(delta) {
                *g += w * x * x;
            }
        }
        Ok(())
    }

    /// Adds the rows of a row-major `n × d` buffer.
    pub fn update(&mut self, rows: &[f64]) -> Result<()> {
        let d = self.dim();
        assert_eq!(rows.len() % d, 0, "row buffer is not n × d");
        let n = (rows.len() / d) as u64;
        if n == 0 {
            return Ok(());
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let centred: &[f64] = if self.center {
            let batch_mean = centre_batch(rows, d, &mut scratch);
            let (delta, w) = fold_means(&mut self.mean, self.fd.rows(), &batch_mean, n);
            self.correction(&delta, w)?;
            &scratch
        } else {
            rows
        };
        for row in centred.chunks_exact(d) {
            for (g, x) in self.diag.iter_mut().zip(row) {
                *g += x * x;
            }
        }
        let done = self.fd.update(centred);
        self.scratch = scratch;
        done
    }

    /// Adds a sketch of other rows (same `d`, `ℓ` and centring): FD's merge, plus the
    /// correction row.
    pub fn merge(&mut self, other: &CentredFd) -> Result<()> {
        if other.center != self.center {
            return Err(Error::Input(
                "cannot merge a centred PCA sketch with an uncentred one".into(),
            ));
        }
        let (n1, n2) = (self.rows(), other.rows());
        self.fd.merge(&other.fd)?;
        if n2 == 0 {
            return Ok(());
        }
        for (g, x) in self.diag.iter_mut().zip(&other.diag) {
            *g += x;
        }
        if self.center {
            let (delta, w) = fold_means(&mut self.mean, n1, &other.mean, n2);
            self.correction(&delta, w)?;
        }
        Ok(())
    }

    /// The sketch's state, for [`Self::from_parts`].
    pub fn sketch(&self) -> FdState {
        self.fd.to_state()
    }

    /// The sketch [`Self::sketch`], [`Self::mean`] and [`Self::diagonal`] came from (the
    /// state's `rows_seen` is the input row count).
    pub fn from_parts(state: &FdState, center: bool, mean: &[f64], diag: &[f64]) -> Result<Self> {
        if mean.len() != state.d || diag.len() != state.d {
            return Err(Error::Input(format!(
                "a PCA sketch of dimension {} needs {} means and diagonal values, got {} and {}",
                state.d,
                state.d,
                mean.len(),
                diag.len()
            )));
        }
        Ok(CentredFd {
            fd: FrequentDirections::from_state(state)?,
            center,
            mean: mean.to_vec(),
            diag: diag.to_vec(),
            scratch: Vec::new(),
        })
    }

    /// Bytes of the state: the sketch buffer plus the mean and diagonal.
    pub fn state_bytes(&self) -> u64 {
        self.fd.state_bytes() + (2 * self.dim() * std::mem::size_of::<f64>()) as u64
    }

    /// The top `k < ℓ` components of `BᵀB` (scaled); see [`Pca`]. The eigenvalues
    /// underestimate the exact ones by at most `error_bound`.
    pub fn finish(&self, k: usize, scale: bool) -> Result<Pca> {
        let d = self.dim();
        let ell = self.ell();
        if k >= ell {
            return Err(Error::Config(format!(
                "components = {k} needs ell > {k} with frequent-directions (ell = {ell}); raise \
                 ell or use algorithm = \"exact\""
            )));
        }
        let scales = scales(self.rows(), &self.mean, &self.diag, scale, self.center)?;
        check_components(k, d, self.rows())?;
        let inv = inverse(&scales, d);
        // D⁻¹ BᵀB D⁻¹ (with, on FD's Gram route, the rows since its last shrink).
        let c = self.fd.covariance();
        let g = Mat::<f64>::from_fn(d, d, |i, j| c[(i, j)] * inv[i] * inv[j]);
        let (components, eigenvalues) = top_k(g.as_ref(), k)?;
        let total = self.diag.iter().zip(&inv).map(|(m, s)| m * s * s).sum();
        // ‖D⁻¹ E D⁻¹‖₂ ≤ ‖E‖₂ / min σ².
        let max_inv_sq = inv.iter().fold(0.0f64, |a, s| a.max(s * s));
        Ok(Pca {
            components,
            eigenvalues,
            total,
            mean: self.mean.clone(),
            scale: scales,
            rows: self.rows(),
            error_bound: Some(self.fd.error_bound() * max_inv_sq),
            state_bytes: self.state_bytes(),
        })
    }
}

/// The answer of every PCA core.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// `k` orthonormal vectors of length `d`, largest eigenvalue first, each signed so its
    /// largest-magnitude coordinate is positive.
    pub components: Vec<Vec<f64>>,
    /// Eigenvalues of the centred, scaled `XᵀX`, descending.
    pub eigenvalues: Vec<f64>,
    /// `trace` of that matrix: the total over all `d` directions (exact in every core).
    pub total: f64,
    /// The vector subtracted from every row (zeros without centring).
    pub mean: Vec<f64>,
    /// The per-column divisors `σ_j` (with `scale = true`).
    pub scale: Option<Vec<f64>>,
    pub rows: u64,
    /// A bound on the spectral error of the decomposed matrix: 0 exact, `Δ` for Frequent
    /// Directions, `None` for the randomised algorithms.
    pub error_bound: Option<f64>,
    pub state_bytes: u64,
}

/// A column that cannot be scaled: constant over the rows (its index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConstantColumn(pub usize);

/// Refuses `k` outside `1..=min(n, d)` (scikit-learn's rule).
fn check_components(k: usize, d: usize, rows: u64) -> Result<()> {
    if k == 0 {
        return Err(Error::Config("components must be at least 1".into()));
    }
    if k > d {
        return Err(Error::Config(format!(
            "components = {k} but the rows have dimension {d}: at most {d} components exist"
        )));
    }
    if rows < 2 {
        return Err(Error::Input(format!(
            "PCA needs at least 2 rows (the variance of {rows} row(s) is undefined)"
        )));
    }
    if k as u64 > rows {
        return Err(Error::Input(format!(
            "components = {k} but the input has only {rows} rows: at most {rows} components"
        )));
    }
    Ok(())
}

/// The column divisors `σ_j = sqrt(M_jj / (n − 1))` for `scale = true`; a constant column
/// ([`constant_column`]) is refused by its coordinate (callers that know the columns' names
/// check [`Scatter::constant_column`] first and name it).
fn scales(
    rows: u64,
    mean: &[f64],
    diag: &[f64],
    scale: bool,
    center: bool,
) -> Result<Option<Vec<f64>>> {
    if !scale {
        return Ok(None);
    }
    if !center {
        return Err(Error::Config(
            "scale = true needs center = true (the standard deviation is about the mean)".into(),
        ));
    }
    if rows < 2 {
        return Err(Error::Input(format!(
            "PCA needs at least 2 rows (the variance of {rows} row(s) is undefined)"
        )));
    }
    let s = Moments::sample_std(rows, diag);
    if let Some(ConstantColumn(j)) = constant_column(mean, &s) {
        return Err(Error::Input(format!(
            "coordinate {j} is constant (standard deviation {:e} about its mean {}): scale = true \
             cannot divide by it; drop the column or set scale = false",
            s[j], mean[j]
        )));
    }
    Ok(Some(s))
}

/// `1 / σ_j`, or ones without scaling.
fn inverse(scales: &Option<Vec<f64>>, d: usize) -> Vec<f64> {
    match scales {
        Some(s) => s.iter().map(|x| 1.0 / x).collect(),
        None => vec![1.0; d],
    }
}

/// The first column whose standard deviation is zero to rounding (`σ ≤ 1e-12 |μ|`: the
/// centring of a constant column leaves only rounding).
pub fn constant_column(mean: &[f64], scale: &[f64]) -> Option<ConstantColumn> {
    mean.iter()
        .zip(scale)
        .position(|(m, s)| *s == 0.0 || *s <= 1e-12 * m.abs())
        .map(ConstantColumn)
}

/// The top `k` eigenpairs of the symmetric matrix `a`, largest first, signs canonical.
fn top_k(a: MatRef<'_, f64>, k: usize) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let d = a.nrows();
    let evd = a
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Numeric(format!("symmetric eigensolver failed: {e:?}")))?;
    let s = evd.S().column_vector();
    let u = evd.U();
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&x, &y| s[y].total_cmp(&s[x]));
    let mut components = Vec::with_capacity(k);
    let mut values = Vec::with_capacity(k);
    for &c in order.iter().take(k) {
        let mut v: Vec<f64> = (0..d).map(|i| u[(i, c)]).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        canonical_sign(&mut v);
        components.push(v);
        values.push(s[c].max(0.0));
    }
    Ok((components, values))
}

/// Per-column running mean and centred sum of squares (Chan's pairwise update per batch),
/// mergeable: the first pass of a stream-order PCA, and the prefix estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    d: usize,
    rows: u64,
    mean: Vec<f64>,
    m2: Vec<f64>,
    scratch: Vec<f64>,
}

impl Moments {
    pub fn new(d: usize) -> Self {
        Moments {
            d,
            rows: 0,
            mean: vec![0.0; d],
            m2: vec![0.0; d],
            scratch: Vec::new(),
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// `Σ (a_j − μ_j)²` per column.
    pub fn centred_squares(&self) -> &[f64] {
        &self.m2
    }

    /// Adds the rows of a row-major `n × d` buffer.
    pub fn update(&mut self, rows: &[f64]) {
        let n = (rows.len() / self.d) as u64;
        if n == 0 {
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let batch_mean = centre_batch(rows, self.d, &mut scratch);
        let mut m2 = vec![0.0; self.d];
        for row in scratch.chunks_exact(self.d) {
            for (g, x) in m2.iter_mut().zip(row) {
                *g += x * x;
            }
        }
        self.scratch = scratch;
        let (delta, w) = fold_means(&mut self.mean, self.rows, &batch_mean, n);
        for ((g, b), x) in self.m2.iter_mut().zip(&m2).zip(&delta) {
            *g += b + w * x * x;
        }
        self.rows += n;
    }

    /// The divisors `σ_j` (sample standard deviations, `n − 1`).
    pub fn std_dev(&self) -> Vec<f64> {
        Self::sample_std(self.rows, &self.m2)
    }

    /// `sqrt(m2_j / (n − 1))` (`n − 1` taken as at least 1).
    fn sample_std(rows: u64, m2: &[f64]) -> Vec<f64> {
        let n = rows.saturating_sub(1).max(1) as f64;
        m2.iter().map(|m| (m.max(0.0) / n).sqrt()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eigen::alignment;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    /// `n` rows `μ + Σ_j sqrt(λ_j) z_j q_j` with `z` standard normal and `q_j` a rotated basis
    /// (a Householder reflection of the standard one): the population covariance is
    /// `Q diag(λ) Qᵀ`.
    fn spectrum_rows(n: usize, mean: &[f64], lambdas: &[f64], seed: u64) -> (Vec<f64>, Vec<f64>) {
        let d = mean.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
        let hh: f64 = h.iter().map(|x| x * x).sum();
        let reflect = |x: &mut Vec<f64>| {
            let p: f64 = h.iter().zip(x.iter()).map(|(a, b)| a * b).sum();
            x.iter_mut()
                .zip(&h)
                .for_each(|(xi, hi)| *xi -= 2.0 * p / hh * hi);
        };
        let mut rows = Vec::with_capacity(n * d);
        for _ in 0..n {
            let mut x: Vec<f64> = lambdas
                .iter()
                .map(|l| l.sqrt() * rng.sample::<f64, _>(StandardNormal))
                .collect();
            reflect(&mut x);
            rows.extend(x.iter().zip(mean).map(|(a, m)| a + m));
        }
        let mut v1 = vec![0.0; d];
        v1[0] = 1.0;
        reflect(&mut v1);
        (rows, v1)
    }

    /// The covariance of the rows by the two-pass textbook formula: the reference.
    fn two_pass(rows: &[f64], d: usize) -> (Vec<f64>, Mat<f64>) {
        let n = rows.len() / d;
        let mut mean = vec![0.0; d];
        for r in rows.chunks_exact(d) {
            for j in 0..d {
                mean[j] += r[j] / n as f64;
            }
        }
        let mut m = Mat::<f64>::zeros(d, d);
        for r in rows.chunks_exact(d) {
            for i in 0..d {
                for j in 0..d {
                    m[(i, j)] += (r[i] - mean[i]) * (r[j] - mean[j]);
                }
            }
        }
        (mean, m)
    }

    #[test]
    fn exact_matches_the_two_pass_covariance_despite_a_large_mean() {
        let d = 5;
        let mean = [1e6, -3e5, 2.0, 7e4, 0.0];
        let (rows, v1) = spectrum_rows(3000, &mean, &[16.0, 4.0, 2.0, 1.0, 0.5], 3);
        let mut s = Scatter::new(d, true).unwrap();
        for chunk in rows.chunks(d * 700) {
            s.update(chunk);
        }
        let (mu, m) = two_pass(&rows, d);
        for j in 0..d {
            assert!((s.mean()[j] - mu[j]).abs() <= 1e-9 * mu[j].abs().max(1.0));
            for i in j..d {
                let (a, b) = (s.m[(i, j)], m[(i, j)]);
                assert!(
                    (a - b).abs() <= 1e-7 * m[(0, 0)].abs(),
                    "M[{i},{j}] {a} vs {b}"
                );
            }
        }
        let p = s.finish(2, false).unwrap();
        assert!(alignment(&p.components[0], &v1) > 0.99);
        let dot: f64 = p.components[0]
            .iter()
            .zip(&p.components[1])
            .map(|(a, b)| a * b)
            .sum();
        assert!(dot.abs() < 1e-12, "components not orthogonal: {dot}");
        let trace: f64 = (0..d).map(|i| m[(i, i)]).sum();
        assert!((p.total - trace).abs() <= 1e-9 * trace);
        // n − 1 normalised eigenvalues near the population spectrum.
        assert!((p.eigenvalues[0] / 2999.0 - 16.0).abs() < 1.5);
    }

    #[test]
    fn scaling_decomposes_the_correlation_matrix() {
        let d = 3;
        let (mut rows, _) = spectrum_rows(500, &[1.0, 2.0, 3.0], &[9.0, 1.0, 0.25], 8);
        for r in rows.chunks_exact_mut(d) {
            r[2] *= 1000.0;
        }
        let mut s = Scatter::new(d, true).unwrap();
        s.update(&rows);
        let p = s.finish(3, true).unwrap();
        // The trace of a correlation matrix times (n − 1) is d (n − 1).
        assert!((p.total - 3.0 * 499.0).abs() < 1e-9 * p.total);
        let sum: f64 = p.eigenvalues.iter().sum();
        assert!((sum - p.total).abs() < 1e-9 * p.total);
        let (_, m) = two_pass(&rows, d);
        let scale = p.scale.as_ref().unwrap();
        for j in 0..d {
            assert!((scale[j] - (m[(j, j)] / 499.0).sqrt()).abs() < 1e-9 * scale[j]);
        }
    }

    #[test]
    fn bad_component_counts_are_refused() {
        let mut s = Scatter::new(3, true).unwrap();
        s.update(&[1.0, 2.0, 3.0, 2.0, 1.0, 0.0, 5.0, 5.0, 5.0]);
        assert!(s.finish(0, false).is_err());
        assert!(s
            .finish(4, false)
            .unwrap_err()
            .to_string()
            .contains("dimension 3"));
        let mut one = Scatter::new(2, true).unwrap();
        one.update(&[1.0, 2.0]);
        assert!(one
            .finish(1, false)
            .unwrap_err()
            .to_string()
            .contains("2 rows"));
        let mut fd = CentredFd::new(3, 2, true).unwrap();
        fd.update(&[1.0, 2.0, 3.0, 2.0, 1.0, 0.0]).unwrap();
        assert!(fd
            .finish(2, false)
            .unwrap_err()
            .to_string()
            .contains("ell > 2"));
        assert!(s.finish(1, true).is_ok());
        let u = Scatter::new(3, false).unwrap();
        assert!(u.finish(1, true).is_err());
    }

    #[test]
    fn a_constant_column_is_found() {
        assert_eq!(
            constant_column(&[1.0, 5.0, 2.0], &[0.3, 4e-15, 1.0]),
            Some(ConstantColumn(1))
        );
        assert_eq!(
            constant_column(&[0.0, 0.0], &[0.3, 0.0]),
            Some(ConstantColumn(1))
        );
        assert_eq!(constant_column(&[1.0], &[0.1]), None);
    }

    #[test]
    fn frequent_directions_is_within_its_bound_of_exact_on_centred_data() {
        let d = 24;
        let mut mean = vec![0.0; d];
        mean[0] = 500.0;
        mean[3] = -200.0;
        let lambdas: Vec<f64> = (0..d).map(|j| 30.0 / (1.0 + j as f64).powi(2)).collect();
        let (rows, _) = spectrum_rows(4000, &mean, &lambdas, 11);
        let mut exact = Scatter::new(d, true).unwrap();
        for chunk in rows.chunks(d * 333) {
            exact.update(chunk);
        }
        // The row buffer, the Gram route shrinking every 101 rows, and the default (the Gram
        // route here, which does not shrink in one pass: the exact answer up to rounding).
        for route in [Route::Rows, Route::Gram { every: 101 }, Route::auto(d, 8)] {
            let mut fd = CentredFd::with_route(d, 8, true, route).unwrap();
            for chunk in rows.chunks(d * 333) {
                fd.update(chunk).unwrap();
            }
            for scale in [false, true] {
                let e = exact.finish(3, scale).unwrap();
                let f = fd.finish(3, scale).unwrap();
                let bound = f.error_bound.unwrap();
                assert!((e.total - f.total).abs() <= 1e-9 * e.total);
                for i in 0..3 {
                    assert!(f.eigenvalues[i] <= e.eigenvalues[i] * (1.0 + 1e-9) + 1e-9);
                    assert!(
                        e.eigenvalues[i] - f.eigenvalues[i]
                            <= bound * (1.0 + 1e-9) + 1e-12 * e.eigenvalues[i],
                        "pc {i}: {} vs {} (Δ {bound})",
                        e.eigenvalues[i],
                        f.eigenvalues[i]
                    );
                }
                assert!(alignment(&e.components[0], &f.components[0]) > 0.99);
                if !scale {
                    // The centred bound is FD's `‖C − C_k‖_F² / (ℓ − k)` for the centred rows C; a
                    // sketch of the raw rows would have the mean's mass (about 1e4 × λ₁ here) in it.
                    let tail: f64 = e.total - e.eigenvalues.iter().sum::<f64>();
                    assert!(
                        bound <= tail / (8.0 - 3.0) * (1.0 + 1e-9),
                        "Δ = {bound}, tail {tail}"
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Any split of the rows, accumulated apart and merged, gives the one-pass state.
        #[test]
        fn merge_equals_one_pass(
            d in 1usize..6,
            values in proptest::collection::vec(-50.0f64..50.0, 12..240),
            split in 0.0f64..1.0,
            offset in -1e3f64..1e3,
        ) {
            let n = values.len() / d;
            let rows: Vec<f64> = values[..n * d].iter().map(|x| x + offset).collect();
            let cut = ((n as f64) * split) as usize * d;
            let mut whole = Scatter::new(d, true).unwrap();
            whole.update(&rows);
            let mut left = Scatter::new(d, true).unwrap();
            left.update(&rows[..cut]);
            let mut right = Scatter::new(d, true).unwrap();
            right.update(&rows[cut..]);
            left.merge(&right).unwrap();
            prop_assert_eq!(left.rows(), whole.rows());
            let scale = whole.diagonal().iter().cloned().fold(1.0f64, f64::max);
            for (a, b) in left.lower().iter().zip(whole.lower()) {
                prop_assert!((a - b).abs() <= 1e-9 * scale, "{a} vs {b}");
            }
            for (a, b) in left.mean().iter().zip(whole.mean()) {
                prop_assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()));
            }
            let mut m = Moments::new(d);
            m.update(&rows[..cut]);
            m.update(&rows[cut..]);
            for (a, b) in m.centred_squares().iter().zip(whole.diagonal()) {
                prop_assert!((a - b).abs() <= 1e-9 * scale);
            }
        }
    }
}
