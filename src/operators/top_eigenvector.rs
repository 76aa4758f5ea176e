//! `op = "top_eigenvector"`: the top eigenvector of `AᵀA` for the rows of one input.
//!
//! Output tables (the contract of PRODUCT.md):
//! * `vector` — `component UInt32`, `value Float64`: the unit-norm eigenvector;
//! * `stats` — one row: algorithm, rows, dim, eigenvalue (estimate of `σ_1²`), heavy_rows,
//!   state_bytes, seed, plus second_eigenvalue, frobenius_sq, error_bound (a guaranteed bound
//!   on `‖AᵀA − BᵀB‖₂` for sketches, 0 for `exact`), skipped_rows and passes.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{Operator, OutputTable, TableDecl};
use crate::eigen::{FrequentDirections, Gram, TopEigen};
use crate::rows::{DenseRowReader, OnInvalid};
use crate::{Error, Result};

/// Which top-eigenvector algorithm a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Kacham–Woodruff heavy rows + block power method (arXiv:2412.11963). Not yet built.
    RandomOrder,
    /// Price–Xun fixed-η Oja (arXiv:2408.10332). Not yet built.
    Oja,
    /// Gram matrix + symmetric eigensolver: the exact baseline.
    Exact,
    /// Frequent Directions (arXiv:1501.01711): deterministic, any order, mergeable.
    FrequentDirections,
}

impl Algorithm {
    /// Every spelling the pipeline file accepts.
    pub const NAMES: [&'static str; 4] = ["random-order", "oja", "exact", "frequent-directions"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "random-order" => Some(Algorithm::RandomOrder),
            "oja" => Some(Algorithm::Oja),
            "exact" => Some(Algorithm::Exact),
            "frequent-directions" => Some(Algorithm::FrequentDirections),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::RandomOrder => "random-order",
            Algorithm::Oja => "oja",
            Algorithm::Exact => "exact",
            Algorithm::FrequentDirections => "frequent-directions",
        }
    }

    /// Whether this build implements the algorithm.
    pub fn is_available(&self) -> bool {
        matches!(self, Algorithm::Exact | Algorithm::FrequentDirections)
    }
}

/// Validated parameters of a `top_eigenvector` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct TopEigenvectorParams {
    /// One list column, or several numeric columns.
    pub columns: Vec<String>,
    pub algorithm: Algorithm,
    pub seed: u64,
    /// Out-of-core shuffle before the pass (ignored by `exact` and `frequent-directions`,
    /// whose answers do not depend on the order).
    pub shuffle: bool,
    pub on_invalid: OnInvalid,
    /// Sketch size `ℓ` of `frequent-directions`.
    pub ell: usize,
}

/// Default `ℓ` for `frequent-directions`.
pub const DEFAULT_ELL: usize = 32;

/// The core an operator runs, created when the first valid row tells the dimension.
enum Core {
    Exact(Gram),
    FrequentDirections(FrequentDirections),
}

impl Core {
    fn new(params: &TopEigenvectorParams, d: usize) -> Result<Self> {
        Ok(match params.algorithm {
            Algorithm::FrequentDirections => {
                Core::FrequentDirections(FrequentDirections::new(d, params.ell)?)
            }
            _ => Core::Exact(Gram::new(d)?),
        })
    }

    fn update(&mut self, rows: &[f64]) -> Result<()> {
        match self {
            Core::Exact(g) => g.update(rows),
            Core::FrequentDirections(fd) => fd.update(rows)?,
        }
        Ok(())
    }

    /// The answer and the bound on `‖AᵀA − BᵀB‖₂` (zero for the exact core).
    fn finish(&self) -> Result<(TopEigen, f64)> {
        Ok(match self {
            Core::Exact(g) => (g.finish()?, 0.0),
            Core::FrequentDirections(fd) => (fd.finish()?, fd.error_bound()),
        })
    }
}

/// The operator: rows adapter + exact Gram core.
pub struct TopEigenvectorOp {
    params: TopEigenvectorParams,
    reader: DenseRowReader,
    core: Option<Core>,
}

