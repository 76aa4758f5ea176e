//! Coordinated sampling sketches for `AᵀB` — M. Daliri, J. Freire, D. Li, C. Musco,
//! *Matrix Product Sketching via Coordinated Sampling*, ICLR 2025, arXiv:2501.17836 (§2 of
//! `docs/algorithms.md`); threshold and priority sampling for vectors from Daliri, Freire, Musco,
//! Santos, Zhang, *Sampling Methods for Inner Product Sketching*, VLDB 2024.
//!
//! Two tables `A` (`n × d`) and `B` (`n × m`) that share a row key are sketched apart; the only
//! thing the two sides share is a seed, through the hash `u(key)` of [`crate::hash`]. Any two
//! sketches made with the same seed estimate `AᵀB` ([`estimate_product`]):
//! `W = Σ_{i kept by both} a_i b_iᵀ / min(1, p_i^A, p_i^B)`, unbiased because both sides compare
//! the *same* `u(key)` with their own inclusion probability, so `P(kept by both) = min(p^A, p^B)`.
//!
//! Cores, pure: [`priority::PrioritySketch`] (fixed size `k`, one pass, mergeable),
//! [`threshold::ThresholdSketch`] (expected size `k`, one pass), the `exact` reference (every
//! row, `p = 1`), and the linear baselines of [`linear`] (Johnson–Lindenstrauss, CountSketch).

pub mod join;
pub mod linear;
pub mod priority;
pub mod stored;
pub mod threshold;

use std::collections::HashMap;

use crate::hash::Key;
use crate::{Error, Result};

/// Which sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Priority,
    Threshold,
    Exact,
    Jl,
    CountSketch,
}

impl Method {
    pub const NAMES: [&'static str; 5] = ["priority", "threshold", "exact", "jl", "countsketch"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "priority" => Method::Priority,
            "threshold" => Method::Threshold,
            "exact" => Method::Exact,
            "jl" => Method::Jl,
            "countsketch" => Method::CountSketch,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Priority => "priority",
            Method::Threshold => "threshold",
            Method::Exact => "exact",
            Method::Jl => "jl",
            Method::CountSketch => "countsketch",
        }
    }

    /// Sampling sketches keep rows; linear ones keep `t` combinations of all rows.
    pub fn is_sampling(&self) -> bool {
        matches!(self, Method::Priority | Method::Threshold | Method::Exact)
    }
}

/// How a row's sampling weight `w_i` is made from its values (sampling methods only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weights {
    /// `w_i = ‖a_i‖²`, the weights the `AᵀB` bounds assume; an all-zero row is never kept.
    #[default]
    Norm,
    /// `w_i = 1` for every row: a coordinated uniform sample of the keys. Every key can be
    /// kept, which the join-size estimator needs, and no row dominates the sample.
    Uniform,
}

impl Weights {
    pub const NAMES: [&'static str; 2] = ["norm", "uniform"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "norm" => Some(Weights::Norm),
            "uniform" => Some(Weights::Uniform),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Weights::Norm => "norm",
            Weights::Uniform => "uniform",
        }
    }

    /// The weight of a row whose `‖a‖²` is `norm_sq`.
    pub fn of(&self, norm_sq: f64) -> f64 {
        match self {
            Weights::Norm => norm_sq,
            Weights::Uniform => 1.0,
        }
    }
}

/// An owned key, as stored in a sketch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    Int(i64),
    UInt(u64),
    Str(String),
}

impl KeyValue {
    pub fn as_key(&self) -> Key<'_> {
        match self {
            KeyValue::Int(v) => Key::Int(*v),
            KeyValue::UInt(v) => Key::UInt(*v),
            KeyValue::Str(s) => Key::Str(s),
        }
    }

    pub fn from_key(key: Key<'_>) -> Self {
        match key {
            Key::Int(v) => KeyValue::Int(v),
            Key::UInt(v) => KeyValue::UInt(v),
            Key::Str(s) => KeyValue::Str(s.to_string()),
        }
    }
}

impl std::fmt::Display for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyValue::Int(v) => write!(f, "{v}"),
            KeyValue::UInt(v) => write!(f, "{v}"),
            KeyValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A row stored sparsely: its non-zero columns and values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseRow {
    pub indices: Vec<u32>,
    pub values: Vec<f64>,
}

impl SparseRow {
    /// The non-zeros of a dense row.
    pub fn from_dense(row: &[f64]) -> Self {
        let mut s = SparseRow::default();
        for (j, v) in row.iter().enumerate() {
            if *v != 0.0 {
                s.indices.push(j as u32);
                s.values.push(*v);
            }
        }
        s
    }

    pub fn norm_sq(&self) -> f64 {
        self.values.iter().map(|v| v * v).sum()
    }
}

/// One input row, dense or sparse (distinct column indices).
#[derive(Debug, Clone, Copy)]
pub enum RowRef<'a> {
    Dense(&'a [f64]),
    Sparse {
        indices: &'a [u32],
        values: &'a [f64],
    },
}

impl<'a> From<&'a [f64]> for RowRef<'a> {
    fn from(row: &'a [f64]) -> Self {
        RowRef::Dense(row)
    }
}

