//! SIGINT, SIGTERM and SIGHUP stop a run cleanly at any point: exit code 128 + n, a last
//! `terminated` record naming the signal, no file left in the output directory or the OS
//! temporary directory, the previous outputs byte-identical, and the next run fine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tempfile::TempDir;

/// A run with a shuffle (spill files), a verify pass, several stages sharing a scan, a key
/// check and a mergeable PCA.
const PIPELINE: &str = "[pipeline]\noutput_dir = \"out\"\n[sources.src]\npath = \"big.parquet\"\n\
    [stages.top]\nop = \"top_eigenvector\"\nsource = \"src\"\ncolumns = [\"emb\"]\n\
    shuffle = true\nshuffle_memory = \"8MiB\"\nverify = true\n\
    [stages.exact]\nop = \"top_eigenvector\"\nsource = \"src\"\ncolumns = [\"emb\"]\nalgorithm = \"exact\"\n\
    [stages.pca]\nop = \"pca\"\nsource = \"src\"\ncolumns = [\"emb\"]\ncomponents = 2\n\
    [stages.sk]\nop = \"coordinated_sketch\"\nsource = \"src\"\nkey = \"id\"\ncolumns = [\"emb\"]\nsize = 100\n";

/// Every file under the output directory but the lock, with its bytes.
fn snapshot(out: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    outputs_under(out)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn run(file: &Path, os_tmp: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sketchpipe"));
    cmd.args(["--log-format", "json", "run", file.to_str().unwrap()])
        .env("TMPDIR", os_tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn a_signal_at_any_point_leaves_nothing_and_changes_nothing() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("big.parquet");
    assert_ok(&sketchpipe(&[
        "-q",
        "generate",
        "low-rank",
        "--rows",
        "300000",
        "--dim",
        "64",
        "--out",
        data.to_str().unwrap(),
    ]));
    let file = write_pipeline(tmp.path(), PIPELINE);
    let os_tmp = tmp.path().join("os-tmp");
    std::fs::create_dir(&os_tmp).unwrap();
    let out = tmp.path().join("out");
    let started = Instant::now();
    let first = run(&file, &os_tmp).output().unwrap();
    assert_ok(&first);
    let full = started.elapsed();
    let before = snapshot(&out);
    assert!(before.len() > 10, "{before:?}");

    // Each signal at a random point of a run, and SIGTERM once the shuffle is spilling.
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let mut cases: Vec<(libc::c_int, &str, i32, Option<Duration>)> = Vec::new();
    for (sig, name, code) in [
        (libc::SIGTERM, "SIGTERM", 143),
        (libc::SIGHUP, "SIGHUP", 129),
        (libc::SIGINT, "SIGINT", 130),
        (libc::SIGTERM, "SIGTERM", 143),
        (libc::SIGTERM, "SIGTERM", 143),
    ] {
        let at = full.mul_f64(rng.random_range(0.05..0.9));
        cases.push((sig, name, code, Some(at)));
    }
    cases.push((libc::SIGTERM, "SIGTERM", 143, None));
    let mut stopped = 0;
    for (sig, name, code, at) in cases {
        let child = run(&file, &os_tmp).spawn().unwrap();
        let t0 = Instant::now();
        match at {
            Some(at) => std::thread::sleep(at),
            None => {
                let spill_root = out.join(".sketchpipe-tmp");
                while !files_under(&spill_root)
                    .iter()
                    .any(|p| p.to_string_lossy().contains("shuffle-"))
                {
                    assert!(t0.elapsed() < Duration::from_secs(120), "no spill appeared");
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let result = child.wait_with_output().unwrap();
        let err = stderr(&result);
        let what = format!("{name} after {:?}", t0.elapsed());
        match result.status.code() {
            // The run finished before the signal landed: its outputs are the same bytes.
            Some(0) => {}
            Some(c) => {
                assert_eq!(c, code, "{what}: {err}");
                let last: serde_json::Value =
                    serde_json::from_str(err.lines().last().unwrap()).unwrap();
                assert_eq!(last["event"], "terminated", "{what}: {err}");
                assert_eq!(last["signal"], name, "{what}: {err}");
                assert_eq!(last["exit_code"], code, "{what}: {err}");
                stopped += 1;
            }
            None => panic!("{what}: killed by the signal itself (not handled): {err}"),
        }
        assert!(
            files_under(&out.join(".sketchpipe-tmp")).is_empty(),
            "{what}: temporary files left: {:?}",
            files_under(&out.join(".sketchpipe-tmp"))
        );
        assert!(
            files_under(&os_tmp).is_empty(),
            "{what}: left in TMPDIR: {:?}",
            files_under(&os_tmp)
        );
        let now = snapshot(&out);
        assert_eq!(
            now.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            before.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "{what}"
        );
        for ((p, a), (_, b)) in now.iter().zip(&before) {
            assert!(a == b, "{what}: {} changed", p.display());
        }
    }
    assert!(
        stopped >= 3,
        "only {stopped} runs were stopped by their signal"
    );
    // The lock was released: the next run works.
    assert_ok(&run(&file, &os_tmp).output().unwrap());
}

/// A library caller's [`sketchpipe::pipeline::Stop`] (the Python package's Ctrl-C) stops a
/// run as the signal it names would: `Error::Interrupted`, and nothing written.
#[tokio::test]
async fn a_stop_requested_through_run_options_cancels_the_run_cleanly() {
    use sketchpipe::pipeline::{PipelineSpec, RunOptions, Stop};
    use sketchpipe::signals::Signal;
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("big.parquet");
    assert_ok(&sketchpipe(&[
        "-q",
        "generate",
        "low-rank",
        "--rows",
        "20000",
        "--dim",
        "16",
        "--out",
        data.to_str().unwrap(),
    ]));
    let file = write_pipeline(tmp.path(), PIPELINE);
    let spec = PipelineSpec::load(&file, &[]).unwrap();
    let stop = std::sync::Arc::new(Stop::new());
    stop.request(Signal::Terminate);
    let opts = RunOptions {
        progress: sketchpipe::progress::ProgressMode::Quiet,
        stop: Some(stop),
        ..Default::default()
    };
    let err = sketchpipe::pipeline::run(&spec, &opts).await.unwrap_err();
    assert!(
        matches!(err, sketchpipe::Error::Interrupted(Signal::Terminate)),
        "{err}"
    );
    assert_eq!(
        outputs_under(&tmp.path().join("out")),
        Vec::<PathBuf>::new()
    );
}
