//! Frequent Directions: a deterministic, mergeable sketch `B` (`ℓ × d`) of the rows of `A` with
//! `0 ≼ AᵀA − BᵀB ≼ Δ·I`, from which the top eigenvector is read off.
//!
//! E. Liberty, *Simple and Deterministic Matrix Sketching*, KDD 2013, and M. Ghashami,
//! E. Liberty, J. M. Phillips, D. P. Woodruff, *Frequent Directions: Simple and Deterministic
//! Matrix Sketching*, SICOMP 2016, arXiv:1501.01711 — Algorithm 2 ("fast" FD with a `2ℓ`-row
//! buffer): rows are appended to the buffer; when it is full, `B = UΣVᵀ`, `δ = σ_ℓ²`, and the
//! buffer becomes the rows `sqrt(max(σ_i² − δ, 0)) v_iᵀ`, `i < ℓ`. The shrinkages add up to
//! `Δ = Σ δ`, which bounds the error: `‖AᵀA − BᵀB‖₂ ≤ Δ ≤ ‖A − A_k‖_F² / (ℓ − k)` for every
//! `k < ℓ` (Theorem 1.1 of the SICOMP paper). Any row order; two sketches merge by stacking
//! and shrinking, with `Δ` adding up.
//!
//! Two ways to hold the rows between shrinks ([`Route`]); both are Algorithm 2's shrink of
//! `[B; X]` (the sketch over the rows `X` since the last shrink), which is all its proof uses,
//! so the bound holds for either:
//! * [`Route::Rows`]: the `2ℓ`-row buffer of the paper, shrunk through its `r × r` Gram matrix
//!   every `ℓ` rows — `O(ℓd)` memory; per row about `4ℓd` multiply-adds plus a `2ℓ × 2ℓ`
//!   eigensolve every `ℓ` rows.
//! * [`Route::Gram`]: the rows since the last shrink kept as their `d × d` Gram matrix `XᵀX`
//!   (the same blocked SYRK as `exact`), shrunk through the eigensolve of `BᵀB + XᵀX` (whose
//!   eigenpairs are `[B; X]`'s `σ_i², v_i`) when the sketch is handed over (a partial
//!   aggregate's state, an incremental stage's `state` table, a merge) or every `every` rows.
//!   Per row `d²/2` multiply-adds, `O(d²)` memory. [`FrequentDirections::new`] takes it where
//!   it costs less than the row buffer (small `d` against `ℓ`, see [`Route::auto`]), and
//!   never shrinks in between: a single pass's answer is then `exact`'s, with `Δ = 0`.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};

use super::exact::{add_gram_lower, top_of_lower};
use super::{canonical_sign, TopEigen};
use crate::{Error, Result};

/// How a sketch holds the rows between shrinks (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A `2ℓ`-row buffer, shrunk every `ℓ` rows.
    Rows,
    /// The `d × d` Gram matrix of the rows since the last shrink, shrunk every `every` rows
    /// and whenever the sketch is handed over ([`FrequentDirections::to_state`]). Its memory
    /// does not grow with the rows, so [`Route::auto`] never shrinks in between
    /// (`usize::MAX`): each shrink would cost a `d × d` eigensolve and add to `Δ`.
    Gram { every: usize },
}

impl Route {
    /// The cheaper route for rows of dimension `d` and `ℓ` directions. Per row, the Gram
    /// route costs the SYRK's `d²/2` multiply-adds, the row buffer about `4ℓd` plus its share
    /// of a `2ℓ × 2ℓ` eigensolve every `ℓ` rows (`72ℓ²` flops, at a third of the SYRK's
    /// speed): measured (`cargo bench -p sketchpipe-core --bench fd_routes`, ℓ = 32) as
    /// `2.5e-11·d²` s against `10.6 µs + 11.3 ns·d`, scaled by `ℓ²` and `ℓ`, which gives the
    /// Gram route for `d² ≤ 414ℓ² + 14ℓd` (`d` up to about 900 at ℓ = 32).
    pub fn auto(d: usize, ell: usize) -> Route {
        let (d, ell) = (d as f64, ell as f64);
        if d * d <= 414.0 * ell * ell + 14.0 * ell * d {
            Route::Gram { every: usize::MAX }
        } else {
            Route::Rows
        }
    }
}

