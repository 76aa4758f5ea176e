//! The `sketchpipe` command line: `run`, `sql`, `generate`, `scheduler`, `executor`. The
//! binary (`src/main.rs`) and the Python package's `sketchpipe` command both call [`main`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::generate::{
    write_rows, Classification, Corpus, Dtype, Generated, HeavyRow, HeavyVsBulk, Logits, LowRank,
    Rows, SortBy, SparsePair, TableOptions,
};
use crate::pipeline::{self, PipelineSpec, RunOptions, Stop};
use crate::progress::{event, json_record, ProgressMode, Value};
use crate::query::{run_query, run_query_on, OutputFormat};
use crate::{Error, Result};

/// Stream large tables through sketching operators and query the small summaries with SQL.
#[derive(Parser, Debug)]
#[command(
    name = "sketchpipe",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 success; 1 internal error; 2 bad pipeline file or command line; \
                  3 bad input data; 4 I/O failure; 5 output directory in use by another run \
                  (retry later); 129 hangup; 130 interrupted; 143 terminated."
)]
struct Cli {
    /// Print nothing but errors (no progress bar or log lines).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// How log lines and errors on stderr look: text (a bar on a terminal), or json — one
    /// object per line with time, level, event and message, for schedulers.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a pipeline file: scan its sources, run its stages, write their Parquet outputs.
    ///
    /// Each stage writes OUTPUT_DIR/STAGE/*.parquet and _SUCCESS atomically: a failed or
    /// interrupted run leaves the previous output untouched.
    Run(RunArgs),
    /// Query stage outputs with SQL: each stage is a schema, each of its tables a table.
    ///
    /// Raw files are tables too, quoted: FROM 'data/x.parquet', 'runs/', 'runs/*.parquet' —
    /// alone or joined with stage outputs in one statement.
    ///
    /// sketchpipe's functions (`docs/reference.md` "SQL functions" has each):
    /// el2n, grand, el2n_probs, grand_probs (pruning scores per row), run_stats (their
    /// mean, std and runs per id, an aggregate); uniform_hash (the
    /// shared key hash); list_mean, list_stddev; aggregates top_eigenvector,
    /// top_eigenvector_stats, top_eigenvector_state, pca, pca_state, priority_sketch,
    /// coordinated_sketch, sketch_merge; pca_project (scores on a basis), subspace_alignment
    /// (principal angles of two bases), sketch_product (AᵀB from two sketches); join_size,
    /// join_inner_product, join_correlation, join_r2 (estimates over the join of two
    /// sketches, with confidence intervals).
    ///
    /// Example: sketchpipe sql --pipeline pipelines/demo.toml "SELECT * FROM top.stats"
    Sql(SqlArgs),
    /// Write a reproducible synthetic table (Parquet, or CSV when --out ends in .csv).
    #[command(subcommand)]
    Generate(GenerateKind),
    /// Start a DataFusion Ballista scheduler that knows sketchpipe's SQL functions (needs a
    /// build with `--features ballista`). Runs until stopped.
    Scheduler(SchedulerArgs),
    /// Start a DataFusion Ballista executor that knows sketchpipe's SQL functions, serving the
    /// scheduler at --scheduler (needs a build with `--features ballista`). Runs until stopped.
    Executor(ExecutorArgs),
}

#[derive(Args, Debug)]
struct SchedulerArgs {
    /// Address to listen on for clients and executors.
    #[arg(long, default_value = "127.0.0.1:50050", value_name = "HOST:PORT")]
    bind: std::net::SocketAddr,
    /// Seconds without a heartbeat before an executor is declared dead and its tasks run
    /// elsewhere (Ballista's default: 180).
    #[arg(long, default_value_t = 180, value_name = "SECONDS")]
    executor_timeout: u64,
}

