//! Long calls run on one tokio runtime with the GIL released; every 50 ms the caller's thread
//! takes the GIL back for a moment to let Python run its signal handlers, so Ctrl-C raises the
//! user's `KeyboardInterrupt` — after a run has cleaned up as it does on the CLI's Ctrl-C.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use sketchpipe::pipeline::Stop;
use sketchpipe::signals::Signal;

use crate::errors::to_py;

fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sketchpipe")
        .build()
        .map_err(|e| to_py(sketchpipe::Error::io("cannot start the async runtime", e)))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// How a call stops on Ctrl-C.
pub enum OnInterrupt<'a> {
    /// Ask the work to stop and wait for it (a run: its temporary files go, its lock is
    /// released, the previous outputs stay).
    Ask(&'a Arc<Stop>),
    /// Drop the work at once (queries, which write nothing).
    Drop,
}

/// Runs `work` with the GIL released; Ctrl-C raises `KeyboardInterrupt` (see the module docs).
pub fn block_on<T: Send>(
    py: Python<'_>,
    on_interrupt: OnInterrupt<'_>,
    work: impl Future<Output = sketchpipe::Result<T>> + Send,
) -> PyResult<T> {
    let rt = runtime()?;
    let (result, interrupt) = py.detach(|| {
        rt.block_on(async {
            let mut work = std::pin::pin!(work);
            let mut interrupt: Option<PyErr> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    r = &mut work => return (Some(r), interrupt),
                    _ = tick.tick(), if interrupt.is_none() => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            interrupt = Some(e);
                            match on_interrupt {
                                OnInterrupt::Ask(stop) => stop.request(Signal::Interrupt),
                                OnInterrupt::Drop => return (None, interrupt),
                            }
                        }
                    }
                }
            }
        })
    });
    match (interrupt, result) {
        // The user's own exception (KeyboardInterrupt, or whatever their handler raised).
        (Some(e), _) => Err(e),
        (None, Some(r)) => r.map_err(to_py),
        (None, None) => unreachable!("work ends with a result or an interrupt"),
    }
}

/// Runs `work` (CPU-bound, synchronous) with the GIL released.
pub fn detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> sketchpipe::Result<T> + Send,
) -> PyResult<T> {
    py.detach(work).map_err(to_py)
}