static VECTOR_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("component", DataType::UInt32, false),
        Field::new("value", DataType::Float64, false),
    ]))
});

static STATS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("algorithm", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("dim", DataType::UInt32, false),
        Field::new("eigenvalue", DataType::Float64, false),
        Field::new("second_eigenvalue", DataType::Float64, true),
        Field::new("frobenius_sq", DataType::Float64, false),
        Field::new("error_bound", DataType::Float64, false),
        Field::new("heavy_rows", DataType::UInt64, false),
        Field::new("state_bytes", DataType::UInt64, false),
        Field::new("skipped_rows", DataType::UInt64, false),
        Field::new("passes", DataType::UInt32, false),
        Field::new("seed", DataType::UInt64, false),
    ]))
});

impl TopEigenvectorOp {
    /// The tables this operator writes.
    pub fn tables() -> Vec<TableDecl> {
        vec![
            TableDecl {
                name: "vector",
                schema: VECTOR_SCHEMA.clone(),
            },
            TableDecl {
                name: "stats",
                schema: STATS_SCHEMA.clone(),
            },
        ]
    }

    /// Checks the input schema against the parameters; no data is read.
    pub fn new(params: TopEigenvectorParams, input: &Schema) -> Result<Self> {
        if !params.algorithm.is_available() {
            return Err(Error::Config(format!(
                "algorithm `{}` is not available in sketchpipe {} yet; use \"exact\" or \"frequent-directions\"",
                params.algorithm.as_str(),
                crate::VERSION
            )));
        }
        let reader = DenseRowReader::new(input, &params.columns, params.on_invalid)?;
        Ok(TopEigenvectorOp {
            params,
            reader,
            core: None,
        })
    }

    fn tables_from(&self, top: &TopEigen, error_bound: f64) -> Result<Vec<OutputTable>> {
        let d = top.vector.len();
        let vector = RecordBatch::try_new(
            VECTOR_SCHEMA.clone(),
            vec![
                Arc::new(UInt32Array::from_iter_values(0..d as u32)) as ArrayRef,
                Arc::new(Float64Array::from(top.vector.clone())),
            ],
        )?;
        let stats = RecordBatch::try_new(
            STATS_SCHEMA.clone(),
            vec![
                Arc::new(StringArray::from(vec![self.params.algorithm.as_str()])) as ArrayRef,
                Arc::new(UInt64Array::from(vec![top.rows])),
                Arc::new(UInt32Array::from(vec![d as u32])),
                Arc::new(Float64Array::from(vec![top.eigenvalue])),
                Arc::new(Float64Array::from(vec![top.second_eigenvalue])),
                Arc::new(Float64Array::from(vec![top.frobenius_sq])),
                Arc::new(Float64Array::from(vec![error_bound])),
                Arc::new(UInt64Array::from(vec![top.heavy_rows])),
                Arc::new(UInt64Array::from(vec![top.state_bytes])),
                Arc::new(UInt64Array::from(vec![self.reader.skipped()])),
                Arc::new(UInt32Array::from(vec![1u32])),
                Arc::new(UInt64Array::from(vec![self.params.seed])),
            ],
        )?;
        Ok(vec![
            OutputTable {
                name: "vector",
                batch: vector,
            },
            OutputTable {
                name: "stats",
                batch: stats,
            },
        ])
    }
}

impl Operator for TopEigenvectorOp {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = self.reader.read(batch)?;
        if rows.rows == 0 {
            return Ok(());
        }
        let core = match &mut self.core {
            Some(core) => core,
            None => self.core.insert(Core::new(&self.params, rows.dim)?),
        };
        core.update(rows.values)
    }

    fn rows_read(&self) -> u64 {
        self.reader.rows_seen()
    }

    fn finish(self: Box<Self>) -> Result<Vec<OutputTable>> {
        let Some(core) = &self.core else {
            return Err(Error::Input(match self.reader.rows_seen() {
                0 => "the input has no rows".to_string(),
                n => format!("all {n} input rows were invalid and skipped; nothing to compute"),
            }));
        };
        let (top, error_bound) = core.finish()?;
        self.tables_from(&top, error_bound)
    }
}
