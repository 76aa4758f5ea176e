//! The linear baselines of §2 of `docs/algorithms.md`, coordinated through the same key hash so two
//! tables sketched apart combine: both estimate `AᵀB` as `(ΠA)ᵀ(ΠB)` for a random `t × n`
//! matrix `Π` whose column for a row is a function of the row's key and the seed.
//!
//! * **JL** (Johnson–Lindenstrauss): `Π_{r,i} = ±1/√t`, the sign bit `r mod 64` of
//!   `XXH64(key, s_{⌊r/64⌋})` with `s_j = XXH64(j, seed)`.
//! * **CountSketch**: one bucket `⌊h·t / 2⁶⁴⌋` and one sign per key, from
//!   `h = XXH64(key, XXH64("bucket", seed))` and the top bit of `XXH64(key, XXH64("sign", seed))`;
//!   the plain single-table estimate (no median).
//!
//! Both are unbiased (`E ΠᵀΠ = I`), cost `t·d` words, and merge by addition.

use super::{Method, RowRef};
use crate::hash::{hash64, Key};
use crate::{Error, Result};

/// A JL or CountSketch sketch `S = ΠA` (`t × d`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearSketch {
    pub method: Method,
    pub seed: u64,
    pub t: usize,
    pub dim: usize,
    pub s: Vec<f64>,
    pub frobenius_sq: f64,
    pub rows_seen: u64,
    /// JL: the per-64-rows hash seeds; CountSketch: `[bucket seed, sign seed]`.
    seeds: Vec<u64>,
}

impl LinearSketch {
    pub fn new(method: Method, t: usize, dim: usize, seed: u64) -> Result<Self> {
        let seeds = match method {
            Method::Jl => (0..t.div_ceil(64) as u64)
                .map(|j| hash64(Key::UInt(j), seed))
                .collect(),
            Method::CountSketch => vec![
                hash64(Key::Str("bucket"), seed),
                hash64(Key::Str("sign"), seed),
            ],
            other => {
                return Err(Error::Config(format!(
                    "`{}` is not a linear sketch",
                    other.as_str()
                )))
            }
        };
        if t == 0 {
            return Err(Error::Config("a linear sketch needs size ≥ 1".into()));
        }
        Ok(LinearSketch {
            method,
            seed,
            t,
            dim,
            s: vec![0.0; t * dim],
            frobenius_sq: 0.0,
            rows_seen: 0,
            seeds,
        })
    }

    /// A sketch read back from storage: `s` is `t × dim`, row-major.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        method: Method,
        seed: u64,
        t: usize,
        dim: usize,
        s: Vec<f64>,
        frobenius_sq: f64,
        rows_seen: u64,
    ) -> Result<Self> {
        let mut sketch = LinearSketch::new(method, t, dim, seed)?;
        if s.len() != t * dim {
            return Err(Error::Input(format!(
                "a {t} × {dim} sketch needs {} values, got {}",
                t * dim,
                s.len()
            )));
        }
        sketch.s = s;
        sketch.frobenius_sq = frobenius_sq;
        sketch.rows_seen = rows_seen;
        Ok(sketch)
    }

    pub fn update<'r>(&mut self, key: Key<'_>, row: impl Into<RowRef<'r>>) {
        let row = row.into();
        self.rows_seen += 1;
        self.frobenius_sq += row.norm_sq();
        let d = self.dim;
        match self.method {
            Method::Jl => {
                let scale = 1.0 / (self.t as f64).sqrt();
                for (j, &s) in self.seeds.iter().enumerate() {
                    let bits = hash64(key, s);
                    let rows = (j * 64)..((j + 1) * 64).min(self.t);
                    for r in rows {
                        let sign = if bits >> (r % 64) & 1 == 1 {
                            scale
                        } else {
                            -scale
                        };
                        let out = &mut self.s[r * d..(r + 1) * d];
                        row.for_each(|j, v| out[j] += sign * v);
                    }
                }
            }
            _ => {
                let h = hash64(key, self.seeds[0]);
                let bucket = ((h as u128 * self.t as u128) >> 64) as usize;
                let sign = if hash64(key, self.seeds[1]) >> 63 == 1 {
                    1.0
                } else {
                    -1.0
                };
                let out = &mut self.s[bucket * d..(bucket + 1) * d];
                row.for_each(|j, v| out[j] += sign * v);
            }
        }
    }

    /// Adds a sketch of other rows made with the same method, seed and size.
    pub fn merge(&mut self, other: &LinearSketch) -> Result<()> {
        super::check_compatible(self.method, self.seed, other.method, other.seed)?;
        if (self.t, self.dim) != (other.t, other.dim) {
            return Err(Error::Input(format!(
                "cannot merge a {}×{} sketch into a {}×{} one",
                other.t, other.dim, self.t, self.dim
            )));
        }
        self.s.iter_mut().zip(&other.s).for_each(|(a, b)| *a += b);
        self.frobenius_sq += other.frobenius_sq;
        self.rows_seen += other.rows_seen;
        Ok(())
    }

    /// Storage in 64-bit words: `t · d`.
    pub fn stored_words(&self) -> f64 {
        (self.t * self.dim) as f64
    }
}

