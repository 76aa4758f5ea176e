//! Running a validated pipeline.
//!
//! 1. Register the sources and check every stage against its input's schema (columns exist,
//!    types fit) — all before any row is read.
//! 2. Scan each input once, feeding every stage that reads it (one scan, several stages),
//!    projecting only the columns those stages need.
//! 3. Write each stage's tables to a temporary directory; later stages of the run read them
//!    there. Only when every stage has succeeded are the outputs moved into place, so a
//!    failed run changes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::stats::Precision;
use datafusion::dataframe::DataFrame;
use datafusion::physical_plan::{execute_stream, StatisticsArgs, StatisticsContext};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::StreamExt;
use tokio::sync::Notify;

use super::sink::StageOutput;
use super::source::{register_sources, session, source_frame};
use super::spec::{Input, OpSpec, PipelineSpec, StageSpec};
use crate::operators::{Operator, TopEigenvectorOp};
use crate::progress::{Progress, ProgressMode};
use crate::{Error, Result};

/// Options of `sketchpipe run` that are not in the pipeline file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `[pipeline] output_dir`.
    pub output_dir: Option<PathBuf>,
    /// Writes into `STAGE/date=YYYY-MM-DD/` partitions.
    pub run_date: Option<NaiveDate>,
    pub progress: ProgressMode,
    /// Turn Ctrl-C into a clean cancellation (temporary files removed, outputs untouched).
    /// The CLI sets it; a library caller usually handles signals itself.
    pub handle_ctrl_c: bool,
}

/// What a run wrote.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub output_dir: PathBuf,
    pub stages: Vec<StageSummary>,
}

/// One stage of a finished run.
#[derive(Debug, Clone)]
pub struct StageSummary {
    pub name: String,
    /// The committed output directory.
    pub dir: PathBuf,
    pub tables: Vec<String>,
    /// Input rows read (valid or not).
    pub rows_read: u64,
}

/// All stages reading one input, scanned together.
struct Group<'a> {
    input: Input,
    stages: Vec<&'a StageSpec>,
    /// Union of the stages' columns, in first-use order: the scan's projection.
    columns: Vec<String>,
}

