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

/// The stopping signals as a future the scan loop can select on. A signal that arrives
/// between scans is remembered (`Notify` keeps one permit) and stops the next scan.
pub(super) struct Interrupt {
    notify: Arc<Notify>,
    received: Arc<signals::Received>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Interrupt {
    pub(super) fn new(enabled: bool) -> Self {
        let notify = Arc::new(Notify::new());
        let received = Arc::new(signals::Received::new());
        let listener = enabled.then(|| {
            let (notify, received) = (Arc::clone(&notify), Arc::clone(&received));
            tokio::spawn(async move {
                received.set(signals::first().await);
                notify.notify_one();
            })
        });
        Interrupt {
            notify,
            received,
            listener,
        }
    }

    /// The signal, once one has come.
    pub(super) async fn wait(&self) -> Signal {
        self.notify.notified().await;
        // Keep the permit for the next waiter (a later scan stops too).
        self.notify.notify_one();
        self.received.get().unwrap_or(Signal::Interrupt)
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        if let Some(l) = &self.listener {
            l.abort();
        }
    }
}
