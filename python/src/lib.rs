//! The native half of the `sketchpipe` Python package (`sketchpipe._native`): thin PyO3
//! bindings over the `sketchpipe` library — the same operators, SQL functions and pipeline
//! runner as the CLI, no second implementation. The Pythonic API (keyword arguments, numpy
//! inputs, pyarrow results, docstrings) is in `python/sketchpipe/__init__.py`.

mod api;
mod arrow;
mod errors;
mod ffi;
mod runtime;
mod sketch;
mod stage;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<arrow::ArrowStream>()?;
    m.add_class::<arrow::ArrowArray>()?;
    m.add_class::<stage::Stage>()?;
    m.add_class::<sketch::Sketch>()?;
    m.add_class::<ffi::ScalarFunction>()?;
    m.add_class::<ffi::AggregateFunction>()?;
    m.add_function(wrap_pyfunction!(api::run, m)?)?;
    m.add_function(wrap_pyfunction!(api::sql, m)?)?;
    m.add_function(wrap_pyfunction!(api::pipeline_output_dir, m)?)?;
    m.add_function(wrap_pyfunction!(api::score, m)?)?;
    m.add_function(wrap_pyfunction!(api::uniform_hash, m)?)?;
    m.add_function(wrap_pyfunction!(api::buffer_address, m)?)?;
    m.add_function(wrap_pyfunction!(api::cli, m)?)?;
    m.add_function(wrap_pyfunction!(ffi::functions, m)?)?;
    m.add_function(wrap_pyfunction!(ffi::ffi_version, m)?)?;
    m.add("__version__", sketchpipe::VERSION)?;
    Ok(())
}
