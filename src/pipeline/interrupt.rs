//! The stopping signals (Ctrl-C, SIGTERM, SIGHUP: [`crate::signals`]) as something a run can
//! wait on: the scan loops select on it, and any other long step of a run goes through
//! [`interruptible`]. The run then returns [`Error::Interrupted`], and unwinding removes its
//! temporary and spill files and releases the output lock.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::signals::{self, Signal};
use crate::{Error, Result};

/// Runs `work` unless a stopping signal comes first.
pub(super) async fn interruptible<T>(
    interrupt: &Interrupt,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = work => r,
        s = interrupt.wait() => Err(Error::Interrupted(s)),
    }
}

/// A way to stop a run from outside it, as a stopping signal would (a library caller's own
/// Ctrl-C handling, e.g. the Python package's `KeyboardInterrupt`): pass it in
/// [`super::RunOptions::stop`] and call [`Stop::request`]. The run ends at its next scan batch
/// or long step with [`Error::Interrupted`], its temporary files removed and the previous
/// outputs untouched. A request made before the run starts stops it at its first scan.
#[derive(Debug, Default)]
pub struct Stop {
    notify: Notify,
    received: signals::Received,
}

impl Stop {
    pub fn new() -> Self {
        Stop::default()
    }

    /// Stops the run as `signal` would.
    pub fn request(&self, signal: Signal) {
        self.received.set(signal);
        self.notify.notify_one();
    }
}

/// The stopping signals as a future the scan loop can select on. A signal that arrives
/// between scans is remembered (`Notify` keeps one permit) and stops the next scan.
pub(super) struct Interrupt {
    stop: Arc<Stop>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Interrupt {
    /// Listens for the process's stopping signals when `signals`, and for requests on `stop`.
    pub(super) fn new(signals: bool, stop: Option<Arc<Stop>>) -> Self {
        let stop = stop.unwrap_or_default();
        let listener = signals.then(|| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move { stop.request(signals::first().await) })
        });
        Interrupt { stop, listener }
    }

    /// The signal, once one has come.
    pub(super) async fn wait(&self) -> Signal {
        self.stop.notify.notified().await;
        // Keep the permit for the next waiter (a later scan stops too).
        self.stop.notify.notify_one();
        self.stop.received.get().unwrap_or(Signal::Interrupt)
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        if let Some(l) = &self.listener {
            l.abort();
        }
    }
}