/// Runs `spec`; see the module docs.
pub async fn run(spec: &PipelineSpec, opts: &RunOptions) -> Result<RunSummary> {
    let ctx = session();
    register_sources(&ctx, spec).await?;
    let output_dir = opts
        .output_dir
        .clone()
        .unwrap_or_else(|| spec.output_dir.clone());
    let groups = group_by_input(spec);

    // Phase 1: every stage checked against its input schema before anything is scanned.
    let mut ops: BTreeMap<String, Box<dyn Operator>> = BTreeMap::new();
    for group in &groups {
        let schema = input_schema(&ctx, spec, &group.input).await?;
        check_columns(spec, group, &schema)?;
        let projected = schema.project(
            &group
                .columns
                .iter()
                .map(|c| schema.index_of(c).expect("checked"))
                .collect::<Vec<_>>(),
        )?;
        for stage in &group.stages {
            let op = build_operator(&stage.op, &projected).map_err(|e| {
                e.context(format!("{}: [stages.{}]", spec.file.display(), stage.name))
            })?;
            ops.insert(stage.name.clone(), op);
        }
    }

    // Phase 2: scan each input once, in dependency order; outputs stay uncommitted.
    let mut pending: Vec<(StageOutput, StageSummary)> = Vec::new();
    let mut produced: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    let interrupt = Interrupt::new(opts.handle_ctrl_c);
    for group in &groups {
        let frame = match &group.input {
            Input::Source(name) => source_frame(&ctx, spec, name).await?,
            Input::StageTable { stage, table } => {
                let path = &produced[&(stage.clone(), table.clone())];
                ctx.read_parquet(
                    path.to_string_lossy().as_ref(),
                    ParquetReadOptions::default(),
                )
                .await?
            }
        };
        let frame =
            frame.select_columns(&group.columns.iter().map(String::as_str).collect::<Vec<_>>())?;
        let mut group_ops: Vec<(&StageSpec, Box<dyn Operator>)> = group
            .stages
            .iter()
            .map(|s| (*s, ops.remove(&s.name).expect("built in phase 1")))
            .collect();
        scan(
            &ctx,
            spec,
            group,
            frame,
            &mut group_ops,
            opts.progress,
            &interrupt,
        )
        .await?;

        for (stage, op) in group_ops {
            let rows_read = op.rows_read();
            let stage_ctx = || {
                format!(
                    "stage `{}` ({})",
                    stage.name,
                    describe_input(spec, &stage.input)
                )
            };
            let tables = op.finish().map_err(|e| e.context(stage_ctx()))?;
            let output = StageOutput::create(&output_dir, &stage.name, opts.run_date)?;
            for table in &tables {
                output.write_table(table, metadata(spec, stage, table.name, rows_read, opts))?;
                produced.insert(
                    (stage.name.clone(), table.name.to_string()),
                    output.tmp_table_path(table.name),
                );
            }
            let summary = StageSummary {
                name: stage.name.clone(),
                dir: output.final_dir().to_path_buf(),
                tables: tables.iter().map(|t| t.name.to_string()).collect(),
                rows_read,
            };
            pending.push((output, summary));
        }
    }

    // Phase 3: every stage succeeded; move the outputs into place.
    let mut stages = Vec::with_capacity(pending.len());
    for (output, summary) in pending {
        output.commit()?;
        if opts.progress != ProgressMode::Quiet {
            eprintln!(
                "sketchpipe: stage `{}`: wrote {} ({})",
                summary.name,
                summary.dir.display(),
                summary.tables.join(", ")
            );
        }
        stages.push(summary);
    }
    Ok(RunSummary { output_dir, stages })
}