impl<'a> From<&'a Vec<f64>> for RowRef<'a> {
    fn from(row: &'a Vec<f64>) -> Self {
        RowRef::Dense(row)
    }
}

impl RowRef<'_> {
    /// `‖a‖²`.
    pub fn norm_sq(&self) -> f64 {
        let values = match self {
            RowRef::Dense(v) => v,
            RowRef::Sparse { values, .. } => values,
        };
        values.iter().map(|v| v * v).sum()
    }

    /// The row's non-zeros, owned.
    pub fn to_sparse(&self) -> SparseRow {
        match self {
            RowRef::Dense(v) => SparseRow::from_dense(v),
            RowRef::Sparse { indices, values } => {
                let mut s = SparseRow::default();
                for (&j, &v) in indices.iter().zip(*values) {
                    if v != 0.0 {
                        s.indices.push(j);
                        s.values.push(v);
                    }
                }
                s
            }
        }
    }

    /// Calls `f(column, value)` for every stored entry (a dense row's zeros included).
    pub fn for_each(&self, mut f: impl FnMut(usize, f64)) {
        match self {
            RowRef::Dense(v) => v.iter().enumerate().for_each(|(j, x)| f(j, *x)),
            RowRef::Sparse { indices, values } => indices
                .iter()
                .zip(*values)
                .for_each(|(j, x)| f(*j as usize, *x)),
        }
    }
}

/// A sampled row: its key, `u(key)`, weight `‖a‖²` and values.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledRow {
    pub key: KeyValue,
    pub u: f64,
    pub weight: f64,
    pub row: SparseRow,
}

/// A finished sampling sketch: the kept rows and how to get each one's inclusion probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub method: Method,
    pub seed: u64,
    pub dim: usize,
    /// Priority: the threshold `τ` (`p = min(1, w τ)`; ∞ when every row was kept). Threshold:
    /// the water-filling level `λ` (`p = min(1, λ w)`). Exact: ∞.
    pub level: f64,
    /// `k` as asked for.
    pub size: usize,
    /// Rows kept, sorted by key.
    pub rows: Vec<SampledRow>,
    /// `‖A‖_F²` over every row seen (valid rows).
    pub frobenius_sq: f64,
    /// Rows seen.
    pub rows_seen: u64,
    /// How the rows' weights were made.
    pub weights: Weights,
    /// Rows of weight 0 (all-zero rows under `norm` weights), which can never be kept; `None`
    /// for a sketch stored before this count was (the estimators over a join need it).
    pub zero_weight_rows: Option<u64>,
}

impl Sample {
    /// The inclusion probability of a kept row of weight `w`.
    pub fn probability(&self, w: f64) -> f64 {
        (w * self.level).min(1.0)
    }

    /// Storage in 64-bit words (§2): per kept row one word for the key/hash and 1.5 words per
    /// non-zero (a value and half a word for its column index).
    pub fn stored_words(&self) -> f64 {
        self.rows
            .iter()
            .map(|r| 1.0 + 1.5 * r.row.values.len() as f64)
            .sum()
    }
}

/// Calls `f(a_i, b_i, 1 / min(1, p_i^A, p_i^B))` for every key kept by both samples (the
/// coordinated join); returns how many there were.
pub fn for_each_joined(
    a: &Sample,
    b: &Sample,
    mut f: impl FnMut(&SparseRow, &SparseRow, f64),
) -> Result<u64> {
    for_each_joined_p(a, b, |ra, rb, p| f(ra, rb, 1.0 / p))
}

/// [`for_each_joined`] with the probability itself, `p_i = min(1, p_i^A, p_i^B)`, and the rows
/// borrowed for as long as the samples, in the left sample's key order.
pub fn for_each_joined_p<'a>(
    a: &'a Sample,
    b: &'a Sample,
    mut f: impl FnMut(&'a SparseRow, &'a SparseRow, f64),
) -> Result<u64> {
    check_compatible(a.method, a.seed, b.method, b.seed)?;
    let index: HashMap<&KeyValue, usize> = b
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| (&r.key, i))
        .collect();
    let mut joined = 0;
    for ra in &a.rows {
        let Some(&j) = index.get(&ra.key) else {
            continue;
        };
        let rb = &b.rows[j];
        f(
            &ra.row,
            &rb.row,
            a.probability(ra.weight).min(b.probability(rb.weight)),
        );
        joined += 1;
    }
    Ok(joined)
}

/// Adds `scale · x yᵀ` into the row-major `out` (`x.len()`-dimensional rows of width `m`).
fn add_outer(out: &mut [f64], m: usize, x: &SparseRow, y: &SparseRow, scale: f64) {
    for (&i, &vx) in x.indices.iter().zip(&x.values) {
        let row = &mut out[i as usize * m..(i as usize + 1) * m];
        for (&j, &vy) in y.indices.iter().zip(&y.values) {
            row[j as usize] += scale * vx * vy;
        }
    }
}

