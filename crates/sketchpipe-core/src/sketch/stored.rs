//! A sketch as it is stored and read back — a sample of rows or a linear sketch, with the
//! header that says what it can be combined with — and the three things done with stored
//! sketches: the one compatibility check ([`check_compatible`]), merging sketches of disjoint
//! row sets ([`merge`]) and estimating `AᵀB` from two of them ([`estimate`]).
//!
//! The Arrow/Parquet encoding of the image (the `sketch` table and its key-value header) lives
//! with the operator in the `sketchpipe` crate; this module is what that encoding carries.
//! A reader only accepts sketches made with this version's key hash
//! ([`crate::hash::HASH_VERSION`]), so any two sketches that reach these functions share it.

use std::collections::HashSet;

use super::linear::{self, LinearSketch};
use super::priority::PrioritySketch;
use super::{estimate_product_sparse, Method, Sample};
use crate::{Error, Result};

/// How keys were typed; sketches combine only with the same key type (an `Int64` 7 and a
/// string "7" are different keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Int,
    UInt,
    Str,
}

impl KeyType {
    /// The name written in a sketch's header.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyType::Int => "int",
            KeyType::UInt => "uint",
            KeyType::Str => "string",
        }
    }

    /// The key type a header names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "int" => Some(KeyType::Int),
            "uint" => Some(KeyType::UInt),
            "string" => Some(KeyType::Str),
            _ => None,
        }
    }
}

/// A sketch as stored: a sample of rows, or a linear sketch.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredSketch {
    Sample(Sample),
    Linear(LinearSketch),
}

impl StoredSketch {
    pub fn method(&self) -> Method {
        match self {
            StoredSketch::Sample(s) => s.method,
            StoredSketch::Linear(s) => s.method,
        }
    }

    pub fn seed(&self) -> u64 {
        match self {
            StoredSketch::Sample(s) => s.seed,
            StoredSketch::Linear(s) => s.seed,
        }
    }

    pub fn dim(&self) -> usize {
        match self {
            StoredSketch::Sample(s) => s.dim,
            StoredSketch::Linear(s) => s.dim,
        }
    }

    /// `k` as asked for (sampling) or the sketch rows `t` (linear).
    pub fn size(&self) -> usize {
        match self {
            StoredSketch::Sample(s) => s.size,
            StoredSketch::Linear(l) => l.t,
        }
    }

    /// The sample of a sampling sketch; `name` names it in the error a linear sketch gets
    /// (it keeps combinations of all rows, so it cannot tell which keys another table has:
    /// everything over a join needs a sample).
    pub fn sample(&self, name: &str) -> Result<&Sample> {
        match self {
            StoredSketch::Sample(s) => Ok(s),
            StoredSketch::Linear(l) => Err(Error::Input(format!(
                "{name}: a `{}` sketch keeps combinations of all rows, not rows, so it cannot \
                 tell which keys the other table has; an estimate over a join needs sampling \
                 sketches (priority, threshold or exact)",
                l.method.as_str()
            ))),
        }
    }

    /// Input rows the sketch has seen.
    pub fn rows_seen(&self) -> u64 {
        match self {
            StoredSketch::Sample(s) => s.rows_seen,
            StoredSketch::Linear(l) => l.rows_seen,
        }
    }
}

/// What the sketch's rows are keyed by and made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub key_type: KeyType,
    /// The value columns, in order: the names of the product's rows or columns.
    pub columns: Vec<String>,
}

/// A stored sketch, its header and how to name it in messages (`stage `a``, a path, `left`).
pub type Named<'a> = (&'a StoredSketch, &'a Header, &'a str);

