//! The signals a command stops cleanly on — its temporary and spill files removed, the
//! previous outputs untouched, the output lock released — and the exit code each gives:
//! SIGINT (Ctrl-C, 130), SIGTERM (what cron wrappers, systemd, Airflow, Kubernetes and CI send
//! on a timeout or a cancel, 143) and SIGHUP (a closed terminal or SSH session, 129): `128 + n`,
//! the shell's convention.

/// A stopping signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    Hangup,
}

impl Signal {
    /// Its name, as `kill -l` spells it with the `SIG` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }

    /// Its number on Linux and the BSDs.
    pub fn number(self) -> u8 {
        match self {
            Signal::Interrupt => 2,
            Signal::Terminate => 15,
            Signal::Hangup => 1,
        }
    }

    fn from_number(n: u8) -> Option<Self> {
        [Signal::Interrupt, Signal::Terminate, Signal::Hangup]
            .into_iter()
            .find(|s| s.number() == n)
    }
}

/// The first stopping signal to arrive. Listening replaces the signals' default action (dying
/// at once) for the rest of the process; if the handlers cannot be installed this never
/// returns, rather than cancelling at once.
pub async fn first() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => Signal::Interrupt,
            _ = term.recv() => Signal::Terminate,
            _ = hup.recv() => Signal::Hangup,
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Signal::Interrupt,
            Err(_) => std::future::pending().await,
        }
    }
}

/// A signal remembered for code that polls rather than awaits (the blocking generators).
#[derive(Debug, Default)]
pub struct Received(std::sync::atomic::AtomicU8);

impl Received {
    pub const fn new() -> Self {
        Received(std::sync::atomic::AtomicU8::new(0))
    }

    pub fn set(&self, s: Signal) {
        self.0
            .store(s.number(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<Signal> {
        Signal::from_number(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}
