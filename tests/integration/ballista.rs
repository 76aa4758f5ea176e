//! On DataFusion Ballista (`cargo test --features ballista --test integration ballista::`): every SQL function gives the same
//! answer as local execution — in standalone mode (scheduler and executor in this process) and
//! on real processes on loopback (a scheduler and two executors started by the test, one of
//! them killed during a query: the query completes or fails clearly, never with a wrong answer).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use tempfile::TempDir;

/// `dir/t/part-{0..3}.parquet`: rows of a known spectrum over four files; the same rows in
/// `dir/one.parquet` (a quoted file name with a dot, as users write them).
fn data(dir: &Path) -> KnownSpectrum {
    let known = KnownSpectrum::new(8, 50, 11);
    known.write_parts(&dir.join("t"), 4);
    write_parquet(&dir.join("one.parquet"), &known.batch(0..known.n()));
    known
}

/// The tables the queries run on: the directory and the single file.
fn tables(dir: &Path) -> [String; 2] {
    [
        format!("'{}/t/'", dir.display()),
        format!("'{}/one.parquet'", dir.display()),
    ]
}

/// Queries over `t` whose answer does not depend on how rows are split into partitions.
fn queries(t: &str) -> Vec<String> {
    vec![
        format!(
            "SELECT id, el2n(emb, id % 8) AS e, grand(emb, id % 8, emb) AS g, \
             el2n_probs(make_array(0.5, 0.5), id % 2) AS ep, \
             grand_probs(make_array(0.5, 0.5), id % 2, emb) AS gp, uniform_hash(id, 3) AS u, \
             list_mean(emb) AS m, list_stddev(emb) AS s FROM {t} ORDER BY id"
        ),
        format!(
            "WITH s AS (SELECT priority_sketch(id, emb, 30, 5) AS s FROM {t}) \
             SELECT sketch_product(s, s) AS w FROM s"
        ),
        format!(
            "WITH d AS (SELECT id % 4 AS day, priority_sketch(id, emb, 30, 5) AS s FROM {t} \
             GROUP BY id % 4) SELECT sketch_product(m, m) AS w FROM (SELECT sketch_merge(s) AS m FROM d)"
        ),
        format!(
            "SELECT id % 2 AS g, top_eigenvector_stats(emb, 'frequent-directions', 0, 8)['rows'] AS n \
             FROM {t} GROUP BY id % 2 ORDER BY g"
        ),
        // Every mergeable sketch method: an exact sample, and a JL sketch (its partitions'
        // sketches add up: rounded past the summation-order noise).
        format!(
            "WITH s AS (SELECT coordinated_sketch(id, emb, 'exact', 0, 5) AS s FROM {t}) \
             SELECT sketch_product(s, s) AS w FROM s"
        ),
        format!(
            "WITH s AS (SELECT coordinated_sketch(id, emb, 'jl', 16, 5) AS s FROM {t}) \
             SELECT round(w[1][1], 6) AS a, round(w[2][3], 6) AS b FROM \
             (SELECT sketch_product(s, s) AS w FROM s)"
        ),
        // The merged state `run --cluster` finishes stages from (rounded likewise).
        format!(
            "SELECT s['rows'] AS n, s['dim'] AS d, round(s['frobenius_sq'], 6) AS f FROM \
             (SELECT top_eigenvector_state(emb) AS s FROM {t})"
        ),
        // The exact eigenvector, rounded past the summation-order noise of the merge.
        format!(
            "SELECT round(abs(v[1]), 9) AS v0, round(abs(v[2]), 9) AS v1 FROM \
             (SELECT top_eigenvector(emb) AS v FROM {t})"
        ),
    ]
}