/// The one check every combination of two stored sketches goes through (product, regression,
/// merge, the SQL functions): the same method, seed and key type. The hash is the same by
/// construction (see the module docs). Errors name both sketches.
pub fn check_compatible(a: Named<'_>, b: Named<'_>) -> Result<()> {
    let ((a, ha, na), (b, hb, nb)) = (a, b);
    let both = |what: &str, x: &str, y: &str| {
        Err(Error::Input(format!(
            "the sketches were made with different {what}: {na} has {x}, {nb} has {y}; only \
             sketches with the same method, seed, hash and key type combine"
        )))
    };
    if a.method() != b.method() {
        return both("methods", a.method().as_str(), b.method().as_str());
    }
    if a.seed() != b.seed() {
        return both("seeds", &a.seed().to_string(), &b.seed().to_string());
    }
    if ha.key_type != hb.key_type {
        return both("key types", ha.key_type.as_str(), hb.key_type.as_str());
    }
    Ok(())
}

/// Merges sketches of disjoint row sets (partitions, days, machines), each with a name for
/// errors, into the sketch one pass over all their rows would give (Daliri, Freire, Li, Musco,
/// arXiv:2501.17836; §2 of `docs/algorithms.md`):
/// * `priority` — the union's `k` smallest ranks, `τ` the (k+1)-th smallest rank of the union
///   and no larger than any input's `τ` ([`PrioritySketch::merge`]): exactly the one-pass
///   sketch;
/// * `exact` — the union of the rows;
/// * `jl`, `countsketch` — the sum.
///
/// `threshold` sketches do not merge (each one's `λ` comes from its own input's `‖A‖_F²`). A
/// key present in two inputs means the inputs were not disjoint: an error naming the key, when
/// it is among the kept rows.
pub fn merge(inputs: Vec<(StoredSketch, Header, String)>) -> Result<(StoredSketch, Header)> {
    let mut it = inputs.into_iter();
    let (first, header, first_name) = it.next().expect("at least two inputs");
    let method = first.method();
    if method == Method::Threshold {
        return Err(Error::Input(format!(
            "{first_name}: threshold sketches do not merge (each one's λ depends on its own \
             input's ‖A‖_F²); make the partitions' sketches with method = \"priority\""
        )));
    }
    let rest: Vec<(StoredSketch, Header, String)> = it.collect();
    for (s, h, name) in &rest {
        check_compatible((&first, &header, &first_name), (s, h, name))?;
        let both = |what: &str, x: String, y: String| {
            Error::Input(format!(
                "cannot merge sketches with different {what}: {first_name} has {x}, {name} has {y}"
            ))
        };
        if h.columns != header.columns || s.dim() != first.dim() {
            return Err(both(
                "columns",
                format!("{:?} (d = {})", header.columns, first.dim()),
                format!("{:?} (d = {})", h.columns, s.dim()),
            ));
        }
        if let (StoredSketch::Sample(x), StoredSketch::Sample(y)) = (&first, s) {
            if x.weights != y.weights {
                return Err(both(
                    "weights",
                    x.weights.as_str().to_string(),
                    y.weights.as_str().to_string(),
                ));
            }
        }
        if method != Method::Exact && s.size() != first.size() {
            return Err(both(
                "sizes",
                first.size().to_string(),
                s.size().to_string(),
            ));
        }
    }
    let merged = match first {
        StoredSketch::Linear(mut acc) => {
            for (s, _, _) in &rest {
                let StoredSketch::Linear(l) = s else {
                    unreachable!("same method")
                };
                acc.merge(l)?;
            }
            StoredSketch::Linear(acc)
        }
        StoredSketch::Sample(sample) if method == Method::Priority => {
            let mut acc = PrioritySketch::resume(sample);
            for (s, _, _) in rest {
                let StoredSketch::Sample(s) = s else {
                    unreachable!("same method")
                };
                acc.merge(PrioritySketch::resume(s));
            }
            StoredSketch::Sample(check_disjoint(acc.finish())?)
        }
        StoredSketch::Sample(mut acc) => {
            for (s, _, _) in rest {
                let StoredSketch::Sample(s) = s else {
                    unreachable!("same method")
                };
                acc.rows.extend(s.rows);
                acc.frobenius_sq += s.frobenius_sq;
                acc.rows_seen += s.rows_seen;
                acc.zero_weight_rows = acc
                    .zero_weight_rows
                    .zip(s.zero_weight_rows)
                    .map(|(a, b)| a + b);
            }
            acc.rows.sort_by(|a, b| a.key.cmp(&b.key));
            acc.size = acc.rows.len();
            StoredSketch::Sample(check_disjoint(acc)?)
        }
    };
    Ok((merged, header))
}

