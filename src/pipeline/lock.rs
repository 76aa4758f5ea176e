//! One run at a time per output directory.
//!
//! `sketchpipe run` takes an exclusive lock (`File::try_lock`: `flock(2)` on Unix) on `OUTPUT_DIR/.sketchpipe.lock` before it
//! writes anything, and writes who holds it (pid, host, start time, pipeline file) into the
//! file. A second run on the same output directory fails at once with [`Error::Busy`] naming
//! the holder. The kernel releases the lock when its process dies, however it dies, so a lock
//! left by a killed run is never "stuck": the next run takes it, sees the dead holder's line
//! still in the file, says it recovered a stale lock, and clears the temporary files the dead
//! run left under `OUTPUT_DIR/.sketchpipe-tmp/` (no one else can be writing there: we hold
//! the lock).
//!
//! The file is never deleted — unlinking a lock file while another process has it open lets
//! two processes lock two different files — only emptied on a clean release.
//!
//! `flock` is advisory and local: it protects against runs on the same machine (and on most
//! network file systems that implement it, e.g. NFSv4); two machines writing one directory on
//! a file system without lock support are not detected.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Name of the lock file inside an output directory.
pub const LOCK_FILE: &str = ".sketchpipe.lock";

/// A held lock; released (and the file emptied) on drop.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
    /// The holder line a previous, dead run left behind, if any.
    stale: Option<String>,
}

impl OutputLock {
    /// Locks `output_dir` (created if missing) for this process, or fails fast naming the
    /// holder. `what` describes this run in the holder line (e.g. the pipeline file).
    pub fn acquire(output_dir: &Path, what: &str) -> Result<Self> {
        std::fs::create_dir_all(output_dir).map_err(|e| {
            Error::io(
                format!("cannot create output directory {}", output_dir.display()),
                e,
            )
        })?;
        let path = output_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open lock file {}", path.display()), e))?;
        let mut previous = String::new();
        if !try_lock(&file).map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))? {
            let _ = file.read_to_string(&mut previous);
            let holder = previous.trim();
            return Err(Error::Busy(format!(
                "output directory {} is in use by another sketchpipe run ({}); wait for it to \
                 finish or use another --output-dir",
                output_dir.display(),
                if holder.is_empty() {
                    "holder not recorded yet".to_string()
                } else {
                    holder.to_string()
                }
            )));
        }
        file.read_to_string(&mut previous)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        let stale = Some(previous.trim().to_string()).filter(|s| !s.is_empty());
        let holder = format!(
            "pid {} on {}, started {}, {}",
            std::process::id(),
            hostname(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
            what
        );
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(holder.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        Ok(OutputLock { file, path, stale })
    }

    /// The holder line of a run that died holding this lock (its temporary files should be
    /// cleared), or `None` after a clean release.
    pub fn stale(&self) -> Option<&str> {
        self.stale.as_deref()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Emptied before the kernel lock goes (when `file` closes): an empty file means "the
        // last holder finished cleanly".
        let _ = self.file.set_len(0);
    }
}

/// An exclusive, non-blocking lock (std's `File::try_lock`: `flock` on Unix, `LockFileEx`
/// on Windows): `Ok(false)` when another open file description holds it.
fn try_lock(file: &File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_naming_the_holder_and_a_released_lock_is_not_stale() {
        let dir = tempfile::tempdir().unwrap();
        let first = OutputLock::acquire(dir.path(), "pipeline a.toml").unwrap();
        assert!(first.stale().is_none());
        // A second open file description in the same process conflicts like another process.
        let err = OutputLock::acquire(dir.path(), "pipeline b.toml").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Busy(_)), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("pipeline a.toml"), "{msg}");
        drop(first);
        let again = OutputLock::acquire(dir.path(), "pipeline b.toml").unwrap();
        assert!(
            again.stale().is_none(),
            "a clean release leaves no stale holder"
        );
    }

    #[test]
    fn a_lock_whose_holder_died_is_recovered_and_reported_stale() {
        let dir = tempfile::tempdir().unwrap();
        // What a SIGKILLed run leaves: the holder line, and no kernel lock.
        std::fs::write(
            dir.path().join(LOCK_FILE),
            "pid 999999 on somewhere, started 2026-01-01T00:00:00Z, x.toml",
        )
        .unwrap();
        let lock = OutputLock::acquire(dir.path(), "y.toml").unwrap();
        assert_eq!(
            lock.stale(),
            Some("pid 999999 on somewhere, started 2026-01-01T00:00:00Z, x.toml")
        );
        let content = std::fs::read_to_string(lock.path()).unwrap();
        assert!(content.contains("y.toml"), "{content}");
    }
}