/// `(ΠA)ᵀ(ΠB)` (`d × m`, row-major).
pub fn estimate_product(a: &LinearSketch, b: &LinearSketch) -> Result<Vec<f64>> {
    super::check_compatible(a.method, a.seed, b.method, b.seed)?;
    if a.t != b.t {
        return Err(Error::Input(format!(
            "the sketches have different sizes: left {}, right {}",
            a.t, b.t
        )));
    }
    let (d, m) = (a.dim, b.dim);
    let mut w = vec![0.0; d * m];
    for r in 0..a.t {
        let ra = &a.s[r * d..(r + 1) * d];
        let rb = &b.s[r * m..(r + 1) * m];
        for (i, va) in ra.iter().enumerate() {
            if *va == 0.0 {
                continue;
            }
            for (o, vb) in w[i * m..(i + 1) * m].iter_mut().zip(rb) {
                *o += va * vb;
            }
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{product, table};
    use super::*;

    fn sketch(method: Method, t: &[(i64, Vec<f64>)], size: usize, seed: u64) -> LinearSketch {
        let mut s = LinearSketch::new(method, size, t[0].1.len(), seed).unwrap();
        t.iter().for_each(|(k, r)| s.update(Key::Int(*k), r));
        s
    }

    #[test]
    fn both_are_unbiased_and_merge_by_addition() {
        let a = table(40, 3, 0.8, 7);
        let b = table(40, 2, 0.8, 8);
        let exact = product(&a, &b);
        for method in [Method::Jl, Method::CountSketch] {
            let seeds = 400;
            let (mut sum, mut sum_sq) = (vec![0.0; 6], vec![0.0; 6]);
            for seed in 0..seeds {
                let w =
                    estimate_product(&sketch(method, &a, 8, seed), &sketch(method, &b, 8, seed))
                        .unwrap();
                for i in 0..6 {
                    sum[i] += w[i];
                    sum_sq[i] += w[i] * w[i];
                }
            }
            for i in 0..6 {
                let mean = sum[i] / seeds as f64;
                let se = ((sum_sq[i] / seeds as f64 - mean * mean) / seeds as f64).sqrt();
                assert!((mean - exact[i]).abs() <= 4.0 * se, "{method:?} entry {i}");
            }
            let whole = sketch(method, &a, 8, 3);
            let mut left = sketch(method, &a[..15], 8, 3);
            left.merge(&sketch(method, &a[15..], 8, 3)).unwrap();
            for (x, y) in left.s.iter().zip(&whole.s) {
                assert!((x - y).abs() < 1e-12);
            }
        }
    }
}
