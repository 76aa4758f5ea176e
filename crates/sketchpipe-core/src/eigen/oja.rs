//! Fixed-learning-rate Oja, the streaming PCA algorithm of
//! E. Price, Z. Xun, *Spectral Guarantees for Adversarial Streaming PCA*, FOCS 2024,
//! arXiv:2408.10332, run over a grid of learning rates as analysed by P. Kacham,
//! D. P. Woodruff, *Approximating the Top Eigenvector in Random Order Streams*, NeurIPS 2024,
//! arXiv:2412.11963 (§1b of `docs/algorithms.md`).
//!
//! Each copy keeps a unit vector `v` and applies, for every row `a`, exactly the Oja step
//! `v ← (I + η a aᵀ) v`, then renormalises: `s = ‖v‖`, `v ← v / s`, `log_scale += ln s`.
//! Renormalising does not change the direction (the step is linear in `v`), and it keeps
//! `η‖a‖² ≫ 1` from overflowing; `log_scale` is the log of the norm the unnormalised product
//! would have. The norm after the step is known in closed form,
//! `‖v + c a‖² = 1 + 2c⟨a, v⟩ + c²‖a‖²` with `c = η⟨a, v⟩`, so one fused pass does the step;
//! every [`RENORM_EVERY`] rows the norm is recomputed from scratch to stop rounding drift.
//!
//! The right `η ≈ c ln d / σ_1²` is unknown, but `σ_1² ∈ [‖A‖_F²/d, ‖A‖_F²]`, so copies with
//! `η_k = 2^k / ‖A‖_F²`, `k = 0 … ⌈log₂(d ln d)⌉ + 1`, run side by side (one `d`-vector each).
//! The pick is made on rows a copy has **not** trained on: progressive validation — each row
//! of the second half of the stream first scores every copy with `⟨a, v⟩²` and only then
//! trains it. In a random-order stream those rows are a uniform sample, so the score is an
//! unbiased estimate of the copy's (time-averaged) Rayleigh quotient. The copy with the
//! largest score wins. Copies whose vector becomes non-finite are declared failed.
//!
//! This is deliberately *not* "fixed" for heavy rows: with one row much heavier than the rest
//! no fixed `η` works (Kacham–Woodruff's separation), and the tests pin that behaviour.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{canonical_sign, dot, has_avx2, StreamScale, TopEigen};
use crate::{Error, Result};

/// Rows between exact renormalisations of each copy's vector.
pub const RENORM_EVERY: u64 = 256;

/// One learning rate of the grid.
#[derive(Debug, Clone)]
pub struct OjaCopy {
    pub eta: f64,
    /// Unit vector (the current estimate).
    pub vector: Vec<f64>,
    /// `ln` of the norm of the unnormalised product `Π (I + η a aᵀ) v₀`.
    pub log_scale: f64,
    /// Sum of `⟨a, v⟩²` over the validation rows, each scored before the copy trained on it.
    pub score: f64,
    /// The vector became non-finite; the copy is out of the running.
    pub failed: bool,
}

/// A grid of fixed-η Oja copies with a held-out pick (see the module docs).
#[derive(Debug, Clone)]
pub struct Oja {
    d: usize,
    copies: Vec<OjaCopy>,
    /// Stream position from which rows are scored before training (the second half).
    score_from: u64,
    rows: u64,
    scored_rows: u64,
    frobenius_sq: f64,
    /// The CPU has AVX2 (the row loop uses it).
    avx2: bool,
}