async fn printed(ctx: &SessionContext, sql: &str) -> String {
    pretty_format_batches(&collect_sql(ctx, sql).await)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_mode_gives_the_local_answers() {
    let tmp = TempDir::new().unwrap();
    data(tmp.path());
    let local = sketchpipe::pipeline::source::session();
    let cluster = sketchpipe::cluster::standalone_context().await.unwrap();
    for t in tables(tmp.path()) {
        for sql in queries(&t) {
            let (a, b) = (printed(&local, &sql).await, printed(&cluster, &sql).await);
            assert!(a.lines().count() > 3, "{sql}: {a}");
            assert_eq!(a, b, "{sql}");
        }
    }
}

/// Pipelines run with and without a cluster, the tables that must be equal bit for bit, and
/// the stages whose vector must agree to 1e-9 or whose linear sketch to 1e-12 relative (the
/// exact Gram, FD and linear-sketch states are merged in another order).
type Demo = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);
const DEMOS: [Demo; 7] = [
    (
        "pca_demo",
        &["pca_ro/components.parquet", "pca_ro/spectrum.parquet"],
        &["pca", "pca_fd", "wine", "scores"],
    ),
    (
        "sketch_demo",
        &["ab/product.parquet", "ab_exact/product.parquet"],
        &[],
    ),
    ("demo", &["top/vector.parquet"], &["top_exact", "top_fd"]),
    (
        "search_demo",
        &[
            "query_sketch/sketch.parquet",
            "catalog/sketches.parquet",
            "search/ranking.parquet",
        ],
        &[],
    ),
    (
        "prune_demo",
        &[
            "logits/scores.parquet",
            "logits/stats.parquet",
            "proxy/scores.parquet",
            "proxy_mlp/training.parquet",
        ],
        &[],
    ),
    ("ordered", &["ro/vector.parquet", "oja/vector.parquet"], &[]),
    (
        "sketches",
        &[
            "th/sketch.parquet",
            "th/stats.parquet",
            "sp/sketch.parquet",
            "sp/stats.parquet",
        ],
        &["jl", "cs", "spcs"],
    ),
];

fn same_tables(demo: &str, l: &Path, r: &Path, same: &[&str], close: &[&str]) {
    for table in same {
        assert!(
            read_parquet(&l.join(table)) == read_parquet(&r.join(table)),
            "{demo}: {table} differs"
        );
    }
    for stage in close {
        if l.join(stage).join("components.parquet").exists() {
            let (a, b) = (
                crate::pca::components(&l.join(stage)),
                crate::pca::components(&r.join(stage)),
            );
            assert!(
                a.iter()
                    .flatten()
                    .zip(b.iter().flatten())
                    .all(|(x, y)| (x - y).abs() < 1e-9),
                "{demo}: {stage}"
            );
            continue;
        }
        if l.join(stage).join("scores.parquet").exists() {
            let var = |d: &Path| crate::pca::column(&d.join(stage), "stats", "variance");
            assert!(
                var(l)
                    .iter()
                    .zip(var(r))
                    .all(|(x, y)| (x - y).abs() < 1e-9 * y),
                "{demo}: {stage}"
            );
            continue;
        }
        if l.join(stage).join("sketch.parquet").exists() {
            let (a, b) = (read_linear(&l.join(stage)), read_linear(&r.join(stage)));
            assert_eq!(
                (a.t, a.dim, a.rows_seen),
                (b.t, b.dim, b.rows_seen),
                "{stage}"
            );
            let scale = a.s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(
                a.s.iter()
                    .zip(&b.s)
                    .all(|(x, y)| (x - y).abs() <= 1e-12 * scale),
                "{demo}: {stage}"
            );
            continue;
        }
        let (a, b) = (read_vector(&l.join(stage)), read_vector(&r.join(stage)));
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-9),
            "{demo}: {stage}"
        );
    }
}

fn read_linear(stage_dir: &Path) -> sketchpipe::sketch::linear::LinearSketch {
    use sketchpipe::operators::coordinated_sketch::{table, StoredSketch};
    match table::read(&stage_dir.join("sketch.parquet")).unwrap().0 {
        StoredSketch::Linear(l) => l,
        StoredSketch::Sample(_) => panic!("{} holds a sample", stage_dir.display()),
    }
}