/// The estimate of `AᵀB` (`d × m`, row-major) from two coordinated samples.
pub fn estimate_product(a: &Sample, b: &Sample) -> Result<Vec<f64>> {
    let (d, m) = (a.dim, b.dim);
    let mut w = vec![0.0; d * m];
    for_each_joined(a, b, |ra, rb, scale| add_outer(&mut w, m, ra, rb, scale))?;
    Ok(w)
}

/// The estimate of `AᵀB` as a sparse `d × m` matrix (CSR), with the number of keys kept by
/// both samples: only the entries the joined rows touch are stored, so wide sparse tables never
/// need a dense `d × m` array. (The same sums as [`estimate_product`].)
pub fn estimate_product_sparse(a: &Sample, b: &Sample) -> Result<(sprs::CsMat<f64>, u64)> {
    let mut tri = sprs::TriMat::new((a.dim, b.dim));
    let joined = for_each_joined(a, b, |ra, rb, scale| {
        for (&i, &va) in ra.indices.iter().zip(&ra.values) {
            for (&j, &vb) in rb.indices.iter().zip(&rb.values) {
                tri.add_triplet(i as usize, j as usize, scale * va * vb);
            }
        }
    })?;
    Ok((tri.to_csr(), joined))
}

/// The estimate of `Σ_{i in both tables} a_i a_iᵀ` (`d × d`) — `AᵀA` restricted to the keys the
/// other table has, which sketched regression over a join needs next to `AᵀB`.
pub fn estimate_join_gram(a: &Sample, b: &Sample) -> Result<Vec<f64>> {
    let d = a.dim;
    let mut g = vec![0.0; d * d];
    for_each_joined(a, b, |ra, _, scale| add_outer(&mut g, d, ra, ra, scale))?;
    Ok(g)
}

/// Sketches combine only when made with the same method family and seed.
pub fn check_compatible(ma: Method, sa: u64, mb: Method, sb: u64) -> Result<()> {
    if ma != mb {
        return Err(Error::Input(format!(
            "the sketches were made with different methods: left `{}`, right `{}`",
            ma.as_str(),
            mb.as_str()
        )));
    }
    if sa != sb {
        return Err(Error::Input(format!(
            "the sketches were made with different seeds: left {sa}, right {sb} — only sketches \
             sharing a seed are coordinated"
        )));
    }
    Ok(())
}

/// Keeps every row (the reference, `p = 1`): the same interface as the samplers.
#[derive(Debug, Clone)]
pub struct ExactSketch {
    seed: u64,
    dim: usize,
    rows: Vec<SampledRow>,
    frobenius_sq: f64,
    rows_seen: u64,
    weights: Weights,
    zero_weight_rows: u64,
}

impl ExactSketch {
    pub fn new(dim: usize, seed: u64) -> Self {
        ExactSketch {
            seed,
            dim,
            rows: Vec::new(),
            frobenius_sq: 0.0,
            rows_seen: 0,
            weights: Weights::Norm,
            zero_weight_rows: 0,
        }
    }

    /// The same sketch with rows weighted by `weights`.
    pub fn with_weights(mut self, weights: Weights) -> Self {
        self.weights = weights;
        self
    }

    pub fn update<'r>(&mut self, key: Key<'_>, row: impl Into<RowRef<'r>>) {
        self.rows_seen += 1;
        let row = row.into().to_sparse();
        let norm_sq = row.norm_sq();
        self.frobenius_sq += norm_sq;
        let weight = self.weights.of(norm_sq);
        if weight == 0.0 {
            self.zero_weight_rows += 1;
        } else {
            self.rows.push(SampledRow {
                u: crate::hash::uniform(key, self.seed),
                key: KeyValue::from_key(key),
                weight,
                row,
            });
        }
    }

    pub fn finish(mut self) -> Sample {
        self.rows.sort_by(|a, b| a.key.cmp(&b.key));
        Sample {
            method: Method::Exact,
            seed: self.seed,
            dim: self.dim,
            level: f64::INFINITY,
            size: self.rows.len(),
            rows: self.rows,
            frobenius_sq: self.frobenius_sq,
            rows_seen: self.rows_seen,
            weights: self.weights,
            zero_weight_rows: Some(self.zero_weight_rows),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small dense test matrices with keys, and the exact product.
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `n` keyed rows of width `d`, a fraction `density` non-zero, plus a few large entries.
    pub fn table(n: usize, d: usize, density: f64, seed: u64) -> Vec<(i64, Vec<f64>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let row = (0..d)
                    .map(|_| {
                        if rng.random::<f64>() < density {
                            rng.random::<f64>() * 2.0 - 1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                (i as i64, row)
            })
            .collect()
    }

    pub fn product(a: &[(i64, Vec<f64>)], b: &[(i64, Vec<f64>)]) -> Vec<f64> {
        let (d, m) = (a[0].1.len(), b[0].1.len());
        let mut w = vec![0.0; d * m];
        for ((ka, ra), (kb, rb)) in a.iter().zip(b) {
            assert_eq!(ka, kb);
            for i in 0..d {
                for j in 0..m {
                    w[i * m + j] += ra[i] * rb[j];
                }
            }
        }
        w
    }

    pub fn frobenius(v: &[f64]) -> f64 {
        v.iter().map(|x| x * x).sum::<f64>().sqrt()
    }
}