impl Oja {
    /// The grid for rows of dimension `d`, sized by the stream's row count and `‖A‖_F²`
    /// (exact or estimated, see [`StreamScale`]); `seed` draws the common start vector.
    pub fn new(d: usize, scale: StreamScale, seed: u64) -> Result<Self> {
        if d == 0 {
            return Err(Error::Input("rows have dimension 0".into()));
        }
        if !(scale.frobenius_sq.is_finite() && scale.frobenius_sq > 0.0) {
            return Err(Error::Input(format!(
                "oja: ‖A‖_F² must be positive and finite to set the learning rates, got {}",
                scale.frobenius_sq
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut v0: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
        let norm = v0.iter().map(|x| x * x).sum::<f64>().sqrt();
        v0.iter_mut().for_each(|x| *x /= norm);
        let copies = Self::grid(d)
            .map(|k| OjaCopy {
                eta: 2f64.powi(k as i32) / scale.frobenius_sq,
                vector: v0.clone(),
                log_scale: 0.0,
                score: 0.0,
                failed: false,
            })
            .collect();
        Ok(Oja {
            d,
            copies,
            score_from: scale.rows / 2,
            rows: 0,
            scored_rows: 0,
            frobenius_sq: 0.0,
            avx2: has_avx2(),
        })
    }

    /// The exponents `k` of `η_k = 2^k / ‖A‖_F²`.
    pub fn grid(d: usize) -> std::ops::RangeInclusive<usize> {
        let df = d.max(2) as f64;
        0..=((df * df.ln()).log2().ceil() as usize + 1)
    }

    /// Feeds the rows of a row-major `n × d` buffer, in stream order.
    pub fn update(&mut self, rows: &[f64]) {
        assert_eq!(rows.len() % self.d, 0, "row buffer is not n × d");
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is set only when the CPU reports AVX2.
            unsafe { update_avx2(self, rows) };
            return;
        }
        update_rows(self, rows);
    }

    /// Every copy of the grid, for inspection (tests print what each `η` reached).
    pub fn copies(&self) -> &[OjaCopy] {
        &self.copies
    }

    /// Index of the copy with the best held-out score, if any survived.
    pub fn best(&self) -> Option<usize> {
        self.copies
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.failed && c.vector.iter().all(|x| x.is_finite()))
            .max_by(|(_, a), (_, b)| a.score.total_cmp(&b.score))
            .map(|(i, _)| i)
    }

    /// Bytes of state: one `d`-vector per copy.
    pub fn state_bytes(&self) -> u64 {
        (self.copies.len() * (self.d * 8 + std::mem::size_of::<OjaCopy>())) as u64
    }

    /// The picked copy's vector. The eigenvalue is its held-out Rayleigh quotient scaled to
    /// the whole stream, `score · n / validation_rows` (run `verify` for the exact one).
    pub fn finish(&self) -> Result<TopEigen> {
        if self.rows == 0 {
            return Err(Error::Input(
                "no rows: the eigenvector of an empty matrix is undefined".into(),
            ));
        }
        let best = self.best().ok_or_else(|| {
            Error::Numeric("oja: every learning rate of the grid diverged".into())
        })?;
        let copy = &self.copies[best];
        let mut vector = copy.vector.clone();
        let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
        vector.iter_mut().for_each(|x| *x /= norm);
        canonical_sign(&mut vector);
        let eigenvalue = if self.scored_rows > 0 {
            copy.score * self.rows as f64 / self.scored_rows as f64
        } else {
            0.0
        };
        Ok(TopEigen {
            vector,
            eigenvalue,
            second_eigenvalue: None,
            frobenius_sq: self.frobenius_sq,
            rows: self.rows,
            heavy_rows: 0,
            state_bytes: self.state_bytes(),
        })
    }
}

/// The Oja steps of every copy for a run of rows (see the module docs).
#[inline(always)]
fn update_rows(oja: &mut Oja, rows: &[f64]) {
    for a in rows.chunks_exact(oja.d) {
        let a_sq = dot(a, a);
        oja.frobenius_sq += a_sq;
        let scoring = oja.rows >= oja.score_from;
        let renorm = (oja.rows + 1).is_multiple_of(RENORM_EVERY);
        for copy in oja.copies.iter_mut().filter(|c| !c.failed) {
            let dot_av = dot(a, &copy.vector);
            if scoring {
                copy.score += dot_av * dot_av;
            }
            let c = copy.eta * dot_av;
            let norm_sq = 1.0 + 2.0 * c * dot_av + c * c * a_sq;
            let inv = 1.0 / norm_sq.sqrt();
            for (v, x) in copy.vector.iter_mut().zip(a) {
                *v = (*v + c * x) * inv;
            }
            copy.log_scale += 0.5 * norm_sq.ln();
            if renorm {
                let n = dot(&copy.vector, &copy.vector).sqrt();
                if n.is_finite() && n > 0.0 {
                    copy.vector.iter_mut().for_each(|x| *x /= n);
                    copy.log_scale += n.ln();
                } else {
                    copy.failed = true;
                }
            }
            if !norm_sq.is_finite() {
                copy.failed = true;
            }
        }
        if scoring {
            oja.scored_rows += 1;
        }
        oja.rows += 1;
    }
}

/// [`update_rows`] compiled for AVX2, chosen at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn update_avx2(oja: &mut Oja, rows: &[f64]) {
    update_rows(oja, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eigen::alignment;

    #[test]
    fn finds_a_dominant_direction_and_survives_huge_steps() {
        // Rows alternate ±3·e0 (heavy) and small noise on other axes; η up to 2^k/‖A‖² with
        // η‖a‖² ≫ 1 must neither overflow nor lose the direction.
        let d = 8;
        let n = 4000;
        let mut rows = vec![0.0; n * d];
        for i in 0..n {
            rows[i * d] = if i % 2 == 0 { 3.0 } else { -3.0 };
            rows[i * d + 1 + i % (d - 1)] = 0.5;
        }
        let f: f64 = rows.iter().map(|x| x * x).sum();
        let mut oja = Oja::new(
            d,
            StreamScale {
                rows: n as u64,
                frobenius_sq: f,
            },
            7,
        )
        .unwrap();
        oja.update(&rows);
        let top = oja.finish().unwrap();
        let mut e0 = vec![0.0; d];
        e0[0] = 1.0;
        assert!(alignment(&top.vector, &e0) > 0.99, "{:?}", top.vector);
        assert!(oja.copies().iter().all(|c| c.log_scale.is_finite()));
        assert!((top.frobenius_sq - f).abs() < 1e-9 * f);
    }

    #[test]
    fn rejects_a_zero_scale() {
        let scale = StreamScale {
            rows: 10,
            frobenius_sq: 0.0,
        };
        assert!(Oja::new(4, scale, 1).is_err());
    }
}