/// The Gram route's rows since the last shrink: `XᵀX` (lower triangle) and their count.
#[derive(Debug, Clone)]
struct Pending {
    g: Mat<f64>,
    rows: usize,
    every: usize,
}

/// A [`FrequentDirections`] sketch taken apart: its rows in use (row-major) and counters.
#[derive(Debug, Clone, PartialEq)]
pub struct FdState {
    pub d: usize,
    pub ell: usize,
    pub rows: Vec<f64>,
    pub rows_seen: u64,
    pub frobenius_sq: f64,
    pub shrunk: f64,
}

/// Frequent Directions sketch with `ℓ` directions (see the module docs).
#[derive(Debug, Clone)]
pub struct FrequentDirections {
    d: usize,
    ell: usize,
    /// Row-major buffer of `2ℓ × d`; the first `filled` rows are in use.
    buf: Vec<f64>,
    filled: usize,
    rows: u64,
    frobenius_sq: f64,
    /// `Δ`: the sum of shrinkages, a bound on `‖AᵀA − BᵀB‖₂`.
    shrunk: f64,
    /// [`Route::Gram`]'s rows since the last shrink (`None`: [`Route::Rows`]).
    pending: Option<Pending>,
}

impl FrequentDirections {
    /// A sketch of rows of dimension `d` keeping `ell ≥ 2` directions, on the cheaper
    /// [`Route`] for them.
    pub fn new(d: usize, ell: usize) -> Result<Self> {
        Self::with_route(d, ell, Route::auto(d, ell))
    }

    /// A sketch on a chosen [`Route`] (the answers of both satisfy the same bound).
    pub fn with_route(d: usize, ell: usize, route: Route) -> Result<Self> {
        if d == 0 {
            return Err(Error::Input("rows have dimension 0".into()));
        }
        if ell < 2 {
            return Err(Error::Config(format!("ell must be at least 2, got {ell}")));
        }
        Ok(FrequentDirections {
            d,
            ell,
            buf: vec![0.0; 2 * ell * d],
            filled: 0,
            rows: 0,
            frobenius_sq: 0.0,
            shrunk: 0.0,
            pending: match route {
                Route::Rows => None,
                Route::Gram { every } => Some(Pending {
                    g: Mat::zeros(d, d),
                    rows: 0,
                    every: every.max(1),
                }),
            },
        })
    }

    /// The route this sketch holds its rows on.
    pub fn route(&self) -> Route {
        match &self.pending {
            None => Route::Rows,
            Some(p) => Route::Gram { every: p.every },
        }
    }

    /// Adds the rows of a row-major `n × d` buffer.
    pub fn update(&mut self, rows: &[f64]) -> Result<()> {
        assert_eq!(rows.len() % self.d, 0, "row buffer is not n × d");
        self.frobenius_sq += self.absorb(rows)?;
        self.rows += (rows.len() / self.d) as u64;
        Ok(())
    }

    /// Sketches the rows of a row-major buffer (counters aside); returns their `Σ‖row‖²` — on
    /// the Gram route read off the trace of `XᵀX`, so the rows are read once, by the SYRK.
    fn absorb(&mut self, rows: &[f64]) -> Result<f64> {
        let d = self.d;
        if self.pending.is_none() {
            for row in rows.chunks_exact(d) {
                self.push(row)?;
            }
            return Ok(rows.iter().map(|x| x * x).sum());
        }
        let trace = |g: &Mat<f64>| (0..d).map(|i| g[(i, i)]).sum::<f64>();
        let mut squares = 0.0;
        let mut rest = rows;
        while !rest.is_empty() {
            let p = self.pending.as_mut().expect("the Gram route");
            let take = (p.every - p.rows).min(rest.len() / d);
            let (now, later) = rest.split_at(take * d);
            let before = trace(&p.g);
            add_gram_lower(&mut p.g, now, d);
            squares += trace(&p.g) - before;
            p.rows += take;
            rest = later;
            if p.rows == p.every {
                self.shrink_gram()?;
            }
        }
        Ok(squares)
    }