#[derive(Args, Debug)]
struct ExecutorArgs {
    /// The scheduler to serve.
    #[arg(long, default_value = "127.0.0.1:50050", value_name = "HOST:PORT")]
    scheduler: String,
    /// Host to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// Arrow Flight port (shuffle data between executors and to clients).
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// The executor's gRPC port.
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Directory for shuffle files (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<String>,
    /// Seconds between heartbeats to the scheduler (Ballista's default: 60; keep it well under
    /// the scheduler's --executor-timeout).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    heartbeat_interval: u64,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The pipeline file (TOML).
    pipeline: PathBuf,
    /// Write outputs here instead of the file's [pipeline] output_dir.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Write into STAGE/date=YYYY-MM-DD/ partitions; a rerun of a date replaces that date only.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    run_date: Option<NaiveDate>,
    /// Override a stage parameter, e.g. --set top.algorithm=exact (repeatable).
    #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
    set: Vec<String>,
    /// Use the Ballista cluster at df://HOST:PORT: the mergeable stages (top_eigenvector
    /// exact / frequent-directions, coordinated sketches priority / exact / jl /
    /// countsketch) run there as SQL aggregates, prune_scores' scoring and by-id averaging
    /// run there as a query; stages that need one ordered pass (random-order, oja, shuffles)
    /// or two (threshold sketches) run here on a stream of their source decoded by the
    /// executors, in file order. Needs a build with `--features
    /// ballista`; the executors must see the input files at the same paths.
    #[arg(long, value_name = "df://HOST:PORT")]
    cluster: Option<String>,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("where").args(["pipeline", "dir"]))]
struct SqlArgs {
    /// Query the outputs of this pipeline file (its [pipeline] output_dir).
    #[arg(long, value_name = "PIPELINE.toml")]
    pipeline: Option<PathBuf>,
    /// Query the outputs under this directory.
    #[arg(long, value_name = "OUTPUT_DIR")]
    dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Run the query on the Ballista cluster whose scheduler is at df://HOST:PORT (needs a
    /// build with `--features ballista`; the files it reads must be at the same paths on the
    /// executors).
    #[arg(long, value_name = "df://HOST:PORT")]
    cluster: Option<String>,
    /// The SQL query, e.g. "SELECT * FROM top.vector ORDER BY abs(value) DESC LIMIT 5".
    query: String,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Subcommand, Debug)]
enum GenerateKind {
    /// Low-rank plus noise rows with a chosen top eigengap R = σ₁²/σ₂² (columns: id, emb).
    LowRank(LowRankArgs),
    /// One heavy row sqrt(R)·e₁ and m light rows sqrt(1/m)·e_j per other direction, rotated and
    /// shuffled: the instance where every fixed-η Oja fails (columns: id, emb).
    HeavyRow(HeavyRowArgs),
    /// A Gaussian bulk whose own top direction is u, plus a few heavy rows along w ⊥ u that
    /// carry more mass: the answer is w (columns: id, emb).
    HeavyVsBulk(HeavyVsBulkArgs),
    /// Features with class structure and a known fraction of flipped labels
    /// (columns: id, features, label, noisy).
    Classification(ClassificationArgs),
    /// Logged logits of several training runs, one file per run in its own row order, with a
    /// known set of flipped labels (DIR/run-R.parquet; columns: id, run, label, logits, noisy).
    Logits(LogitsArgs),
    /// Two tables sharing keys, with sparse rows, for coordinated sketches
    /// (DIR/left.parquet: key, values; DIR/right.parquet: key, values, y).
    SparsePair(SparsePairArgs),
    /// A query table and a corpus of candidate tables sharing some of its keys, with planted
    /// correlations, for dataset search (DIR/query.parquet: key, y; DIR/corpus.parquet:
    /// table, key, x, z).
    Corpus(CorpusArgs),
}

