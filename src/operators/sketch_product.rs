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

use super::op::{sketch_pair, Execution, FromSketches, InputForm, Op, OpKind};
use super::{OutputTable, TableDecl};
use crate::sketch::stored::{self, Header, Named, StoredSketch};
use crate::Result;

/// The registry's entry (the op has no keys but its input's).
pub const KIND: OpKind = OpKind {
    name: "sketch_product",
    parse: |_| Ok(Box::new(SketchProduct)),
    functions: crate::udf::sketches::product_functions,
};

/// `op = "sketch_product"`.
#[derive(Debug, Clone, Copy)]
pub struct SketchProduct;

impl Op for SketchProduct {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn input_form(&self) -> InputForm {
        InputForm::SketchPair
    }

    fn table_names(&self) -> Vec<&'static str> {
        tables().iter().map(|t| t.name).collect()
    }

    fn tables(&self, _input: &Schema) -> Result<Vec<TableDecl>> {
        Ok(tables())
    }

    fn execution(&self) -> Execution<'_> {
        Execution::Sketches(self)
    }
}

impl FromSketches for SketchProduct {
    fn compute(&self, sketches: Vec<(StoredSketch, Header, String)>) -> Result<Vec<OutputTable>> {
        let [(a, ha, na), (b, hb, nb)] = sketch_pair(sketches);
        product((&a, &ha, &na), (&b, &hb, &nb))
    }
}

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

/// The `product` and `stats` tables of two stored sketches, each named for messages.
pub fn product(left: Named<'_>, right: Named<'_>) -> Result<Vec<OutputTable>> {
    let e = stored::estimate(left, right)?;
    let ((a, ha, _), (b, hb, _)) = (left, right);
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
