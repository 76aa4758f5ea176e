//! A finished coordinated sketch held in Python: its value as bytes (the SQL aggregates' value
//! and the `sketch` table's format), merges, and the product and regression of two — the
//! `sketch_merge`, `sketch_product` and `sketch_regression` ops' own code.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use sketchpipe::operators::coordinated_sketch::{output_tables, table};
use sketchpipe::operators::{sketch_product, sketch_regression, OutputTable};
use sketchpipe::sketch::stored::{self, Header, StoredSketch};
use sketchpipe::{Error, Result};

use crate::arrow::{streams, ArrowStream};
use crate::errors::{check, to_py};
use crate::stage::{toml_table, Stage};

/// A stored sketch and its header.
#[pyclass(module = "sketchpipe._native", name = "Sketch")]
#[derive(Clone)]
pub struct Sketch {
    stored: StoredSketch,
    header: Header,
}

#[pymethods]
impl Sketch {
    /// The sketch a finished `coordinated_sketch` stage wrote.
    #[staticmethod]
    fn of_stage(py: Python<'_>, stage: &mut Stage) -> PyResult<Sketch> {
        let tables = stage.tables(py)?;
        let t = tables
            .iter()
            .find(|t| t.name == "sketch")
            .ok_or_else(|| to_py(Error::Config("this stage writes no sketch".into())))?;
        let (stored, header) = check(table::from_table(&t.metadata, &t.batch, "the sketch"))?;
        Ok(Sketch { stored, header })
    }

    /// The value `to_bytes` made (or a `coordinated_sketch` SQL aggregate's value).
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Sketch> {
        let (stored, header) = check(table::from_bytes(data, "the bytes given"))?;
        Ok(Sketch { stored, header })
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = crate::errors::check(table::to_bytes(&self.stored, &self.header))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// This sketch with `other` (of a disjoint set of rows) merged in, as if built in one pass.
    fn merge(&self, other: &Sketch) -> PyResult<Sketch> {
        let (stored, header) = check(
            stored::merge(vec![
                (
                    self.stored.clone(),
                    self.header.clone(),
                    "this sketch".into(),
                ),
                (
                    other.stored.clone(),
                    other.header.clone(),
                    "the other sketch".into(),
                ),
            ])
            .map_err(Error::from),
        )?;
        Ok(Sketch { stored, header })
    }

    /// The `sketch` and `stats` tables, as a `coordinated_sketch` stage writes them.
    fn tables(&self) -> PyResult<Vec<(String, ArrowStream)>> {
        Ok(streams(check(output_tables(&self.stored, &self.header))?))
    }

    /// `sketch_product` of this sketch (left) and `other` (right).
    fn product(&self, other: &Sketch) -> PyResult<Vec<(String, ArrowStream)>> {
        let tables = sketch_product::product(
            (&self.stored, &self.header, "this sketch"),
            (&other.stored, &other.header, "the other sketch"),
        );
        Ok(streams(check(tables)?))
    }

    /// `sketch_regression` of `other`'s target (right) on this sketch's columns (left);
    /// `keys` are the op's (`target`, `lambda`).
    fn regression(
        &self,
        other: &Sketch,
        keys: &Bound<'_, PyDict>,
    ) -> PyResult<Vec<(String, ArrowStream)>> {
        let table = toml_table(keys)?;
        let tables = regression(&table, self, other);
        Ok(streams(check(tables)?))
    }
}

fn regression(keys: &toml::Table, left: &Sketch, right: &Sketch) -> Result<Vec<OutputTable>> {
    let mut k = sketchpipe::keys::Keys::new(
        std::path::Path::new("CoordinatedSketch.regression"),
        "argument",
        keys,
    );
    let params = sketch_regression::parse(&mut k)?;
    k.finish()?;
    sketch_regression::regress(
        &params,
        (&left.stored, &left.header, "this sketch"),
        (&right.stored, &right.header, "the other sketch"),
    )
}
