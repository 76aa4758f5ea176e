//! `sketchpipe generate`: an interrupted generator leaves nothing behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Ctrl-C (SIGINT) while a file is being written: exit code 130, and neither the output nor
/// its temporary sibling is left in the directory.
#[test]
fn an_interrupted_generator_leaves_no_file() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("big.parquet");
    let child = Command::new(env!("CARGO_BIN_EXE_sketchpipe"))
        .args([
            "--quiet", "generate", "low-rank", "--rows", "20000000", "--dim", "64",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is writing (its temporary file exists).
    let started = Instant::now();
    let writing = loop {
        let names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if names.iter().any(|n| n.starts_with(".big.parquet.")) {
            break true;
        }
        if started.elapsed() > Duration::from_secs(120) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert!(writing, "the generator never started writing");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