/// Coordinated sketches beyond the sketch demo's: JL and CountSketch (on the cluster), sparse
/// rows, and a threshold sketch (it does not merge: streamed to the client).
fn sketches_pipeline(dir: &Path) -> std::path::PathBuf {
    let rows: Vec<(i64, Vec<f64>)> = (0..3000i64)
        .map(|i| {
            let row = (0..6)
                .map(|j| match (i * 7 + j * 3) % 4 {
                    0 => ((i * 31 + j) % 17) as f64 - 8.5,
                    _ => 0.0,
                })
                .collect();
            (i * 13 + 5, row)
        })
        .collect();
    write_parquet(&dir.join("sparse.parquet"), &sparse_batch(&rows, None));
    let left = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/pair/left.parquet");
    let file = dir.join("sketches.toml");
    let stage = |name: &str, source: &str, extra: &str| {
        format!(
            "[stages.{name}]\nop = \"coordinated_sketch\"\nsource = \"{source}\"\nkey = \"key\"\n{extra}\n"
        )
    };
    std::fs::write(
        &file,
        format!(
            "[pipeline]\noutput_dir = \"out\"\n[sources.l]\npath = \"{}\"\n\
             [sources.s]\npath = \"{}\"\n{}{}{}{}{}",
            left.display(),
            dir.join("sparse.parquet").display(),
            stage(
                "jl",
                "l",
                "columns = [\"values\"]\nmethod = \"jl\"\nsize = 32"
            ),
            stage(
                "cs",
                "l",
                "columns = [\"values\"]\nmethod = \"countsketch\"\nsize = 32"
            ),
            stage(
                "th",
                "l",
                "columns = [\"values\"]\nmethod = \"threshold\"\nsize = 200"
            ),
            stage("sp", "s", "columns = [\"sparse\"]\ndim = 6\nsize = 50"),
            stage(
                "spcs",
                "s",
                "columns = [\"sparse\"]\ndim = 6\nmethod = \"countsketch\"\nsize = 8"
            ),
        ),
    )
    .unwrap();
    file
}

fn demo_file(tmp: &Path, demo: &str) -> std::path::PathBuf {
    match demo {
        "ordered" => ordered_pipeline(tmp),
        "sketches" => sketches_pipeline(tmp),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("pipelines/{demo}.toml")),
    }
}

/// Every stage of the demos through `run` with the in-process cluster writes the local tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_mode_runs_every_stage_of_the_demos_as_locally() {
    use sketchpipe::pipeline::{self, PipelineSpec, RunOptions};
    let tmp = TempDir::new().unwrap();
    for (demo, same, close) in DEMOS {
        let file = demo_file(tmp.path(), demo);
        let spec = PipelineSpec::load(&file, &[]).unwrap();
        let (l, r) = (
            tmp.path().join(format!("{demo}-local")),
            tmp.path().join(format!("{demo}-standalone")),
        );
        for (out, cluster) in [(&l, false), (&r, true)] {
            let cluster = match cluster {
                true => Some(sketchpipe::cluster::standalone_context().await.unwrap()),
                false => None,
            };
            let opts = RunOptions {
                output_dir: Some(out.clone()),
                progress: sketchpipe::progress::ProgressMode::Quiet,
                cluster,
                ..Default::default()
            };
            pipeline::run(&spec, &opts).await.unwrap();
        }
        same_tables(demo, &l, &r, same, close);
    }
}

/// An object-store source with `--cluster` is refused before anything runs (the executors
/// have no clients for it), naming the source and the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_sources_are_refused_on_a_cluster() {
    use sketchpipe::pipeline::{self, PipelineSpec, RunOptions};
    let tmp = TempDir::new().unwrap();
    let file = tmp.path().join("p.toml");
    std::fs::write(
        &file,
        "[sources.s]\npath = \"s3://bucket/x/\"\nformat = \"parquet\"\n\n[stages.t]\n\
         op = \"top_eigenvector\"\nsource = \"s\"\ncolumns = [\"v\"]\nalgorithm = \"exact\"\n",
    )
    .unwrap();
    let spec = PipelineSpec::load(&file, &[]).unwrap();
    let opts = RunOptions {
        output_dir: Some(tmp.path().join("out")),
        progress: sketchpipe::progress::ProgressMode::Quiet,
        cluster: Some(sketchpipe::cluster::standalone_context().await.unwrap()),
        ..Default::default()
    };
    let err = pipeline::run(&spec, &opts).await.unwrap_err();
    assert_eq!(err.exit_kind(), sketchpipe::error::ExitKind::Config);
    let text = err.to_string();
    assert!(
        text.contains("[sources.s]")
            && text.contains("s3://bucket/x/")
            && text.contains("without --cluster"),
        "{text}"
    );
    assert!(!tmp.path().join("out").exists());
}

