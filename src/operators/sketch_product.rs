//! `op = "sketch_product"`: the estimate of `AᵀB` from two coordinated sketches (Daliri,
//! Freire, Li, Musco, arXiv:2501.17836): `W = Σ_{i kept by both} a_i b_iᵀ / min(1, p_i^A, p_i^B)`
//! for sampling sketches, `(ΠA)ᵀ(ΠB)` for linear ones ([`crate::sketch`]).
//!
//! Output tables:
//! * `product` — `row UInt32`, `col UInt32`, `row_name Utf8`, `col_name Utf8`, `value Float64`:
//!   the non-zero entries of `W` (rows: the left sketch's columns, columns: the right's), in
//!   row-major order — accumulated sparsely (`sprs`) from the joined rows for sampling
//!   sketches, so a wide product is never held dense;
//! * `stats` — `method`, `seed`, `left_kept`, `right_kept`, `joined` (keys in both samples),
//!   `left_frobenius_sq`, `right_frobenius_sq`, `stored_words` (both sides), `error_bound`:
//!   for `priority`, the root-mean-square bound `sqrt(2/(k−1)) ‖A‖_F ‖B‖_F` on `‖W − AᵀB‖_F`
//!   (§2: `E‖W − AᵀB‖_F² ≤ 2/(k−1) ‖A‖_F² ‖B‖_F²`, `k` the smaller size); 0 for `exact`; null
//!   where no bound is implemented.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::coordinated_sketch::{Header, StoredSketch};
use super::{OutputTable, TableDecl};
use crate::sketch::{self, linear, Method};
use crate::{Error, Result};

static PRODUCT: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("row", DataType::UInt32, false),
        Field::new("col", DataType::UInt32, false),
        Field::new("row_name", DataType::Utf8, false),
        Field::new("col_name", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]))
});

static STATS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("method", DataType::Utf8, false),
        Field::new("seed", DataType::UInt64, false),
        Field::new("left_kept", DataType::UInt64, false),
        Field::new("right_kept", DataType::UInt64, false),
        Field::new("joined", DataType::UInt64, false),
        Field::new("left_frobenius_sq", DataType::Float64, false),
        Field::new("right_frobenius_sq", DataType::Float64, false),
        Field::new("stored_words", DataType::Float64, false),
        Field::new("error_bound", DataType::Float64, true),
    ]))
});

/// The tables a `sketch_product` stage writes.
pub fn tables() -> Vec<TableDecl> {
    vec![
        TableDecl {
            name: "product",
            schema: Arc::clone(&PRODUCT),
        },
        TableDecl {
            name: "stats",
            schema: Arc::clone(&STATS),
        },
    ]
}

/// Refuses sketches that were not made to be combined, naming both sides.
pub(super) fn check(
    left: (&StoredSketch, &Header, &str),
    right: (&StoredSketch, &Header, &str),
) -> Result<()> {
    let ((a, ha, na), (b, hb, nb)) = (left, right);
    let both = |what: &str, x: String, y: String| {
        Error::Input(format!(
            "the sketches were made with different {what}: left ({na}) {x}, right ({nb}) {y}; \
             only sketches with the same method, seed, hash and key type combine"
        ))
    };
    if a.method() != b.method() {
        return Err(both(
            "methods",
            a.method().as_str().into(),
            b.method().as_str().into(),
        ));
    }
    if a.seed() != b.seed() {
        return Err(both("seeds", a.seed().to_string(), b.seed().to_string()));
    }
    if ha.key_type != hb.key_type {
        return Err(both(
            "key types",
            ha.key_type.as_str().into(),
            hb.key_type.as_str().into(),
        ));
    }
    Ok(())
}

/// An estimate of `AᵀB` from two sketches, and what the `stats` table says about it.
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

/// Estimates `AᵀB` from two stored sketches, refusing ones that do not combine; `names`
/// describe the sides in errors.
pub fn estimate(
    left: (&StoredSketch, &Header),
    right: (&StoredSketch, &Header),
    names: (&str, &str),
) -> Result<Estimate> {
    let ((a, ha), (b, hb)) = (left, right);
    check((a, ha, names.0), (b, hb, names.1))?;
    let (d, m) = (a.dim(), b.dim());
    Ok(match (a, b) {
        (StoredSketch::Sample(sa), StoredSketch::Sample(sb)) => {
            let (w, joined) = sketch::estimate_product_sparse(sa, sb)?;
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

/// The `product` and `stats` tables of two stored sketches; `names` describe the sides in
/// errors.
pub fn product(
    left: (StoredSketch, Header),
    right: (StoredSketch, Header),
    names: (&str, &str),
) -> Result<Vec<OutputTable>> {
    let ((a, ha), (b, hb)) = (left, right);
    let e = estimate((&a, &ha), (&b, &hb), names)?;
    let (d, m) = (a.dim(), b.dim());
    // Written row by row; entries that summed to exactly zero are left out.
    let csr = &e.w;
    // Several numeric columns name themselves; one list column `c` names `c[0]`, `c[1]`, ….
    let name = |names: &[String], dim: usize, i: usize| match names {
        [one] if dim > 1 => format!("{one}[{i}]"),
        _ => names.get(i).cloned().unwrap_or_else(|| i.to_string()),
    };
    let (mut rows, mut cols, mut rn, mut cn, mut vals) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, row) in csr.outer_iterator().enumerate() {
        for (j, v) in row.iter().filter(|(_, v)| **v != 0.0) {
            rows.push(i as u32);
            cols.push(j as u32);
            rn.push(name(&ha.columns, d, i));
            cn.push(name(&hb.columns, m, j));
            vals.push(*v);
        }
    }
    let product = RecordBatch::try_new(
        Arc::clone(&PRODUCT),
        vec![
            Arc::new(UInt32Array::from(rows)),
            Arc::new(UInt32Array::from(cols)),
            Arc::new(StringArray::from(rn)),
            Arc::new(StringArray::from(cn)),
            Arc::new(Float64Array::from(vals)),
        ],
    )?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![e.method.as_str()])),
        Arc::new(UInt64Array::from(vec![e.seed])),
        Arc::new(UInt64Array::from(vec![e.left_size])),
        Arc::new(UInt64Array::from(vec![e.right_size])),
        Arc::new(UInt64Array::from(vec![e.joined])),
        Arc::new(Float64Array::from(vec![e.left_frobenius_sq])),
        Arc::new(Float64Array::from(vec![e.right_frobenius_sq])),
        Arc::new(Float64Array::from(vec![e.stored_words])),
        Arc::new(Float64Array::from(vec![e.error_bound])),
    ];
    let stats = RecordBatch::try_new(Arc::clone(&STATS), columns)?;
    Ok(vec![
        OutputTable::new("product", product),
        OutputTable::new("stats", stats),
    ])
}
