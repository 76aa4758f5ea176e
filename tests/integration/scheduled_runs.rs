//! What a scheduler relies on: reruns are byte-identical, one run per output directory (a
//! stale lock recovered), documented exit codes, JSON logs, and kill safety — after a SIGKILL
//! at any point every stage directory holds a complete output, never a partial one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sketchpipe::pipeline::lock::{OutputLock, LOCK_FILE};
use tempfile::TempDir;

fn demo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(format!("{name}.toml"))
}

/// Every file of every stage directory under `out` (relative path → bytes), skipping the
/// lock file and the temporary directory, which hold no output.
fn snapshot(out: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(out)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| p.strip_prefix(out).unwrap().to_path_buf())
        .filter(|p| !p.starts_with(".sketchpipe-tmp") && !p.ends_with(LOCK_FILE))
        .map(|p| {
            let bytes = std::fs::read(out.join(&p)).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Files of one stage directory within a snapshot.
fn stage_files(snap: &BTreeMap<PathBuf, Vec<u8>>, stage: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    snap.iter()
        .filter(|(p, _)| p.starts_with(stage))
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect()
}

#[test]
fn reruns_of_every_demo_are_byte_identical() {
    let tmp = TempDir::new().unwrap();
    for name in ["demo", "prune_demo", "sketch_demo"] {
        let mut snaps = Vec::new();
        for attempt in ["a", "b"] {
            let out = tmp.path().join(format!("{name}-{attempt}"));
            let file = demo(name);
            assert_ok(&sketchpipe(&[
                "-q",
                "run",
                file.to_str().unwrap(),
                "--output-dir",
                out.to_str().unwrap(),
            ]));
            snaps.push(snapshot(&out));
        }
        assert!(snaps[0].len() > 3, "{name}: {:?}", snaps[0].keys());
        assert_eq!(
            snaps[0].keys().collect::<Vec<_>>(),
            snaps[1].keys().collect::<Vec<_>>(),
            "{name}: different tables"
        );
        for (path, bytes) in &snaps[0] {
            assert!(
                &snaps[1][path] == bytes,
                "{name}: {} differs between two runs on the same inputs",
                path.display()
            );
        }
    }
}

#[test]
fn a_second_run_on_a_locked_output_fails_fast_naming_the_holder() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("out");
    let held = OutputLock::acquire(&out, "the test holding the lock").unwrap();
    let started = Instant::now();
    let file = demo("sketch_demo");
    let o = sketchpipe(&[
        "run",
        file.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "not fast");
    assert!(err.contains("in use by another sketchpipe run"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())) && err.contains("the test holding"),
        "the message does not name the holder: {err}"
    );
    assert!(outputs_under(&out).is_empty(), "{:?}", outputs_under(&out));
    drop(held);
    assert_ok(&sketchpipe(&[
        "-q",
        "run",
        file.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]));
}

#[test]
fn a_stale_lock_is_recovered_and_the_dead_runs_files_cleared() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("out");
    // What a SIGKILLed run leaves: its holder line (no kernel lock) and temporary files.
    std::fs::create_dir_all(out.join(".sketchpipe-tmp/a-latest-4242-1")).unwrap();
    std::fs::write(
        out.join(".sketchpipe-tmp/a-latest-4242-1/sketch.parquet"),
        b"half",
    )
    .unwrap();
    std::fs::write(
        out.join(LOCK_FILE),
        "pid 4242 on elsewhere, started 2026-01-01T00:00:00Z, old.toml",
    )
    .unwrap();
    let file = demo("sketch_demo");
    let o = sketchpipe(&[
        "run",
        file.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains("recovered the lock") && err.contains("pid 4242"),
        "{err}"
    );
    assert!(!out.join(".sketchpipe-tmp").exists());
    assert_eq!(
        std::fs::read_to_string(out.join(LOCK_FILE)).unwrap(),
        "",
        "a clean release empties the lock file"
    );
}

#[test]
fn json_logs_are_one_object_per_line_and_errors_carry_their_exit_code() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("out");
    let file = demo("sketch_demo");
    let o = sketchpipe(&[
        "--log-format",
        "json",
        "run",
        file.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let records: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for r in &records {
        for key in ["time", "level", "event", "message"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"scan_done"), "{events:?}");
    assert!(events.contains(&"stage_written"), "{events:?}");
    assert_eq!(events.last(), Some(&"run_done"), "{events:?}");

    // A bad pipeline file: one error record, kind and code as documented.
    let bad = write_pipeline(tmp.path(), "[pipeline]\noutput_dir = \"o\"\nbogus = 1\n");
    let o = sketchpipe(&["--log-format", "json", "run", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let last: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert_eq!(last["kind"], "config");
    assert_eq!(last["exit_code"], 2);
    assert!(
        last["message"].as_str().unwrap().contains("bogus"),
        "{last}"
    );
}

/// SIGKILL `sketchpipe run` at random points, 20 times: after each kill every stage directory
/// holds, complete and byte for byte, the output of one of the two seeds the runs alternate
/// between — the previous complete output or the new one, never a mix or a partial table —
/// and the next run succeeds.
#[test]
fn twenty_sigkills_never_leave_a_partial_output() {
    let tmp = TempDir::new().unwrap();
    let file = demo("prune_demo");
    let run = |out: &Path, seed: u64| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sketchpipe"));
        cmd.args([
            "-q",
            "run",
            file.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
        ]);
        for stage in ["logits_random", "proxy"] {
            cmd.args(["--set", &format!("{stage}.seed={seed}")]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    };
    // The two complete outputs a stage directory may hold.
    let mut reference = Vec::new();
    let mut duration = Duration::ZERO;
    for seed in [1, 2] {
        let out = tmp.path().join(format!("ref-{seed}"));
        let started = Instant::now();
        let o = run(&out, seed).output().unwrap();
        duration = duration.max(started.elapsed());
        assert_ok(&o);
        reference.push(snapshot(&out));
    }
    let stages = ["logits", "logits_random", "proxy", "proxy_mlp"];
    for stage in ["logits_random", "proxy"] {
        assert_ne!(
            stage_files(&reference[0], stage),
            stage_files(&reference[1], stage),
            "{stage}: the seeds must give different outputs for the test to mean anything"
        );
    }

    let out = tmp.path().join("out");
    assert_ok(&run(&out, 1).output().unwrap());
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let (mut kills, mut attempts) = (0, 0);
    while kills < 20 {
        attempts += 1;
        assert!(
            attempts < 200,
            "only {kills} runs were still going when killed"
        );
        let seed = 1 + (attempts % 2) as u64;
        let mut child = run(&out, seed).spawn().unwrap();
        std::thread::sleep(duration.mul_f64(rng.random_range(0.0..1.0)));
        if child.try_wait().unwrap().is_none() {
            // SAFETY: sending a signal to our own child process.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
            kills += 1;
        }
        let status = child.wait().unwrap();
        let snap = snapshot(&out);
        for stage in stages {
            let now = stage_files(&snap, stage);
            assert!(
                reference.iter().any(|r| stage_files(r, stage) == now),
                "after kill {kills} (status {status}): stage `{stage}` holds neither complete \
                 output: {:?}",
                now.keys().collect::<Vec<_>>()
            );
        }
        // The next run takes over the dead run's lock and succeeds.
        let o = run(&out, seed).output().unwrap();
        assert_ok(&o);
        assert_eq!(
            snapshot(&out),
            reference[seed as usize - 1],
            "after kill {kills}: the rerun with seed {seed} differs from its reference"
        );
        assert!(!out.join(".sketchpipe-tmp").exists());
    }
}
