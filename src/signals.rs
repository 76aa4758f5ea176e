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
    Listener::new().first().await
}

/// Handlers for the stopping signals, installed when it is made (so a signal from then on is
/// caught, even before [`Listener::first`] is awaited). Must be made inside a tokio runtime.
pub struct Listener {
    #[cfg(unix)]
    streams: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Listener {
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(int), Ok(term), Ok(hup)) => Some([int, term, hup]),
                _ => None,
            };
            Listener { streams }
        }
        #[cfg(not(unix))]
        Listener {}
    }

    /// The first stopping signal since the listener was made.
    pub async fn first(self) -> Signal {
        #[cfg(unix)]
        {
            let Some([mut int, mut term, mut hup]) = self.streams else {
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
}

impl Default for Listener {
    fn default() -> Self {
        Listener::new()
    }
}

/// Holds the stopping signals back on this thread (and the threads it starts later, such as
/// the runtime's workers) until [`release`]: a signal that comes before a command has put its
/// [`Listener`] in place then waits for it, instead of killing the process with the default
/// action (and a run's first moments, loading its pipeline, are covered as the rest of it).
pub fn hold() {
    #[cfg(unix)]
    mask(libc::SIG_BLOCK);
}

/// Lets the held signals through on this thread: one that came meanwhile is delivered now, to
/// a [`Listener`] if one was made, else with its default action.
pub fn release() {
    #[cfg(unix)]
    mask(libc::SIG_UNBLOCK);
}

#[cfg(unix)]
fn mask(how: libc::c_int) {
    // SAFETY: a sigset_t initialised by sigemptyset and filled by sigaddset, passed to
    // pthread_sigmask for the calling thread; the old mask is not asked for.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
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