/// Child processes stopped when the test ends, however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sketchpipe"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn executor(scheduler: &str) -> Child {
    let (port, grpc) = (free_port().to_string(), free_port().to_string());
    spawn(&[
        "-q",
        "executor",
        "--scheduler",
        scheduler,
        "--port",
        &port,
        "--grpc-port",
        &grpc,
        "--concurrency",
        "1",
        "--heartbeat-interval",
        "1",
    ])
}

/// `random-order` and `oja` over three files of 40 MB: more than one 64 MiB chunk, so the
/// cluster scans several partitions whose batches must reach the client in file order (the
/// answers depend on the order).
fn ordered_pipeline(dir: &Path) -> std::path::PathBuf {
    for i in 0..3 {
        let out = dir.join(format!("ordered/p{i}.parquet"));
        let seed = i.to_string();
        assert_ok(&sketchpipe(&[
            "-q",
            "generate",
            "low-rank",
            "--rows",
            "160000",
            "--dim",
            "64",
            "--seed",
            &seed,
            "--out",
            out.to_str().unwrap(),
        ]));
    }
    let file = dir.join("ordered.toml");
    std::fs::write(
        &file,
        "[pipeline]\noutput_dir = \"out\"\n[sources.t]\npath = \"ordered\"\n\
         [stages.ro]\nop = \"top_eigenvector\"\nsource = \"t\"\ncolumns = [\"emb\"]\nseed = 3\n\
         [stages.oja]\nop = \"top_eigenvector\"\nsource = \"t\"\ncolumns = [\"emb\"]\n\
         algorithm = \"oja\"\nseed = 3\n",
    )
    .unwrap();
    file
}