/// Groups stages by input, ordered so that a group comes after the stages it reads from
/// (the spec's stages are already in dependency order).
fn group_by_input(spec: &PipelineSpec) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for stage in &spec.stages {
        let group = match groups.iter_mut().find(|g| g.input == stage.input) {
            Some(g) => g,
            None => {
                groups.push(Group {
                    input: stage.input.clone(),
                    stages: Vec::new(),
                    columns: Vec::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group.stages.push(stage);
        for c in stage.op.columns() {
            if !group.columns.contains(c) {
                group.columns.push(c.clone());
            }
        }
    }
    // A group joined by a later stage may now sit before its producer: order by producer.
    let position = |g: &Group<'_>| match &g.input {
        Input::Source(_) => 0,
        Input::StageTable { stage, .. } => {
            1 + spec
                .stages
                .iter()
                .position(|s| &s.name == stage)
                .unwrap_or(0)
        }
    };
    groups.sort_by_key(position);
    groups
}

async fn input_schema(ctx: &SessionContext, spec: &PipelineSpec, input: &Input) -> Result<Schema> {
    match input {
        Input::Source(name) => {
            let frame = source_frame(ctx, spec, name).await?;
            Ok(frame.schema().as_arrow().clone())
        }
        Input::StageTable { stage, table } => {
            let producer = spec
                .stages
                .iter()
                .find(|s| &s.name == stage)
                .expect("validated");
            let decl = producer
                .op
                .tables()
                .into_iter()
                .find(|t| t.name == table)
                .expect("validated");
            Ok(decl.schema.as_ref().clone())
        }
    }
}

fn check_columns(spec: &PipelineSpec, group: &Group<'_>, schema: &Schema) -> Result<()> {
    for stage in &group.stages {
        for column in stage.op.columns() {
            if schema.index_of(column).is_err() {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(Error::Config(format!(
                    "{}: [stages.{}] key `columns`: unknown column `{column}` in {} (it has: {})",
                    spec.file.display(),
                    stage.name,
                    describe_input(spec, &group.input),
                    have.join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn build_operator(op: &OpSpec, schema: &Schema) -> Result<Box<dyn Operator>> {
    Ok(match op {
        OpSpec::TopEigenvector(p) => Box::new(TopEigenvectorOp::new(p.clone(), schema)?),
    })
}

fn describe_input(spec: &PipelineSpec, input: &Input) -> String {
    match input {
        Input::Source(name) => format!("source `{name}`: {}", spec.sources[name].describe()),
        other => other.to_string(),
    }
}

/// Streams one input through the group's operators, with progress and Ctrl-C handling.
async fn scan(
    ctx: &SessionContext,
    spec: &PipelineSpec,
    group: &Group<'_>,
    frame: DataFrame,
    ops: &mut [(&StageSpec, Box<dyn Operator>)],
    mode: ProgressMode,
    interrupt: &Interrupt,
) -> Result<()> {
    let plan = frame.create_physical_plan().await?;
    // Parquet footers give an exact row count for free; other sources give none (no ETA).
    let total = StatisticsContext::new()
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .ok()
        .and_then(|s| match s.num_rows {
            // Estimates (after a filter, say) would show a wrong 100 %: only exact counts.
            Precision::Exact(n) => Some(n as u64),
            _ => None,
        });
    let stream = execute_stream(plan, ctx.task_ctx())?;
    tokio::pin!(stream);
    let label = match &group.input {
        Input::Source(name) => format!("source `{name}`"),
        other => other.to_string(),
    };
    let mut progress = Progress::new(label, total, mode);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = interrupt.wait() => return Err(Error::Interrupted),
        };
        let Some(batch) = next else { break };
        let batch = batch.map_err(|e| {
            Error::Input(format!(
                "reading {}: {e}",
                describe_input(spec, &group.input)
            ))
        })?;
        for (stage, op) in ops.iter_mut() {
            op.update(&batch).map_err(|e| {
                e.context(format!(
                    "stage `{}` ({})",
                    stage.name,
                    describe_input(spec, &group.input)
                ))
            })?;
        }
        progress.inc(
            batch.num_rows() as u64,
            batch.get_array_memory_size() as u64,
        );
    }
    progress.finish();
    Ok(())
}

/// The key-value metadata of every output table: what made it, from what, with which seed.
fn metadata(
    spec: &PipelineSpec,
    stage: &StageSpec,
    table: &str,
    rows_read: u64,
    opts: &RunOptions,
) -> Vec<(String, String)> {
    let input_path = match &stage.input {
        Input::Source(name) => spec.sources[name].describe(),
        Input::StageTable { stage, table } => format!("{stage}.{table}"),
    };
    let mut kv = vec![
        ("sketchpipe.version", crate::VERSION.to_string()),
        ("sketchpipe.pipeline", spec.name.clone()),
        ("sketchpipe.pipeline_file", spec.file.display().to_string()),
        ("sketchpipe.stage", stage.name.clone()),
        ("sketchpipe.table", table.to_string()),
        ("sketchpipe.op", stage.op.name().to_string()),
        (
            "sketchpipe.params",
            toml::to_string(&stage.params).unwrap_or_default(),
        ),
        ("sketchpipe.input.path", input_path),
        ("sketchpipe.input.rows", rows_read.to_string()),
    ];
    if let Some(seed) = stage.op.seed() {
        kv.push(("sketchpipe.seed", seed.to_string()));
    }
    if let Some(d) = opts.run_date {
        kv.push(("sketchpipe.run_date", d.to_string()));
    }
    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Ctrl-C as a future the scan loop can select on. A signal that arrives between scans is
/// remembered (`Notify` keeps one permit) and stops the next scan.
struct Interrupt {
    notify: Arc<Notify>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Interrupt {
    fn new(enabled: bool) -> Self {
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

    async fn wait(&self) {
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