    /// Adds one row that is not an input row (a correction term, e.g. the centring row of
    /// [`super::pca::CentredFd`]): sketched and counted in `‖·‖_F²`, not in [`Self::rows`].
    pub fn add_row(&mut self, row: &[f64]) -> Result<()> {
        assert_eq!(row.len(), self.d, "a row of dimension {}", self.d);
        self.frobenius_sq += self.absorb(row)?;
        Ok(())
    }

    /// The sketch size `ℓ`.
    pub fn ell(&self) -> usize {
        self.ell
    }

    fn push(&mut self, row: &[f64]) -> Result<()> {
        if self.filled == 2 * self.ell {
            self.shrink()?;
        }
        let at = self.filled * self.d;
        self.buf[at..at + self.d].copy_from_slice(row);
        self.filled += 1;
        Ok(())
    }

    /// The SVD step of Algorithm 2: keep the top `ℓ − 1` directions, shrunk by `σ_ℓ²`.
    ///
    /// Computed through the small Gram matrix `G = BBᵀ = UΛUᵀ` (`r × r`, `r ≤ 2ℓ`) instead of an
    /// SVD of the `r × d` buffer: `σ_i² = λ_i`, and the new rows
    /// `sqrt(σ_i² − δ)·v_iᵀ = sqrt((λ_i − δ)/λ_i)·u_iᵀB` come out of one `ℓ × r` by `r × d`
    /// product — `O(ℓ²d)` flops with GEMM kernels, against the SVD's bidiagonalisation.
    fn shrink(&mut self) -> Result<()> {
        let (r, d) = (self.filled, self.d);
        let b = MatRef::from_row_major_slice(&self.buf[..r * d], r, d);
        let mut g = Mat::<f64>::zeros(r, r);
        matmul(&mut g, Accum::Replace, b, b.transpose(), 1.0, Par::Seq);
        let evd = g.self_adjoint_eigen(Side::Lower).map_err(|e| {
            Error::Numeric(format!("Frequent Directions: eigensolver failed: {e:?}"))
        })?;
        let s = evd.S().column_vector();
        let u = evd.U();
        // Eigenvalues ascending: the ℓ-th largest is at r − ℓ.
        let mut order: Vec<usize> = (0..r).collect();
        order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        let delta = order.get(self.ell - 1).map_or(0.0, |&i| s[i].max(0.0));
        self.shrunk += delta;
        let kept: Vec<(usize, f64)> = order
            .iter()
            .take(self.ell)
            .filter(|&&i| s[i] > delta)
            .map(|&i| (i, ((s[i] - delta) / s[i]).sqrt()))
            .collect();
        let w = Mat::<f64>::from_fn(kept.len(), r, |row, col| {
            let (i, scale) = kept[row];
            scale * u[(col, i)]
        });
        let mut next = Mat::<f64>::zeros(kept.len(), d);
        matmul(&mut next, Accum::Replace, &w, b, 1.0, Par::Seq);
        self.buf.fill(0.0);
        for row in 0..kept.len() {
            for j in 0..d {
                self.buf[row * d + j] = next[(row, j)];
            }
        }
        self.filled = kept.len();
        Ok(())
    }

    /// `BᵀB + XᵀX` (lower triangle) on the Gram route.
    fn gram_lower(&self, p: &Pending) -> Mat<f64> {
        let mut c = p.g.clone();
        add_gram_lower(&mut c, &self.buf[..self.filled * self.d], self.d);
        c
    }

