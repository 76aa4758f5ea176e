//! `op = "sketch_merge"`: one sketch from sketches of disjoint row sets (partitions, days,
//! machines) made with the same method, seed, hash and key type — as if built in one pass
//! (Daliri, Freire, Li, Musco, arXiv:2501.17836; §2 of `ALGORITHMS.md`):
//! * `priority` — the union's `k` smallest ranks, `τ` the (k+1)-th smallest rank of the union
//!   and no larger than any input's `τ` ([`crate::sketch::priority::PrioritySketch::merge`]):
//!   exactly the one-pass sketch;
//! * `exact` — the union of the rows;
//! * `jl`, `countsketch` — the sum.
//!
//! `threshold` sketches do not merge (each one's `λ` comes from its own input's `‖A‖_F²`): the
//! stage says so. A key present in two inputs means the inputs were not disjoint: an error
//! naming the key, when it is among the kept rows.

use std::collections::HashSet;

use super::coordinated_sketch::{Header, StoredSketch};
use crate::sketch::priority::PrioritySketch;
use crate::sketch::{Method, Sample};
use crate::{Error, Result};

/// Merges `inputs` (each with a name for errors).
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
        let both = |what: &str, x: String, y: String| {
            Error::Input(format!(
                "cannot merge sketches with different {what}: {first_name} has {x}, {name} has {y}"
            ))
        };
        if s.method() != method {
            return Err(both(
                "methods",
                method.as_str().into(),
                s.method().as_str().into(),
            ));
        }
        if s.seed() != first.seed() {
            return Err(both(
                "seeds",
                first.seed().to_string(),
                s.seed().to_string(),
            ));
        }
        if h.key_type != header.key_type {
            return Err(both(
                "key types",
                header.key_type.as_str().into(),
                h.key_type.as_str().into(),
            ));
        }
        if h.columns != header.columns || s.dim() != first.dim() {
            return Err(both(
                "columns",
                format!("{:?} (d = {})", header.columns, first.dim()),
                format!("{:?} (d = {})", h.columns, s.dim()),
            ));
        }
        let size = |s: &StoredSketch| match s {
            StoredSketch::Sample(s) => s.size,
            StoredSketch::Linear(l) => l.t,
        };
        if method != Method::Exact && size(s) != size(&first) {
            return Err(both("sizes", size(&first).to_string(), size(s).to_string()));
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
