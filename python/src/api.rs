//! The module-level functions: `run`, `sql`, the scores and the key hash.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use pyo3::prelude::*;

use sketchpipe::pipeline::{PipelineSpec, RunOptions, Stop};
use sketchpipe::progress::ProgressMode;
use sketchpipe::Error;

use crate::arrow::{column, values_address, ArrowArray, ArrowStream};
use crate::errors::check;
use crate::runtime::{block_on, detached, OnInterrupt};

/// A stage of a finished run: its name, its committed directory and its tables.
type Written = (String, PathBuf, Vec<String>);

/// `sketchpipe run`: see `sketchpipe.run` (the Python wrapper reads the written tables).
#[pyfunction]
#[pyo3(signature = (pipeline, output_dir=None, run_date=None, overrides=Vec::new(), quiet=false))]
pub fn run(
    py: Python<'_>,
    pipeline: PathBuf,
    output_dir: Option<PathBuf>,
    run_date: Option<String>,
    overrides: Vec<String>,
    quiet: bool,
) -> PyResult<Vec<Written>> {
    let run_date = run_date
        .map(|d| {
            chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").map_err(|_| {
                Error::Config(format!(
                    "run_date: `{d}` is not a date (expected YYYY-MM-DD)"
                ))
            })
        })
        .transpose();
    let run_date = check(run_date)?;
    let spec = check(PipelineSpec::load(&pipeline, &overrides))?;
    let stop = Arc::new(Stop::new());
    let opts = RunOptions {
        output_dir,
        run_date,
        progress: if quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto
        },
        handle_ctrl_c: false,
        cluster: None,
        stop: Some(Arc::clone(&stop)),
    };
    let summary = block_on(
        py,
        OnInterrupt::Ask(&stop),
        sketchpipe::pipeline::run(&spec, &opts),
    )?;
    Ok(summary
        .stages
        .into_iter()
        .map(|s| (s.name, s.dir, s.tables))
        .collect())
}

/// `sketchpipe sql`: the result of `query` over the outputs in `dir` (or quoted file paths).
#[pyfunction]
#[pyo3(signature = (query, dir=None))]
pub fn sql(py: Python<'_>, query: String, dir: Option<PathBuf>) -> PyResult<ArrowStream> {
    let (schema, batches) = block_on(
        py,
        OnInterrupt::Drop,
        sketchpipe::query::query_batches(dir.as_deref(), &query),
    )?;
    Ok(ArrowStream::new(schema, batches))
}

/// The output directory a pipeline file names (`sql(pipeline=…)`).
#[pyfunction]
pub fn pipeline_output_dir(pipeline: PathBuf) -> PyResult<PathBuf> {
    Ok(check(PipelineSpec::load(&pipeline, &[]))?.output_dir)
}

/// One of the SQL score functions over whole arrays (`el2n`, `grand`, `el2n_probs`,
/// `grand_probs`), split over the machine's cores with the GIL released.
#[pyfunction]
pub fn score(py: Python<'_>, name: String, args: Vec<Bound<'_, PyAny>>) -> PyResult<ArrowArray> {
    let what = ["logits", "labels", "embedding"];
    let arrays: Vec<ArrayRef> = args
        .iter()
        .zip(what)
        .map(|(a, w)| column(a, w))
        .collect::<PyResult<_>>()?;
    let out = detached(py, || parallel_scores(&name, &arrays))?;
    Ok(ArrowArray(out))
}

/// The rows in one piece per core; on an error, the whole input once more, so the message
/// names the row as the SQL function does.
fn parallel_scores(name: &str, arrays: &[ArrayRef]) -> sketchpipe::Result<ArrayRef> {
    let n = arrays.first().map_or(0, |a| a.len());
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    // Below a few batches, one thread is faster than starting more.
    let pieces = threads.min(n / 65_536).max(1);
    if pieces == 1 || arrays.iter().any(|a| a.len() != n) {
        return sketchpipe::udf::scores::evaluate(name, arrays);
    }
    let step = n.div_ceil(pieces);
    let parts: Vec<sketchpipe::Result<ArrayRef>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..pieces)
            .map(|p| {
                let (start, len) = (p * step, step.min(n - p * step));
                let slices: Vec<ArrayRef> = arrays.iter().map(|a| a.slice(start, len)).collect();
                s.spawn(move || sketchpipe::udf::scores::evaluate(name, &slices))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a score thread panicked"))
            .collect()
    });
    match parts.into_iter().collect::<sketchpipe::Result<Vec<_>>>() {
        Ok(parts) => {
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            Ok(arrow::compute::concat(&refs)?)
        }
        Err(_) => sketchpipe::udf::scores::evaluate(name, arrays),
    }
}

/// `uniform_hash(key, seed)` of every key.
#[pyfunction]
pub fn uniform_hash(py: Python<'_>, keys: Bound<'_, PyAny>, seed: u64) -> PyResult<ArrowArray> {
    let keys = column(&keys, "keys")?;
    let out = detached(py, || sketchpipe::udf::uniform_hashes(keys.as_ref(), seed))?;
    Ok(ArrowArray(Arc::new(out)))
}

/// Where the values of an Arrow array's buffer are, as this side sees them (for the tests
/// that check inputs arrive without a copy).
#[pyfunction]
pub fn buffer_address(array: Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    Ok(values_address(&column(&array, "array")?))
}

/// The `sketchpipe` command line, in this process (`python -m sketchpipe`, the package's
/// `sketchpipe` script): `args` with the program's name first; returns the exit code. It
/// handles SIGINT, SIGTERM and SIGHUP as the binary does, for the rest of the process.
#[pyfunction]
pub fn cli(py: Python<'_>, args: Vec<String>) -> u8 {
    py.detach(|| sketchpipe::cli::main(args.into_iter().map(std::ffi::OsString::from)))
}