fn check_disjoint(s: Sample) -> Result<Sample> {
    let mut seen = HashSet::with_capacity(s.rows.len());
    for r in &s.rows {
        if !seen.insert(&r.key) {
            return Err(Error::Input(format!(
                "key {} is in more than one of the merged sketches: merge sketches of disjoint \
                 rows (partitions, days), or combine the rows of a key before sketching",
                r.key
            )));
        }
    }
    Ok(s)
}

/// An estimate of `AᵀB` from two sketches, and what a product's `stats` says about it.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// `d × m`, CSR.
    pub w: sprs::CsMat<f64>,
    pub method: Method,
    pub seed: u64,
    /// Rows kept (sampling) or sketch rows (linear) of each side.
    pub left_size: u64,
    pub right_size: u64,
    /// Keys kept by both sides (sampling).
    pub joined: u64,
    pub left_frobenius_sq: f64,
    pub right_frobenius_sq: f64,
    pub stored_words: f64,
    /// The RMS error bound the theory gives, where it gives one.
    pub error_bound: Option<f64>,
}

/// Estimates `AᵀB` from two stored sketches, refusing ones that do not combine
/// ([`check_compatible`]): `W = Σ_{i kept by both} a_i b_iᵀ / min(1, p_i^A, p_i^B)` for
/// sampling sketches, `(ΠA)ᵀ(ΠB)` for linear ones. For `priority` the bound is the RMS bound
/// `sqrt(2/(k−1)) ‖A‖_F ‖B‖_F` on `‖W − AᵀB‖_F` (`k` the smaller size); 0 for `exact`.
pub fn estimate(left: Named<'_>, right: Named<'_>) -> Result<Estimate> {
    check_compatible(left, right)?;
    let ((a, _, _), (b, _, _)) = (left, right);
    let (d, m) = (a.dim(), b.dim());
    Ok(match (a, b) {
        (StoredSketch::Sample(sa), StoredSketch::Sample(sb)) => {
            let (w, joined) = estimate_product_sparse(sa, sb)?;
            let error_bound = match sa.method {
                Method::Priority => {
                    let k = sa.size.min(sb.size) as f64;
                    (k > 1.0).then(|| (2.0 / (k - 1.0) * sa.frobenius_sq * sb.frobenius_sq).sqrt())
                }
                Method::Exact => Some(0.0),
                _ => None,
            };
            Estimate {
                w,
                method: sa.method,
                seed: sa.seed,
                left_size: sa.rows.len() as u64,
                right_size: sb.rows.len() as u64,
                joined,
                left_frobenius_sq: sa.frobenius_sq,
                right_frobenius_sq: sb.frobenius_sq,
                stored_words: sa.stored_words() + sb.stored_words(),
                error_bound,
            }
        }
        (StoredSketch::Linear(la), StoredSketch::Linear(lb)) => {
            // A linear sketch's product is dense: keep its non-zeros in the same CSR form.
            let dense = linear::estimate_product(la, lb)?;
            let mut tri = sprs::TriMat::new((d, m));
            for (k, v) in dense.iter().enumerate() {
                if *v != 0.0 {
                    tri.add_triplet(k / m, k % m, *v);
                }
            }
            Estimate {
                w: tri.to_csr(),
                method: la.method,
                seed: la.seed,
                left_size: la.t as u64,
                right_size: lb.t as u64,
                joined: 0,
                left_frobenius_sq: la.frobenius_sq,
                right_frobenius_sq: lb.frobenius_sq,
                stored_words: la.stored_words() + lb.stored_words(),
                error_bound: None,
            }
        }
        _ => unreachable!("same method checked"),
    })
}
