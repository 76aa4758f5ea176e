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

/// The product of two stored sketches; `names` describe the sides in errors.
pub fn product(
    left: (StoredSketch, Header),
    right: (StoredSketch, Header),
    names: (&str, &str),
) -> Result<Vec<OutputTable>> {
    let ((a, ha), (b, hb)) = (left, right);
    check((&a, &ha, names.0), (&b, &hb, names.1))?;
    let (d, m) = (a.dim(), b.dim());
    let (w, stats) = match (&a, &b) {
        (StoredSketch::Sample(sa), StoredSketch::Sample(sb)) => {
            let (w, joined) = sketch::estimate_product_sparse(sa, sb)?;
            let bound = match sa.method {
                Method::Priority => {
                    let k = sa.size.min(sb.size) as f64;
                    (k > 1.0).then(|| (2.0 / (k - 1.0) * sa.frobenius_sq * sb.frobenius_sq).sqrt())
                }
                Method::Exact => Some(0.0),
                _ => None,
            };
            let stats = (
                sa.method,
                sa.seed,
                sa.rows.len() as u64,
                sb.rows.len() as u64,
                joined,
                sa.frobenius_sq,
                sb.frobenius_sq,
                sa.stored_words() + sb.stored_words(),
                bound,
            );
            (w, stats)
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
            let w = tri.to_csr();
            let stats = (
                la.method,
                la.seed,
                la.t as u64,
                lb.t as u64,
                0,
                la.frobenius_sq,
                lb.frobenius_sq,
                la.stored_words() + lb.stored_words(),
                None,
            );
            (w, stats)
        }
        _ => unreachable!("same method checked"),
    };
    // Written row by row; entries that summed to exactly zero are left out.
    let csr: sprs::CsMat<f64> = w;
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
    let (method, seed, lk, rk, joined, lf, rf, words, bound) = stats;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![method.as_str()])),
        Arc::new(UInt64Array::from(vec![seed])),
        Arc::new(UInt64Array::from(vec![lk])),
        Arc::new(UInt64Array::from(vec![rk])),
        Arc::new(UInt64Array::from(vec![joined])),
        Arc::new(Float64Array::from(vec![lf])),
        Arc::new(Float64Array::from(vec![rf])),
        Arc::new(Float64Array::from(vec![words])),
        Arc::new(Float64Array::from(vec![bound])),
    ];
    let stats = RecordBatch::try_new(Arc::clone(&STATS), columns)?;
    Ok(vec![
        OutputTable::new("product", product),
        OutputTable::new("stats", stats),
    ])
}
