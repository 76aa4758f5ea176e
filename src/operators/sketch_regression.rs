//! `op = "sketch_regression"`: least squares over a join, without the join — the
//! dataset-augmentation use of Daliri, Freire, Li, Musco (arXiv:2501.17836; §2 of
//! `docs/algorithms.md`). Table `T1(key, x_1 … x_d)` is sketched on one side (`left`), `T2(key, y)`
//! on the other (`right`, with `target` among its columns); from the coordinated pair,
//!
//! ```text
//! G = Σ_{i kept by both} x_i x_iᵀ / min(1, p_i^L, p_i^R)   ≈ XᵀX over the shared keys
//! c = Σ_{i kept by both} x_i y_i  / min(1, p_i^L, p_i^R)   ≈ Xᵀy over the shared keys
//! β = (G + λ I)⁻¹ c                                         (ridge with `lambda`)
//! ```
//!
//! Both estimates are unbiased; `β` is consistent as the sketches grow. Only sampling sketches
//! (`priority`, `threshold`, `exact`) qualify: a linear sketch of `T1` cannot tell which of its
//! rows the other table has.
//!
//! Output: `coefficients` — `feature Utf8`, `index UInt32`, `coefficient Float64`; `stats` —
//! `method`, `seed`, `target`, `lambda`, `joined` (keys kept by both sketches),
//! `estimated_join_rows` (`Σ 1/p` over them: an unbiased estimate of the join's size).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use faer::prelude::Solve;
use faer::Mat;

use super::op::{sketch_pair, Execution, FromSketches, Functions, InputForm, Op, OpKind};
use super::{OutputTable, TableDecl};
use crate::keys::Keys;
use crate::sketch::stored::{self, Header, Named, StoredSketch};
use crate::sketch::{estimate_join_gram, for_each_joined};
use crate::{Error, Result};

/// The registry's entry.
pub const KIND: OpKind = OpKind {
    name: "sketch_regression",
    parse: |keys| Ok(Box::new(parse(keys)?)),
    functions: Functions::default,
};

/// Reads a `sketch_regression` stage's keys.
pub fn parse(keys: &mut Keys<'_>) -> Result<RegressionParams> {
    let target = keys.string("target")?;
    let lambda = keys.float("lambda")?.unwrap_or(0.0);
    if !(lambda >= 0.0 && lambda.is_finite()) {
        return Err(keys.error("lambda", format!("must be ≥ 0, got {lambda}")));
    }
    Ok(RegressionParams { target, lambda })
}

impl Op for RegressionParams {
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

impl FromSketches for RegressionParams {
    fn compute(&self, sketches: Vec<(StoredSketch, Header, String)>) -> Result<Vec<OutputTable>> {
        let [(a, ha, na), (b, hb, nb)] = sketch_pair(sketches);
        regress(self, (&a, &ha, &na), (&b, &hb, &nb))
    }
}

/// Parameters of a `sketch_regression` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionParams {
    /// The right sketch's column to predict (default: its only column).
    pub target: Option<String>,
    /// Ridge penalty `λ ≥ 0`.
    pub lambda: f64,
}

static COEFFICIENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("index", DataType::UInt32, false),
        Field::new("coefficient", DataType::Float64, false),
    ]))
});

static STATS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("method", DataType::Utf8, false),
        Field::new("seed", DataType::UInt64, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("lambda", DataType::Float64, false),
        Field::new("joined", DataType::UInt64, false),
        Field::new("estimated_join_rows", DataType::Float64, false),
    ]))
});

/// The tables a `sketch_regression` stage writes.
pub fn tables() -> Vec<TableDecl> {
    vec![
        TableDecl {
            name: "coefficients",
            schema: Arc::clone(&COEFFICIENTS),
        },
        TableDecl {
            name: "stats",
            schema: Arc::clone(&STATS),
        },
    ]
}

/// Fits the regression of two stored sketches, each named for messages.
pub fn regress(
    p: &RegressionParams,
    left: Named<'_>,
    right: Named<'_>,
) -> Result<Vec<OutputTable>> {
    stored::check_compatible(left, right)?;
    let names = (left.2, right.2);
    let (a, b) = (left.0.sample(names.0)?, right.0.sample(names.1)?);
    let target = match (&p.target, right.1.columns.as_slice()) {
        (Some(t), cols) => cols.iter().position(|c| c == t).ok_or_else(|| {
            Error::Config(format!(
                "key `target`: {} has no column `{t}` (it has: {})",
                names.1,
                cols.join(", ")
            ))
        })?,
        (None, [_]) if b.dim == 1 => 0,
        (None, cols) => {
            return Err(Error::Config(format!(
                "key `target`: {} has several columns ({}); name the one to predict",
                names.1,
                cols.join(", ")
            )))
        }
    };
    let d = a.dim;
    let g = estimate_join_gram(a, b)?;
    let mut c = vec![0.0; d];
    let mut join_rows = 0.0;
    let joined = for_each_joined(a, b, |ra, rb, scale| {
        join_rows += scale;
        let y = rb
            .indices
            .iter()
            .position(|&j| j as usize == target)
            .map_or(0.0, |k| rb.values[k]);
        for (&i, &v) in ra.indices.iter().zip(&ra.values) {
            c[i as usize] += scale * v * y;
        }
    })?;
    if joined == 0 {
        return Err(Error::Input(format!(
            "no key is kept by both {} and {}: the tables share no keys, or the sketches are too \
             small to catch the shared ones",
            names.0, names.1
        )));
    }
    let gm = Mat::<f64>::from_fn(d, d, |i, j| {
        g[i * d + j] + if i == j { p.lambda } else { 0.0 }
    });
    let mut rhs = Mat::<f64>::from_fn(d, 1, |i, _| c[i]);
    gm.partial_piv_lu().solve_in_place(&mut rhs);
    let beta: Vec<f64> = (0..d).map(|i| rhs[(i, 0)]).collect();
    if beta.iter().any(|v| !v.is_finite()) {
        return Err(Error::Numeric(format!(
            "the estimated XᵀX over the join is singular ({joined} joined rows for {d} features): \
             set lambda > 0, or sketch with a larger size"
        )));
    }
    let name = |i: usize| match left.1.columns.as_slice() {
        [one] if d > 1 => format!("{one}[{i}]"),
        cols => cols.get(i).cloned().unwrap_or_else(|| i.to_string()),
    };
    let coefficients = RecordBatch::try_new(
        Arc::clone(&COEFFICIENTS),
        vec![
            Arc::new(StringArray::from_iter_values((0..d).map(name))),
            Arc::new(UInt32Array::from_iter_values(0..d as u32)),
            Arc::new(Float64Array::from(beta)),
        ],
    )?;
    let target_name = right.1.columns.get(target).cloned().unwrap_or_default();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![a.method.as_str()])),
        Arc::new(UInt64Array::from(vec![a.seed])),
        Arc::new(StringArray::from(vec![target_name])),
        Arc::new(Float64Array::from(vec![p.lambda])),
        Arc::new(UInt64Array::from(vec![joined])),
        Arc::new(Float64Array::from(vec![join_rows])),
    ];
    Ok(vec![
        OutputTable::new("coefficients", coefficients),
        OutputTable::new("stats", RecordBatch::try_new(Arc::clone(&STATS), columns)?),
    ])
}