    /// The Gram route's shrink of `[B; X]`: from the eigenpairs `(λ_i, v_i)` of `BᵀB + XᵀX`,
    /// `δ = λ_ℓ` and the rows `sqrt(λ_i − δ)·v_iᵀ`, `i < ℓ`.
    fn shrink_gram(&mut self) -> Result<()> {
        let Some(p) = &self.pending else {
            return Ok(());
        };
        if p.rows == 0 {
            return Ok(());
        }
        let d = self.d;
        let evd = self
            .gram_lower(p)
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| {
                Error::Numeric(format!("Frequent Directions: eigensolver failed: {e:?}"))
            })?;
        // Eigenvalues ascending: the i-th largest is at d − 1 − i.
        let s = evd.S().column_vector();
        let u = evd.U();
        let delta = if d >= self.ell {
            s[d - self.ell].max(0.0)
        } else {
            0.0
        };
        self.shrunk += delta;
        self.buf.fill(0.0);
        let mut kept = 0;
        for i in 0..self.ell.min(d) {
            let lambda = s[d - 1 - i];
            if lambda <= delta {
                break;
            }
            let scale = (lambda - delta).sqrt();
            for j in 0..d {
                self.buf[kept * d + j] = scale * u[(j, d - 1 - i)];
            }
            kept += 1;
        }
        self.filled = kept;
        let p = self.pending.as_mut().expect("checked above");
        p.g.fill(0.0);
        p.rows = 0;
        Ok(())
    }

    /// Singular values (descending) and right singular vectors (`d × r`, row-major) of the
    /// buffer.
    fn svd(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let b =
            MatRef::from_row_major_slice(&self.buf[..self.filled * self.d], self.filled, self.d);
        let svd = b
            .thin_svd()
            .map_err(|e| Error::Numeric(format!("Frequent Directions: SVD failed: {e:?}")))?;
        let s = svd.S().column_vector();
        let r = s.nrows();
        let mut order: Vec<usize> = (0..r).collect();
        order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        let sigma: Vec<f64> = order.iter().map(|&i| s[i]).collect();
        let v = svd.V();
        let mut vs = vec![0.0; self.d * r];
        for j in 0..self.d {
            for (k, &i) in order.iter().enumerate() {
                vs[j * r + k] = v[(j, i)];
            }
        }
        Ok((sigma, vs))
    }

    /// Adds a sketch of other rows (same `d` and `ℓ`): stack, shrink as needed.
    pub fn merge(&mut self, other: &FrequentDirections) -> Result<()> {
        if other.d != self.d || other.ell != self.ell {
            return Err(Error::Input(format!(
                "cannot merge Frequent Directions sketches of (d, ell) = ({}, {}) and ({}, {})",
                self.d, self.ell, other.d, other.ell
            )));
        }
        match (&mut self.pending, &other.pending) {
            (Some(mine), Some(theirs)) => {
                // `XᵀX` adds up; the rows then go the same way as `other`'s sketch rows.
                for j in 0..self.d {
                    for i in j..self.d {
                        mine.g[(i, j)] += theirs.g[(i, j)];
                    }
                }
                mine.rows += theirs.rows;
                if mine.rows >= mine.every {
                    self.shrink_gram()?;
                }
            }
            (_, Some(theirs)) if theirs.rows > 0 => {
                let mut flushed = other.clone();
                flushed.shrink_gram()?;
                return self.merge_rows(&flushed);
            }
            _ => {}
        }
        self.merge_rows(other)
    }

    fn merge_rows(&mut self, other: &FrequentDirections) -> Result<()> {
        // Sketch rows, not input rows: their squares are in `other.frobenius_sq` already.
        self.absorb(&other.buf[..other.filled * other.d])?;
        if let Some(p) = &self.pending {
            if p.rows >= p.every {
                self.shrink_gram()?;
            }
        }
        self.rows += other.rows;
        self.frobenius_sq += other.frobenius_sq;
        self.shrunk += other.shrunk;
        Ok(())
    }

    /// Row dimension `d`.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Rows consumed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Everything needed to rebuild the sketch ([`Self::from_state`]): e.g. the state a
    /// partition of an SQL aggregate hands to the merge.
    pub fn to_state(&self) -> FdState {
        if self.pending.as_ref().is_some_and(|p| p.rows > 0) {
            // The rows since the last shrink become sketch rows (one more shrink, in `shrunk`).
            let mut flushed = self.clone();
            match flushed.shrink_gram() {
                Ok(()) => return flushed.to_state(),
                // Only a non-finite input makes the eigensolver fail, and the stages refuse
                // those before they reach a sketch.
                Err(e) => panic!("Frequent Directions state: {e}"),
            }
        }
        FdState {
            d: self.d,
            ell: self.ell,
            rows: self.buf[..self.filled * self.d].to_vec(),
            rows_seen: self.rows,
            frobenius_sq: self.frobenius_sq,
            shrunk: self.shrunk,
        }
    }

    /// The sketch [`Self::to_state`] came from (on the route [`Self::new`] picks; a state is
    /// route-free).
    pub fn from_state(s: &FdState) -> Result<Self> {
        let mut fd = FrequentDirections::new(s.d, s.ell)?;
        if !s.rows.len().is_multiple_of(s.d) || s.rows.len() > fd.buf.len() {
            return Err(Error::Input(format!(
                "a Frequent Directions state of (d, ell) = ({}, {}) cannot hold {} values",
                s.d,
                s.ell,
                s.rows.len()
            )));
        }
        fd.buf[..s.rows.len()].copy_from_slice(&s.rows);
        fd.filled = s.rows.len() / s.d;
        fd.rows = s.rows_seen;
        fd.frobenius_sq = s.frobenius_sq;
        fd.shrunk = s.shrunk;
        Ok(fd)
    }

    /// `Δ`, the guaranteed bound on `‖AᵀA − BᵀB‖₂` so far.
    pub fn error_bound(&self) -> f64 {
        self.shrunk
    }

    /// The sketch's quadratic form `xᵀ(BᵀB + XᵀX)x` (for checking the guarantee; `X`: the
    /// Gram route's rows since the last shrink).
    pub fn quadratic_form(&self, x: &[f64]) -> f64 {
        let rows: f64 = self.buf[..self.filled * self.d]
            .chunks_exact(self.d)
            .map(|r| {
                let p: f64 = r.iter().zip(x).map(|(a, b)| a * b).sum();
                p * p
            })
            .sum();
        let pending = self.pending.as_ref().map_or(0.0, |p| {
            let mut q = 0.0;
            for j in 0..self.d {
                q += p.g[(j, j)] * x[j] * x[j];
                for i in j + 1..self.d {
                    q += 2.0 * p.g[(i, j)] * x[i] * x[j];
                }
            }
            q
        });
        rows + pending
    }

    /// The sketch's covariance `BᵀB` (plus, on the Gram route, the rows since the last shrink,
    /// `XᵀX`), `d × d` and symmetric: what its guarantee bounds against `AᵀA`.
    pub fn covariance(&self) -> Mat<f64> {
        let mut c = match &self.pending {
            Some(p) => self.gram_lower(p),
            None => {
                let mut c = Mat::zeros(self.d, self.d);
                add_gram_lower(&mut c, &self.buf[..self.filled * self.d], self.d);
                c
            }
        };
        for j in 0..self.d {
            for i in j + 1..self.d {
                c[(j, i)] = c[(i, j)];
            }
        }
        c
    }

    /// Bytes of the sketch buffer (`2ℓd` doubles), and on the Gram route its `d × d` matrix.
    pub fn state_bytes(&self) -> u64 {
        let gram = self.pending.as_ref().map_or(0, |_| self.d * self.d);
        ((self.buf.len() + gram) * std::mem::size_of::<f64>()) as u64
    }

    /// The top right singular vector of `B`; the eigenvalue is `σ_1(B)²`, which
    /// underestimates `σ_1(A)²` by at most `Δ`.
    pub fn finish(&self) -> Result<TopEigen> {
        let pending = self.pending.as_ref().map_or(0, |p| p.rows);
        if self.rows == 0 || (self.filled == 0 && pending == 0) {
            return Err(Error::Input(
                "no rows: the eigenvector of an empty matrix is undefined".into(),
            ));
        }
        if let Some(p) = &self.pending {
            // The top eigenpair of `BᵀB + XᵀX` itself: no last shrink, so the bound stays `Δ`.
            let (vector, top, second) = top_of_lower(&self.gram_lower(p), "Frequent Directions:")?;
            return Ok(TopEigen {
                vector,
                eigenvalue: top.max(0.0),
                second_eigenvalue: second.map(|s| s.max(0.0)),
                frobenius_sq: self.frobenius_sq,
                rows: self.rows,
                heavy_rows: 0,
                state_bytes: self.state_bytes(),
            });
        }
        let (sigma, v) = self.svd()?;
        let r = sigma.len();
        let mut vector: Vec<f64> = (0..self.d).map(|j| v[j * r]).collect();
        canonical_sign(&mut vector);
        Ok(TopEigen {
            vector,
            eigenvalue: sigma[0] * sigma[0],
            second_eigenvalue: sigma.get(1).map(|s| s * s),
            frobenius_sq: self.frobenius_sq,
            rows: self.rows,
            heavy_rows: 0,
            state_bytes: self.state_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eigen::{alignment, Gram};
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    /// `n` rows of dimension `d`: a strong direction `e_0` (variance `gap`), `rank − 1` unit
    /// directions and small noise, randomly mixed by a Householder reflection.
    fn low_rank(n: usize, d: usize, gap: f64, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
        let hh: f64 = h.iter().map(|x| x * x).sum();
        let mut rows = Vec::with_capacity(n * d);
        for _ in 0..n {
            let mut x: Vec<f64> = (0..d)
                .map(|j| {
                    let s: f64 = match j {
                        0 => gap.sqrt(),
                        1..=4 => 1.0,
                        _ => 0.1,
                    };
                    s * rng.sample::<f64, _>(StandardNormal)
                })
                .collect();
            let dot: f64 = h.iter().zip(&x).map(|(a, b)| a * b).sum();
            x.iter_mut()
                .zip(&h)
                .for_each(|(xi, hi)| *xi -= 2.0 * dot / hh * hi);
            rows.extend(x);
        }
        rows
    }

    fn exact(rows: &[f64], d: usize) -> (Gram, TopEigen) {
        let mut g = Gram::new(d).unwrap();
        g.update(rows);
        let top = g.finish().unwrap();
        (g, top)
    }

    /// `0 ≤ xᵀ(AᵀA − BᵀB)x ≤ Δ‖x‖²` on the exact top eigenvector and on random unit vectors.
    fn check_guarantee(fd: &FrequentDirections, rows: &[f64], d: usize, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (_, top) = exact(rows, d);
        let mut probes = vec![top.vector.clone()];
        for _ in 0..5 {
            let x: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
            let n = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            probes.push(x.iter().map(|v| v / n).collect());
        }
        for x in probes {
            let axx: f64 = rows
                .chunks_exact(d)
                .map(|r| r.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>().powi(2))
                .sum();
            let gap = axx - fd.quadratic_form(&x);
            let tol = 1e-9 * axx.max(1.0);
            assert!(gap >= -tol, "BᵀB exceeds AᵀA: {gap}");
            assert!(
                gap <= fd.error_bound() + tol,
                "error {gap} above the bound {}",
                fd.error_bound()
            );
        }
    }

    /// Both routes; the Gram route shrinking often (every 37 rows), so that its shrinks are
    /// exercised on small inputs.
    const ROUTES: [Route; 2] = [Route::Rows, Route::Gram { every: 37 }];

    #[test]
    fn finds_the_top_direction_of_low_rank_data_within_its_bound() {
        let (n, d) = (4000, 64);
        let rows = low_rank(n, d, 20.0, 1);
        for route in ROUTES {
            let mut fd = FrequentDirections::with_route(d, 16, route).unwrap();
            // In uneven batches, as a scan hands them over.
            for part in rows.chunks(d * 301) {
                fd.update(part).unwrap();
            }
            assert!(fd.error_bound() > 0.0, "{route:?}: no shrink happened");
            let top = fd.finish().unwrap();
            let (_, truth) = exact(&rows, d);
            let a = alignment(&top.vector, &truth.vector);
            assert!(a > 0.99, "{route:?}: {a}");
            assert!(top.eigenvalue <= truth.eigenvalue * (1.0 + 1e-12));
            assert!(truth.eigenvalue - top.eigenvalue <= fd.error_bound() * (1.0 + 1e-9));
            assert!((top.frobenius_sq - truth.frobenius_sq).abs() <= 1e-9 * truth.frobenius_sq);
            check_guarantee(&fd, &rows, d, 2);
            // The state (which shrinks the Gram route's pending rows into sketch rows) is a
            // sketch within its own, larger, bound.
            let back = FrequentDirections::from_state(&fd.to_state()).unwrap();
            assert!(back.error_bound() >= fd.error_bound());
            check_guarantee(&back, &rows, d, 3);
        }
    }

    #[test]
    fn the_gram_route_is_taken_where_it_is_cheaper() {
        assert!(matches!(Route::auto(128, 32), Route::Gram { .. }));
        assert!(matches!(Route::auto(256, 32), Route::Gram { .. }));
        assert_eq!(Route::auto(1024, 32), Route::Rows);
        assert_eq!(Route::auto(4096, 16), Route::Rows);
        // The default never shrinks in one pass: exact's answer, Δ = 0, where the row buffer
        // has shrunk.
        let (n, d) = (3000, 24);
        let rows = low_rank(n, d, 20.0, 4);
        let mut gram = FrequentDirections::new(d, 8).unwrap();
        let mut buffer = FrequentDirections::with_route(d, 8, Route::Rows).unwrap();
        gram.update(&rows).unwrap();
        buffer.update(&rows).unwrap();
        assert!(matches!(gram.route(), Route::Gram { .. }));
        assert_eq!(gram.error_bound(), 0.0);
        assert!(buffer.error_bound() > 0.0);
        check_guarantee(&gram, &rows, d, 5);
        let (_, truth) = exact(&rows, d);
        let top = gram.finish().unwrap();
        assert!(alignment(&top.vector, &truth.vector) > 1.0 - 1e-12);
        assert!((top.eigenvalue - truth.eigenvalue).abs() <= 1e-12 * truth.eigenvalue);
        // Its state is ℓ rows within its bound, as the row buffer's.
        let state = gram.to_state();
        assert!(state.rows.len() <= 8 * d && state.shrunk > 0.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Two halves sketched apart and merged keep the guarantee for the whole input.
        #[test]
        fn merged_sketches_keep_the_guarantee(seed in 0u64..1000, split in 0.05f64..0.95, ell in 2usize..10, gram: bool) {
            let (n, d) = (600, 12);
            let route = ROUTES[gram as usize];
            let rows = low_rank(n, d, 5.0, seed);
            let cut = ((n as f64) * split) as usize * d;
            let mut left = FrequentDirections::with_route(d, ell, route).unwrap();
            left.update(&rows[..cut]).unwrap();
            let mut right = FrequentDirections::with_route(d, ell, route).unwrap();
            right.update(&rows[cut..]).unwrap();
            left.merge(&right).unwrap();
            prop_assert_eq!(left.rows, n as u64);
            check_guarantee(&left, &rows, d, seed);
            // And the merged sketch is within its bound of the single-pass one: both lie
            // between AᵀA − Δ·I and AᵀA, so on any unit x they differ by at most max Δ.
            let mut single = FrequentDirections::with_route(d, ell, route).unwrap();
            single.update(&rows).unwrap();
            let bound = left.error_bound().max(single.error_bound());
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
            for _ in 0..5 {
                let x: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
                let norm_sq: f64 = x.iter().map(|v| v * v).sum();
                let diff = (left.quadratic_form(&x) - single.quadratic_form(&x)).abs() / norm_sq;
                prop_assert!(diff <= bound * (1.0 + 1e-9) + 1e-9, "{diff} > {bound}");
            }
        }
    }
}
