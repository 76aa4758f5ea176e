//! Ctrl-C as something a run can wait on: the scan loops select on it, and any other long
//! step of a run goes through [`interruptible`].

use std::sync::Arc;

use tokio::sync::Notify;

use crate::{Error, Result};

/// Runs `work` unless Ctrl-C comes first.
pub(super) async fn interruptible<T>(
    interrupt: &Interrupt,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = work => r,
        _ = interrupt.wait() => Err(Error::Interrupted),
    }
}

/// Ctrl-C as a future the scan loop can select on. A signal that arrives between scans is
/// remembered (`Notify` keeps one permit) and stops the next scan.
pub(super) struct Interrupt {
    notify: Arc<Notify>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Interrupt {
    pub(super) fn new(enabled: bool) -> Self {
        let notify = Arc::new(Notify::new());
        let listener = enabled.then(|| {
            let notify = Arc::clone(&notify);
            tokio::spawn(async move {
                // If signals cannot be installed, never fire (rather than cancel at once).
                if tokio::signal::ctrl_c().await.is_ok() {
                    notify.notify_one();
                }
            })
        });
        Interrupt { notify, listener }
    }

    pub(super) async fn wait(&self) {
        self.notify.notified().await
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        if let Some(l) = &self.listener {
            l.abort();
        }
    }
}
