//! The exact baseline: accumulate the Gram matrix `G = AᵀA` and solve a symmetric
//! eigenproblem at the end.
//!
//! This is the reference every approximate method is tested against and the baseline every
//! benchmark reports (cost `O(n d²)` time, `O(d²)` memory; order-independent and mergeable by
//! summing the `G`s). It is the "offline" comparator of Kacham & Woodruff, *Approximating the
//! Top Eigenvector in Random Order Streams* (NeurIPS 2024, arXiv:2412.11963) and of Price &
//! Xun, *Spectral Guarantees for Adversarial Streaming PCA* (FOCS 2024, arXiv:2408.10332).
//!
//! Each record batch is applied as one blocked rank-`n` update `G += XᵀX` (a SYRK: only the
//! lower triangle is computed, half the flops of a full GEMM) rather than `n` rank-one outer
//! products, so the inner loop is a cache-blocked SIMD kernel from `faer`.

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef, Par, Side};

use super::{canonical_sign, TopEigen};
use crate::{Error, Result};

/// `G += XᵀX` on the lower triangle of `g`, for a row-major `n × d` buffer: one blocked SYRK.
pub(crate) fn add_gram_lower(g: &mut Mat<f64>, rows: &[f64], d: usize) {
    let n = rows.len() / d;
    let x = MatRef::from_row_major_slice(rows, n, d);
    triangular::matmul(
        g.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Add,
        x.transpose(),
        BlockStructure::Rectangular,
        x,
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
}

/// The top eigenpair of the symmetric matrix whose lower triangle is `g`: the unit eigenvector
/// (signed by [`canonical_sign`]), its eigenvalue and the second largest (`None` for `d = 1`).
/// `what` names the caller in the error of a failed eigensolver.
pub(crate) fn top_of_lower(g: &Mat<f64>, what: &str) -> Result<(Vec<f64>, f64, Option<f64>)> {
    let d = g.nrows();
    let evd = g
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Numeric(format!("{what} eigensolver failed: {e:?}")))?;
    let s = evd.S().column_vector();
    let u = evd.U();
    let top = d - 1;
    let mut vector: Vec<f64> = (0..d).map(|i| u[(i, top)]).collect();
    let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
    vector.iter_mut().for_each(|x| *x /= norm);
    canonical_sign(&mut vector);
    Ok((vector, s[top], (d > 1).then(|| s[top - 1])))
}

/// Streaming Gram accumulator `G = Σ a_i a_iᵀ` (lower triangle kept).
#[derive(Debug, Clone)]
pub struct Gram {
    d: usize,
    g: Mat<f64>,
    rows: u64,
}

impl Gram {
    /// An empty accumulator for rows of dimension `d ≥ 1`.
    pub fn new(d: usize) -> Result<Self> {
        if d == 0 {
            return Err(Error::Input("rows have dimension 0".into()));
        }
        Ok(Gram {
            d,
            g: Mat::zeros(d, d),
            rows: 0,
        })
    }

    /// Row dimension `d`.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Rows consumed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds the rows of a row-major `n × d` buffer: `G += XᵀX`.
    ///
    /// # Panics
    /// If `rows.len()` is not a multiple of `d` (the rows adapter guarantees it is).
    pub fn update(&mut self, rows: &[f64]) {
        assert_eq!(rows.len() % self.d, 0, "row buffer is not n × d");
        let n = rows.len() / self.d;
        if n == 0 {
            return;
        }
        add_gram_lower(&mut self.g, rows, self.d);
        self.rows += n as u64;
    }

    /// Adds another accumulator built on a disjoint set of rows (`G = G₁ + G₂`).
    pub fn merge(&mut self, other: &Gram) -> Result<()> {
        if other.d != self.d {
            return Err(Error::Input(format!(
                "cannot merge Gram matrices of dimension {} and {}",
                self.d, other.d
            )));
        }
        for j in 0..self.d {
            for i in j..self.d {
                self.g[(i, j)] += other.g[(i, j)];
            }
        }
        self.rows += other.rows;
        Ok(())
    }