#[test]
fn processes_on_loopback_give_the_local_answers_and_survive_a_lost_executor() {
    let tmp = TempDir::new().unwrap();
    data(tmp.path());
    let scheduler = format!("127.0.0.1:{}", free_port());
    let url = format!("df://{scheduler}");
    // A lost executor is noticed after 5 s without heartbeats (1 s apart).
    let mut procs = Processes(vec![spawn(&[
        "-q",
        "scheduler",
        "--bind",
        &scheduler,
        "--executor-timeout",
        "5",
    ])]);
    procs.0.push(executor(&scheduler));
    procs.0.push(executor(&scheduler));
    let [t, one] = tables(tmp.path());
    let sql = |cluster: Option<&str>, q: &str| {
        let mut args = vec!["sql", "--format", "json"];
        if let Some(c) = cluster {
            args.extend(["--cluster", c]);
        }
        args.push(q);
        sketchpipe(&args)
    };
    // The scheduler and executors take a moment to start: retry the first query.
    let first = &queries(&t)[1];
    let started = Instant::now();
    loop {
        let o = sql(Some(&url), first);
        if o.status.success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the cluster did not answer: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for q in queries(&t).into_iter().chain(queries(&one)) {
        let (local, remote) = (sql(None, &q), sql(Some(&url), &q));
        assert_ok(&local);
        assert_ok(&remote);
        assert_eq!(stdout(&local), stdout(&remote), "{q}");
    }
    // `run --cluster`: the demos' mergeable stages run on the cluster, the rest here; the
    // outputs are the local ones (exact eigenvector to rounding).
    for (demo, same, close) in DEMOS {
        let file = demo_file(tmp.path(), demo);
        let (l, r) = (
            tmp.path().join(format!("{demo}-local")),
            tmp.path().join(format!("{demo}-cluster")),
        );
        assert_ok(&sketchpipe(&[
            "-q",
            "run",
            file.to_str().unwrap(),
            "--output-dir",
            l.to_str().unwrap(),
        ]));
        let o = sketchpipe(&[
            "run",
            file.to_str().unwrap(),
            "--output-dir",
            r.to_str().unwrap(),
            "--cluster",
            &url,
        ]);
        assert_ok(&o);
        let log = stderr(&o);
        assert!(log.contains("on the cluster"), "{log}");
        if demo == "sketches" {
            for s in ["jl", "cs", "sp", "spcs"] {
                let aggregate = format!("stage `{s}`: running on the cluster as an SQL aggregate");
                assert!(log.contains(&aggregate), "{s}: {log}");
            }
            let streamed = "source `l`: read on the cluster, streamed here for stage(s) th";
            assert!(log.contains(streamed), "{log}");
        }
        same_tables(demo, &l, &r, same, close);
    }

    // A failure inside one of our functions on an executor comes back as our own error,
    // with its exit code.
    let o = sql(
        Some(&url),
        &format!("SELECT priority_sketch(id % 3, emb, 1000, 1) FROM {t}"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("more than one") && !err.contains("Shared("),
        "{err}"
    );

    // An executor killed while a query runs: the answer is the local one, or a clear error.
    // A bigger input, so that the query is still running when the executor goes.
    KnownSpectrum::new(8, 25_000, 12).write_parts(&tmp.path().join("big"), 4);
    let copies: datafusion::arrow::array::ArrayRef = std::sync::Arc::new(
        datafusion::arrow::array::Int64Array::from_iter_values(1..=50),
    );
    std::fs::create_dir_all(tmp.path().join("copies")).unwrap();
    write_parquet(
        &tmp.path().join("copies/c.parquet"),
        &RecordBatch::try_from_iter([("value", copies)]).unwrap(),
    );
    let q = format!(
        "WITH s AS (SELECT priority_sketch(a.id * 100 + b.value, a.emb, 50, 5) AS s \
         FROM '{0}/big/' a CROSS JOIN '{0}/copies/' b) SELECT sketch_product(s, s) AS w FROM s",
        tmp.path().display()
    );
    let expected = stdout(&sql(None, &q));
    // Kill half-way through, as timed on the cluster.
    let timed = Instant::now();
    assert_ok(&sql(Some(&url), &q));
    let half = timed.elapsed() / 2;
    let out_file = tmp.path().join("killed.out");
    let err_file = tmp.path().join("killed.err");
    let mut query = Command::new(env!("CARGO_BIN_EXE_sketchpipe"))
        .args(["sql", "--format", "json", "--cluster", &url, &q])
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(half);
    let still_running = query.try_wait().unwrap().is_none();
    let _ = procs.0[2].kill();
    let _ = procs.0[2].wait();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = query.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = query.kill();
            panic!("the query hung after an executor was lost");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (
        std::fs::read_to_string(&out_file).unwrap(),
        std::fs::read_to_string(&err_file).unwrap(),
    );
    let outcome = match status.code() {
        Some(0) if out == expected => "answered correctly".to_string(),
        Some(0) => "answered WRONGLY".to_string(),
        Some(code) => format!("failed with exit code {code}: {}", err.trim()),
        None => format!("was killed by a signal: {}", err.trim()),
    };
    let when = if still_running { "while" } else { "after" };
    eprintln!("executor killed {half:?} in, {when} the query ran: the query {outcome}");
    // The query had ended before the kill: nothing may have changed its answer.
    if !still_running {
        assert_eq!(outcome, "answered correctly", "killed {when} the query ran");
    }
    match status.code() {
        // Recovered: the answer must be the local one.
        Some(0) => assert_eq!(out, expected, "the query {outcome}"),
        // Failed: clearly, as an engine or I/O failure — never a crash, never "bad input".
        Some(1 | 4) => assert!(err.starts_with("error: "), "the query {outcome}"),
        _ => panic!("the query {outcome}"),
    }
}