#[derive(Args, Debug)]
struct CorpusArgs {
    /// Output directory (query.parquet and corpus.parquet).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Candidate tables in the corpus.
    #[arg(long, default_value_t = 30)]
    tables: usize,
    /// Rows of the query and of each candidate.
    #[arg(long, default_value_t = 2_000)]
    rows: u64,
    /// The smallest fraction of a candidate's keys that the query has (the tables' overlaps
    /// run log-uniformly from it to 1).
    #[arg(long, default_value_t = 0.01)]
    min_overlap: f64,
    /// Fraction of the values multiplied by 30 (heavy tails).
    #[arg(long, default_value_t = 0.0)]
    outliers: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args, Debug)]
struct SparsePairArgs {
    /// Output directory (left.parquet and right.parquet).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Rows of each table.
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    /// Width of the left table's rows.
    #[arg(long, default_value_t = 50)]
    dim: usize,
    /// Width of the right table's rows.
    #[arg(long, default_value_t = 50)]
    dim_right: usize,
    /// Fraction of non-zero entries.
    #[arg(long, default_value_t = 0.1)]
    density: f64,
    /// Fraction of the right table's keys that the left table has too.
    #[arg(long, default_value_t = 1.0)]
    overlap: f64,
    /// Entries per table set to ±10.
    #[arg(long, default_value_t = 0)]
    outliers: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args, Debug)]
struct ClassificationArgs {
    /// Output file (.parquet).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    /// Feature dimension.
    #[arg(long, default_value_t = 16)]
    dim: usize,
    #[arg(long, default_value_t = 4)]
    classes: usize,
    /// Fraction of rows whose label is flipped to another class.
    #[arg(long, default_value_t = 0.1)]
    noise: f64,
    /// Norm of each class mean (the noise has unit variance per dimension).
    #[arg(long, default_value_t = 3.0)]
    separation: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args, Debug)]
