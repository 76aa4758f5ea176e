//! sketchpipe's SQL functions for the `datafusion` Python package, through DataFusion's FFI:
//! each function is an object with `__datafusion_scalar_udf__` / `__datafusion_aggregate_udf__`
//! returning a PyCapsule of its `FFI_ScalarUDF` / `FFI_AggregateUDF`, which
//! `datafusion.ScalarUDF.from_pycapsule` / `datafusion.AggregateUDF.from_pycapsule` turn into
//! functions of that package's SessionContext. Both sides must be built from the same
//! DataFusion major version: `sketchpipe.register` checks it before handing anything over.

use std::ffi::CStr;
use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion_ffi::udaf::FFI_AggregateUDF;
use datafusion_ffi::udf::FFI_ScalarUDF;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

const SCALAR: &CStr = c"datafusion_scalar_udf";
const AGGREGATE: &CStr = c"datafusion_aggregate_udf";

/// One scalar function, exported.
#[pyclass(module = "sketchpipe._native", name = "ForeignScalarFunction", frozen)]
pub struct ScalarFunction(Arc<ScalarUDF>);

#[pymethods]
impl ScalarFunction {
    #[getter]
    fn name(&self) -> String {
        self.0.name().to_string()
    }

    fn __datafusion_scalar_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        PyCapsule::new_with_value(py, FFI_ScalarUDF::from(Arc::clone(&self.0)), SCALAR)
    }
}

/// One aggregate function, exported.
#[pyclass(
    module = "sketchpipe._native",
    name = "ForeignAggregateFunction",
    frozen
)]
pub struct AggregateFunction(Arc<AggregateUDF>);

#[pymethods]
impl AggregateFunction {
    #[getter]
    fn name(&self) -> String {
        self.0.name().to_string()
    }

    fn __datafusion_aggregate_udf__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        PyCapsule::new_with_value(py, FFI_AggregateUDF::from(Arc::clone(&self.0)), AGGREGATE)
    }
}

/// Every sketchpipe SQL function, exported: scalars, then aggregates.
#[pyfunction]
pub fn functions() -> (Vec<ScalarFunction>, Vec<AggregateFunction>) {
    let scalar = sketchpipe::udf::scalar_functions()
        .into_iter()
        .map(|f| ScalarFunction(Arc::new(f)))
        .collect();
    let aggregate = sketchpipe::udf::aggregate_functions()
        .into_iter()
        .map(|f| AggregateFunction(Arc::new(f)))
        .collect();
    (scalar, aggregate)
}

/// The DataFusion major version this build's FFI speaks.
#[pyfunction]
pub fn ffi_version() -> u64 {
    datafusion_ffi::version()
}