    /// The lower triangle of `G`, column by column (`d(d+1)/2` values): with [`Self::rows`],
    /// everything needed to rebuild the accumulator ([`Self::from_lower`]), e.g. as the state
    /// a partition of an SQL aggregate hands to the merge.
    pub fn lower(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.d * (self.d + 1) / 2);
        for j in 0..self.d {
            out.extend((j..self.d).map(|i| self.g[(i, j)]));
        }
        out
    }

    /// The accumulator [`Self::lower`] came from.
    pub fn from_lower(d: usize, rows: u64, lower: &[f64]) -> Result<Self> {
        if lower.len() != d * (d + 1) / 2 {
            return Err(Error::Input(format!(
                "a Gram state of dimension {d} needs {} values, got {}",
                d * (d + 1) / 2,
                lower.len()
            )));
        }
        let mut g = Gram::new(d)?;
        let mut it = lower.iter();
        for j in 0..d {
            for i in j..d {
                g.g[(i, j)] = *it.next().expect("length checked");
            }
        }
        g.rows = rows;
        Ok(g)
    }

    /// Bytes held by the accumulator (`d²` doubles).
    pub fn state_bytes(&self) -> u64 {
        (self.d * self.d * std::mem::size_of::<f64>()) as u64
    }

    /// `trace(G) = ‖A‖_F²`.
    pub fn frobenius_sq(&self) -> f64 {
        (0..self.d).map(|i| self.g[(i, i)]).sum()
    }

    /// Solves the symmetric eigenproblem of `G` and returns its top eigenpair.
    pub fn finish(&self) -> Result<TopEigen> {
        if self.rows == 0 {
            return Err(Error::Input(
                "no rows: the eigenvector of an empty matrix is undefined".into(),
            ));
        }
        let (vector, eigenvalue, second_eigenvalue) = top_of_lower(&self.g, "symmetric")?;
        Ok(TopEigen {
            vector,
            eigenvalue,
            second_eigenvalue,
            frobenius_sq: self.frobenius_sq(),
            rows: self.rows,
            heavy_rows: 0,
            state_bytes: self.state_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eigen::alignment;
    use proptest::prelude::*;

    /// Rows `sqrt(λ_j) q_j` for an orthonormal basis `q_j`: `AᵀA = Q diag(λ) Qᵀ` exactly.
    fn known_spectrum(d: usize, lambdas: &[f64], angle: f64) -> (Vec<f64>, Vec<f64>) {
        // Q = a Givens rotation in the (0, 1) plane: q_0 = (cos, sin, 0…), q_1 = (−sin, cos, 0…).
        let (c, s) = (angle.cos(), angle.sin());
        let mut rows = vec![0.0; d * d];
        for j in 0..d {
            let mut q = vec![0.0; d];
            match j {
                0 => (q[0], q[1]) = (c, s),
                1 => (q[0], q[1]) = (-s, c),
                _ => q[j] = 1.0,
            }
            for k in 0..d {
                rows[j * d + k] = lambdas[j].sqrt() * q[k];
            }
        }
        let mut v1 = vec![0.0; d];
        (v1[0], v1[1]) = (c, s);
        (rows, v1)
    }

    #[test]
    fn finds_the_known_top_eigenpair() {
        let d = 6;
        let lambdas = [9.0, 4.0, 3.0, 2.0, 1.0, 0.5];
        let (rows, v1) = known_spectrum(d, &lambdas, 0.3);
        let mut g = Gram::new(d).unwrap();
        g.update(&rows);
        let top = g.finish().unwrap();
        assert!(alignment(&top.vector, &v1) > 1.0 - 1e-12);
        assert!((top.eigenvalue - 9.0).abs() < 1e-12);
        assert!((top.second_eigenvalue.unwrap() - 4.0).abs() < 1e-12);
        assert!((top.frobenius_sq - lambdas.iter().sum::<f64>()).abs() < 1e-12);
        assert_eq!(top.rows, d as u64);
    }

    #[test]
    fn empty_accumulator_is_an_error() {
        let g = Gram::new(3).unwrap();
        assert!(g.finish().is_err());
        assert!(Gram::new(0).is_err());
    }

    proptest! {
        /// Order independence and mergeability: any split of the rows into two parts, each
        /// accumulated alone and then merged, gives the single-pass Gram matrix.
        #[test]
        fn merge_equals_single_pass(
            d in 1usize..8,
            values in proptest::collection::vec(-10.0f64..10.0, 0..200),
            split in 0.0f64..1.0,
        ) {
            let n = values.len() / d;
            let rows = &values[..n * d];
            let cut = ((n as f64) * split) as usize * d;
            let mut whole = Gram::new(d).unwrap();
            whole.update(rows);
            let mut left = Gram::new(d).unwrap();
            left.update(&rows[..cut]);
            let mut right = Gram::new(d).unwrap();
            right.update(&rows[cut..]);
            left.merge(&right).unwrap();
            prop_assert_eq!(left.rows(), whole.rows());
            for j in 0..d {
                for i in j..d {
                    let (a, b) = (left.g[(i, j)], whole.g[(i, j)]);
                    prop_assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "G[{i},{j}]: {a} vs {b}");
                }
            }
        }
    }
}