struct LogitsArgs {
    /// Output directory (one run-R.parquet per run).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Number of runs (files).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Fraction of rows whose label is flipped to another class.
    #[arg(long, default_value_t = 0.1)]
    noise: f64,
    /// Standard deviation of the per-run logit noise.
    #[arg(long, default_value_t = 1.0)]
    sigma: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Flags every generator takes.
#[derive(Args, Debug)]
struct TableArgs {
    /// Output file (.parquet, or .csv for one column per dimension).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Random seed: the same flags and seed give the same file.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Element type of the embedding.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
    /// Write the rows in a non-random order (builds the table in memory): `norm` = ascending
    /// row norm, `top` = ascending projection on the planted top direction.
    #[arg(long, value_enum)]
    sort_by: Option<SortByArg>,
}

impl TableArgs {
    fn options(&self) -> TableOptions {
        TableOptions {
            dtype: match self.dtype {
                DtypeArg::F32 => Dtype::F32,
                DtypeArg::F64 => Dtype::F64,
            },
            sort_by: self.sort_by.map(|s| match s {
                SortByArg::Norm => SortBy::Norm,
                SortByArg::Top => SortBy::Top,
            }),
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum SortByArg {
    Norm,
    Top,
}

#[derive(Args, Debug)]
struct LowRankArgs {
    #[command(flatten)]
    table: TableArgs,
    /// Number of rows.
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    /// Row dimension d.
    #[arg(long, default_value_t = 32)]
    dim: usize,
    /// Eigengap R = λ₁/λ₂ of the expected AᵀA.
    #[arg(long, default_value_t = 10.0)]
    gap: f64,
    /// Number of directions with eigenvalue ≥ 1 (λ₂ = … = λ_rank = 1).
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// Eigenvalue of the remaining d − rank directions.
    #[arg(long, default_value_t = 0.01)]
    noise: f64,
}

#[derive(Args, Debug)]
struct HeavyRowArgs {
    #[command(flatten)]
    table: TableArgs,
    /// Row dimension d (the table has 1 + (d − 1)·m rows).
    #[arg(long, default_value_t = 256)]
    dim: usize,
    /// Eigengap R: the heavy row's squared norm over each light direction's total.
    #[arg(long, default_value_t = 20.0)]
    gap: f64,
    /// Light rows per direction (m).
    #[arg(long, default_value_t = 64)]
    per_direction: u64,
}

#[derive(Args, Debug)]
struct HeavyVsBulkArgs {
    #[command(flatten)]
    table: TableArgs,
    /// Number of light (bulk) rows.
    #[arg(long, default_value_t = 20_000)]
    rows: u64,
    /// Row dimension d.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Number of heavy rows (placed at random positions).
    #[arg(long, default_value_t = 10)]
    heavy_rows: u64,
    /// Total heavy mass as a multiple of the bulk's top eigenvalue.
    #[arg(long, default_value_t = 2.0)]
    heavy_mass: f64,
    /// The bulk's own gap: variance along u over every other direction.
    #[arg(long, default_value_t = 4.0)]
    bulk_gap: f64,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum DtypeArg {
    F32,
    F64,
}

/// Writes embedding rows with the shared table flags (`--out`, `--dtype`, `--sort-by`).
async fn embeddings(rows: Rows, table: TableArgs, progress: ProgressMode) -> Result<Generated> {
    let options = table.options();
    blocking(move || write_rows(rows, &table.out, options, progress)).await
}

/// Runs a generator off the async runtime's threads. Ctrl-C asks it to stop and waits until
/// it has (it removes its temporary file), so the command exits 130 leaving nothing behind.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let mut task = tokio::task::spawn_blocking(f);
    let joined = tokio::select! {
        r = &mut task => r,
        s = crate::signals::first() => {
            crate::generate::cancel(s);
            task.await
        }
    };
    joined.map_err(|e| Error::Internal(format!("generator task failed: {e}")))?
}

fn report(progress: ProgressMode, files: &[Generated]) {
    for g in files {
        event(
            progress,
            "file_written",
            &format!(
                "wrote {} ({} rows, {:.1} MB)",
                g.path.display(),
                g.rows,
                g.bytes as f64 / 1e6
            ),
            &[
                ("path", Value::from(g.path.display().to_string())),
                ("rows", Value::from(g.rows)),
                ("bytes", Value::from(g.bytes)),
            ],
        );
    }
}

#[cfg(not(feature = "ballista"))]
const NO_BALLISTA: &str = "this sketchpipe was built without the `ballista` feature; build it \
                           with `cargo build --release --features ballista` to use a cluster";

#[cfg(feature = "ballista")]
async fn cluster_context(url: &str) -> Result<datafusion::prelude::SessionContext> {
    if !url.starts_with("df://") {
        return Err(Error::Config(format!(
            "--cluster {url}: expected df://HOST:PORT (the scheduler's address)"
        )));
    }
    crate::cluster::remote_context(url).await
}

#[cfg(feature = "ballista")]
fn remote_error(e: Error) -> Error {
    crate::cluster::unwrap_remote(e)
}

#[cfg(not(feature = "ballista"))]
fn remote_error(e: Error) -> Error {
    e
}

#[cfg(not(feature = "ballista"))]
async fn cluster_context(_url: &str) -> Result<datafusion::prelude::SessionContext> {
    Err(Error::Config(NO_BALLISTA.into()))
}

#[cfg(feature = "ballista")]
async fn start_scheduler(args: SchedulerArgs, progress: ProgressMode) -> Result<()> {
    event(
        progress,
        "scheduler_started",
        &format!("Ballista scheduler listening on {}", args.bind),
        &[("bind", Value::from(args.bind.to_string()))],
    );
    crate::cluster::run_scheduler(args.bind, args.executor_timeout).await
}

#[cfg(not(feature = "ballista"))]
async fn start_scheduler(_args: SchedulerArgs, _progress: ProgressMode) -> Result<()> {
    Err(Error::Config(NO_BALLISTA.into()))
}

#[cfg(feature = "ballista")]
async fn start_executor(args: ExecutorArgs, progress: ProgressMode) -> Result<()> {
    let (host, port) = args
        .scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            Error::Config(format!(
                "--scheduler {}: expected HOST:PORT",
                args.scheduler
            ))
        })?;
    event(
        progress,
        "executor_started",
        &format!(
            "Ballista executor on {}:{} (gRPC {}) serving the scheduler at {host}:{port}",
            args.bind_host, args.port, args.grpc_port
        ),
        &[("scheduler", Value::from(args.scheduler.as_str()))],
    );
    crate::cluster::run_executor(crate::cluster::ExecutorOptions {
        scheduler_host: host,
        scheduler_port: port,
        bind_host: args.bind_host,
        port: args.port,
        grpc_port: args.grpc_port,
        concurrency: args.concurrency,
        work_dir: args.work_dir,
        heartbeat_interval: args.heartbeat_interval,
    })
    .await
}

#[cfg(not(feature = "ballista"))]
async fn start_executor(_args: ExecutorArgs, _progress: ProgressMode) -> Result<()> {
    Err(Error::Config(NO_BALLISTA.into()))
}

fn parse_date(s: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("`{s}` is not a date in YYYY-MM-DD form ({e})"))
}

/// Runs the command line `args` (the program's name first) and returns its documented exit
/// code. Usage errors, `--help` and `--version` print as clap prints them and return 2 or 0:
/// nothing here exits the process.
pub fn main(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    let json = cli.log_format == LogFormat::Json;
    // Until `dispatch` knows whether the command listens for them (`run` does from its first
    // moment; see there).
    crate::signals::hold();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = Error::io("cannot start the async runtime", e);
            return fail(&e, json);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => 0,
        Err(e) => fail(&e, json),
    }
}

