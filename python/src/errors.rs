//! sketchpipe's errors as Python exceptions: one class per kind of the CLI's exit codes, all
//! under `SketchpipeError`, with the CLI's messages. An interrupted call raises the
//! `KeyboardInterrupt` the user's Ctrl-C made.

use pyo3::exceptions::{PyException, PyKeyboardInterrupt};
use pyo3::prelude::*;

use sketchpipe::{Error, ExitKind};

pyo3::create_exception!(
    sketchpipe,
    SketchpipeError,
    PyException,
    "Every error sketchpipe raises."
);
pyo3::create_exception!(
    sketchpipe,
    ConfigError,
    SketchpipeError,
    "A pipeline file, a key or an argument is wrong (the CLI's exit code 2)."
);
pyo3::create_exception!(
    sketchpipe,
    InputError,
    SketchpipeError,
    "The data does not fit what was asked (types, nulls, NaN, ragged rows; exit code 3)."
);
pyo3::create_exception!(
    sketchpipe,
    SketchpipeIOError,
    SketchpipeError,
    "Reading or writing a file failed (exit code 4)."
);
pyo3::create_exception!(
    sketchpipe,
    BusyError,
    SketchpipeError,
    "Another run holds the output directory (exit code 5): retry later."
);
pyo3::create_exception!(
    sketchpipe,
    InternalError,
    SketchpipeError,
    "An engine failure sketchpipe could not attribute (exit code 1): please report it."
);

/// The Python exception of `e`.
pub fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e.exit_kind() {
        ExitKind::Config => ConfigError::new_err(message),
        ExitKind::Input => InputError::new_err(message),
        ExitKind::Io => SketchpipeIOError::new_err(message),
        ExitKind::Busy => BusyError::new_err(message),
        ExitKind::Interrupted | ExitKind::Terminated | ExitKind::HungUp => {
            PyKeyboardInterrupt::new_err(message)
        }
        ExitKind::Internal | ExitKind::Success => InternalError::new_err(message),
    }
}

/// `r` with its error as the Python exception.
pub fn check<T>(r: sketchpipe::Result<T>) -> PyResult<T> {
    r.map_err(to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SketchpipeError", py.get_type::<SketchpipeError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("SketchpipeIOError", py.get_type::<SketchpipeIOError>())?;
    m.add("BusyError", py.get_type::<BusyError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    Ok(())
}