/// Prints the one-paragraph error (or its JSON record) and returns its documented exit code.
fn fail(e: &Error, json: bool) -> u8 {
    let kind = e.exit_kind();
    if json {
        let mut fields = vec![
            ("kind", Value::from(kind.name())),
            ("exit_code", Value::from(kind.code())),
        ];
        // A signal's last record says so, and names it.
        let event = match e {
            Error::Interrupted(s) => {
                fields.push(("signal", Value::from(s.name())));
                "terminated"
            }
            _ => "error",
        };
        eprintln!("{}", json_record("error", event, &e.to_string(), &fields));
    } else {
        eprintln!("error: {e}");
    }
    kind.code()
}

async fn dispatch(cli: Cli) -> Result<()> {
    let progress = match (cli.quiet, cli.log_format) {
        (true, _) => ProgressMode::Quiet,
        (false, LogFormat::Json) => ProgressMode::Json,
        (false, LogFormat::Text) => ProgressMode::Auto,
    };
    // `run` listens for the stopping signals before it reads anything, so one that comes while
    // it loads its pipeline stops it as one during the run does (exit 143, nothing written);
    // the other commands keep the default actions (or listen themselves, as `generate` does).
    let stop = match &cli.command {
        Command::Run(_) => {
            let stop = Arc::new(Stop::new());
            let listener = crate::signals::Listener::new();
            let requested = Arc::clone(&stop);
            tokio::spawn(async move { requested.request(listener.first().await) });
            Some(stop)
        }
        _ => None,
    };
    crate::signals::release();
    match cli.command {
        Command::Run(args) => {
            let spec = PipelineSpec::load(&args.pipeline, &args.set)?;
            let cluster = match &args.cluster {
                Some(url) => Some(cluster_context(url).await?),
                None => None,
            };
            let opts = RunOptions {
                cluster,
                output_dir: args.output_dir,
                run_date: args.run_date,
                progress,
                handle_ctrl_c: false,
                stop,
            };
            let summary = pipeline::run(&spec, &opts).await.map_err(remote_error)?;
            event(
                progress,
                "run_done",
                &format!(
                    "pipeline `{}` done: {} stage(s) written under {}",
                    spec.name,
                    summary.stages.len(),
                    summary.output_dir.display()
                ),
                &[
                    ("pipeline", Value::from(spec.name.as_str())),
                    (
                        "output_dir",
                        Value::from(summary.output_dir.display().to_string()),
                    ),
                    (
                        "stages",
                        Value::from(
                            summary
                                .stages
                                .iter()
                                .map(|s| s.name.clone())
                                .collect::<Vec<_>>(),
                        ),
                    ),
                ],
            );
            Ok(())
        }
        Command::Sql(args) => {
            let dir = match (args.dir, args.pipeline) {
                (Some(dir), _) => Some(dir),
                (None, Some(file)) => Some(PipelineSpec::load(&file, &[])?.output_dir),
                (None, None) => None,
            };
            let format = match args.format {
                Format::Table => OutputFormat::Table,
                Format::Csv => OutputFormat::Csv,
                Format::Json => OutputFormat::Json,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match args.cluster {
                None => run_query(dir.as_deref(), &args.query, format, &mut out).await,
                Some(url) => {
                    let ctx = cluster_context(&url).await?;
                    run_query_on(&ctx, dir.as_deref(), &args.query, format, &mut out)
                        .await
                        .map_err(remote_error)
                }
            }
        }
        Command::Scheduler(args) => start_scheduler(args, progress).await,
        Command::Executor(args) => start_executor(args, progress).await,
        Command::Generate(kind) => {
            let files = match kind {
                GenerateKind::LowRank(a) => {
                    let rows = LowRank {
                        rows: a.rows,
                        dim: a.dim,
                        gap: a.gap,
                        rank: a.rank,
                        noise: a.noise,
                        seed: a.table.seed,
                    }
                    .rows()?;
                    vec![embeddings(rows, a.table, progress).await?]
                }
                GenerateKind::HeavyRow(a) => {
                    let rows = HeavyRow {
                        dim: a.dim,
                        gap: a.gap,
                        per_direction: a.per_direction,
                        seed: a.table.seed,
                    }
                    .rows()?;
                    vec![embeddings(rows, a.table, progress).await?]
                }
                GenerateKind::HeavyVsBulk(a) => {
                    let rows = HeavyVsBulk {
                        rows: a.rows,
                        dim: a.dim,
                        heavy_rows: a.heavy_rows,
                        heavy_mass: a.heavy_mass,
                        bulk_gap: a.bulk_gap,
                        seed: a.table.seed,
                    }
                    .rows()?;
                    vec![embeddings(rows, a.table, progress).await?]
                }
                GenerateKind::Classification(a) => {
                    let spec = Classification {
                        rows: a.rows,
                        dim: a.dim,
                        classes: a.classes,
                        noise: a.noise,
                        separation: a.separation,
                        seed: a.seed,
                    };
                    vec![blocking(move || spec.write(&a.out, progress)).await?]
                }
                GenerateKind::Logits(a) => {
                    let spec = Logits {
                        rows: a.rows,
                        classes: a.classes,
                        runs: a.runs,
                        noise: a.noise,
                        sigma: a.sigma,
                        seed: a.seed,
                    };
                    blocking(move || spec.write(&a.out, progress)).await?
                }
                GenerateKind::Corpus(a) => {
                    let spec = Corpus {
                        tables: a.tables,
                        rows: a.rows,
                        min_overlap: a.min_overlap,
                        outliers: a.outliers,
                        seed: a.seed,
                    };
                    blocking(move || spec.write(&a.out, progress)).await?
                }
                GenerateKind::SparsePair(a) => {
                    let spec = SparsePair {
                        rows: a.rows,
                        dim: a.dim,
                        dim_right: a.dim_right,
                        density: a.density,
                        overlap: a.overlap,
                        outliers: a.outliers,
                        seed: a.seed,
                    };
                    blocking(move || spec.write(&a.out, progress)).await?
                }
            };
            report(progress, &files);
            Ok(())
        }
    }
}
