//! Running a validated pipeline.
//!
//! 1. Register the sources and check every stage against its input's schema (columns exist,
//!    types fit) — all before any row is read.
//! 2. Scan each input once (`group`), feeding every stage that reads it (one scan, several
//!    stages), projecting only the columns those stages need. Stages that need more passes
//!    (an exact `‖A‖_F²` first, a `verify` pass after) get them, still shared between
//!    stages; stages with `shuffle = true` read the input through an out-of-core shuffle (a
//!    spill pass, which also serves any pass that does not care about order, then shuffled
//!    read-backs).
//! 3. Write each stage's tables to a temporary directory; later stages of the run read them
//!    there. Only when every stage has succeeded are the outputs moved into place, so a
//!    failed run changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::Schema;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use tokio::sync::Notify;

use super::group::{group_by_input, run_group, Group};
use super::incremental::{self, Increment};
use super::lock::OutputLock;
use super::remote;
use super::sink::{ScratchDir, StageOutput};
use super::source::{
    files_frame, register_sources, session_with_memory, source_files, source_frame,
};
use super::spec::SketchRef;
use super::spec::{Input, OpSpec, PipelineSpec, StageSpec};
use crate::operators::coordinated_sketch::{
    CoordinatedSketchOp, CoordinatedSketchParams, DuplicateKeys, Header, StoredSketch,
};
use crate::operators::prune_scores::{self, masks::ScoresOutput, ProxyScoresOp};
use crate::operators::{Operator, OutputTable, TopEigenvectorOp};
use crate::progress::{event, ProgressMode, Value};
use crate::{Error, Result};

/// Options of `sketchpipe run` that are not in the pipeline file.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Overrides `[pipeline] output_dir`.
    pub output_dir: Option<PathBuf>,
    /// Writes into `STAGE/date=YYYY-MM-DD/` partitions.
    pub run_date: Option<NaiveDate>,
    pub progress: ProgressMode,
    /// Turn Ctrl-C into a clean cancellation (temporary files removed, outputs untouched).
    /// The CLI sets it; a library caller usually handles signals itself.
    pub handle_ctrl_c: bool,
    /// Run the mergeable stages as SQL aggregates on this session (a Ballista cluster:
    /// `run --cluster`); see [`super::remote`].
    pub cluster: Option<SessionContext>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("output_dir", &self.output_dir)
            .field("run_date", &self.run_date)
            .field("progress", &self.progress)
            .field("handle_ctrl_c", &self.handle_ctrl_c)
            .field("cluster", &self.cluster.as_ref().map(|c| c.session_id()))
            .finish()
    }
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

/// Runs `spec`; see the module docs.
pub async fn run(spec: &PipelineSpec, opts: &RunOptions) -> Result<RunSummary> {
    let ctx = session_with_memory(spec.memory)?;
    register_sources(&ctx, spec).await?;
    let output_dir = opts
        .output_dir
        .clone()
        .unwrap_or_else(|| spec.output_dir.clone());
    let tmp_root = output_dir.join(super::sink::TMP_DIR);
    let groups = group_by_input(spec);

    // Phase 1: every stage checked against its input schema before anything is scanned or
    // written.
    let mut checked: Vec<(&StageSpec, Schema, bool)> = Vec::new();
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
            let where_ = || format!("{}: [stages.{}]", spec.file.display(), stage.name);
            if let OpSpec::CoordinatedSketch(p) = &stage.op {
                p.check_schema(&projected)
                    .map_err(|e| e.context(where_()))?;
            }
            if let OpSpec::PruneScores(p) = &stage.op {
                p.check_schema(&projected)
                    .map_err(|e| e.context(where_()))?;
            }
            checked.push((stage, projected.clone(), group.query));
        }
    }

    // One run per output directory; a dead run's leftovers are cleared under the lock.
    let lock = OutputLock::acquire(&output_dir, &spec.file.display().to_string())?;
    if let Some(dead) = lock.stale() {
        event(
            opts.progress,
            "stale_lock_recovered",
            &format!(
                "recovered the lock of {} left by a run that did not finish ({dead}); clearing \
                 its temporary files",
                output_dir.display()
            ),
            &[("previous_holder", Value::from(dead))],
        );
    }
    if tmp_root.exists() {
        std::fs::remove_dir_all(&tmp_root).map_err(|e| {
            Error::io(
                format!(
                    "cannot clear leftover temporary files {}",
                    tmp_root.display()
                ),
                e,
            )
        })?;
    }
    // Incremental stages: which files are new, and the output to resume from.
    let mut increments: BTreeMap<String, Increment> = BTreeMap::new();
    for stage in spec.stages.iter().filter(|s| s.op.incremental()) {
        let Input::Source(source) = &stage.input else {
            unreachable!("checked with the spec: incremental stages read a path source")
        };
        let files = source_files(&ctx, spec, source).await?;
        let inc = incremental::plan(
            &output_dir,
            &stage.name,
            opts.run_date,
            &stage.params,
            files,
        )?;
        let message = match (&inc.previous, &inc.full_because) {
            (Some(prev), _) => format!(
                "stage `{}`: incremental: {} new file(s), {} already merged into {}",
                stage.name,
                inc.new.len(),
                inc.consumed.len(),
                prev.display()
            ),
            (None, why) => format!(
                "stage `{}`: incremental: reading all {} file(s) ({})",
                stage.name,
                inc.new.len(),
                why.as_deref().unwrap_or("first run")
            ),
        };
        event(
            opts.progress,
            "incremental",
            &message,
            &[
                ("stage", Value::from(stage.name.as_str())),
                ("new_files", Value::from(inc.new.len())),
                ("consumed_files", Value::from(inc.consumed.len())),
                ("resumed", Value::from(inc.previous.is_some())),
            ],
        );
        increments.insert(stage.name.clone(), inc);
    }
    // Stages that run on the cluster, with their input schema; the others scan here.
    let mut on_cluster: Vec<(&StageSpec, Schema)> = Vec::new();
    // Scratch space of stages with intermediate tables, removed when the run ends.
    let mut scratch: BTreeMap<String, ScratchDir> = BTreeMap::new();
    let mut ops: BTreeMap<String, Box<dyn Operator>> = BTreeMap::new();
    for (stage, projected, query) in checked {
        if opts.cluster.is_some() && remote::eligible(stage) {
            on_cluster.push((stage, projected));
            continue;
        }
        if matches!(stage.op, OpSpec::PruneScores(_)) {
            scratch.insert(stage.name.clone(), ScratchDir::new(&tmp_root, "prune-")?);
        }
        if query {
            continue;
        }
        let by_id = scratch.get(&stage.name).map(|d| d.path().join(BY_ID));
        let previous = increments
            .get(&stage.name)
            .and_then(|i| i.previous.as_deref());
        let op = build_operator(&stage.op, &projected, by_id.as_deref(), previous)
            .map_err(|e| e.context(format!("{}: [stages.{}]", spec.file.display(), stage.name)))?;
        ops.insert(stage.name.clone(), op);
    }

    // Phase 2: scan each input once, in dependency order; outputs stay uncommitted. Stages on
    // a cluster first: they read sources only.
    let mut pending: Vec<(StageOutput, StageSummary)> = Vec::new();
    let mut produced: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    let interrupt = Interrupt::new(opts.handle_ctrl_c);
    if let (Some(cluster), false) = (&opts.cluster, on_cluster.is_empty()) {
        register_sources(cluster, spec).await?;
        for (stage, schema) in &on_cluster {
            event(
                opts.progress,
                "stage_on_cluster",
                &format!(
                    "stage `{}`: running on the cluster as an SQL aggregate",
                    stage.name
                ),
                &[("stage", Value::from(stage.name.as_str()))],
            );
            let stage_ctx = || stage_context(spec, stage);
            let work = remote::run_stage(cluster, spec, stage, schema);
            let tables = interruptible(&interrupt, work)
                .await
                .map_err(|e| e.context(stage_ctx()))?;
            write_stage(
                spec,
                stage,
                opts,
                &output_dir,
                &interrupt,
                tables,
                None,
                0,
                &mut produced,
                &mut pending,
            )
            .await?;
        }
    }
    let remote_names: Vec<&str> = on_cluster.iter().map(|(s, _)| s.name.as_str()).collect();
    let mut groups = groups;
    for g in &mut groups {
        g.stages
            .retain(|s| !remote_names.contains(&s.name.as_str()));
    }
    groups.retain(|g| !g.stages.is_empty());
    for group in &groups {
        if let Input::Sketches(refs) = &group.input {
            let stage = group.stages[0];
            let read = |r: &SketchRef| {
                let path = match r {
                    SketchRef::Stage(s) => produced[&(s.clone(), "sketch".to_string())].clone(),
                    SketchRef::Dir(d) if d.is_dir() => d.join("sketch.parquet"),
                    SketchRef::Dir(d) => d.clone(),
                };
                read_sketch(&path, r).map(|(s, h)| (s, h, r.to_string()))
            };
            let sketches = refs.iter().map(read).collect::<Result<Vec<_>>>();
            let tables = sketches
                .and_then(|mut sketches| match &stage.op {
                    OpSpec::SketchMerge => {
                        let (merged, header) = crate::operators::sketch_merge::merge(sketches)?;
                        crate::operators::coordinated_sketch::output_tables(&merged, &header)
                    }
                    op => {
                        let (rs, rh, rn) = sketches.pop().expect("two sketches");
                        let (ls, lh, ln) = sketches.pop().expect("two sketches");
                        let names = (ln.as_str(), rn.as_str());
                        match op {
                            OpSpec::SketchRegression(p) => {
                                crate::operators::sketch_regression::regress(
                                    p,
                                    (ls, lh),
                                    (rs, rh),
                                    names,
                                )
                            }
                            _ => {
                                crate::operators::sketch_product::product((ls, lh), (rs, rh), names)
                            }
                        }
                    }
                })
                .map_err(|e| e.context(stage_context(spec, stage)))?;
            write_stage(
                spec,
                stage,
                opts,
                &output_dir,
                &interrupt,
                tables,
                None,
                0,
                &mut produced,
                &mut pending,
            )
            .await?;
            continue;
        }
        let increment = group.stages.first().and_then(|s| increments.get(&s.name));
        // With `--cluster`, a source's scan runs there (stages that were not run as cluster
        // aggregates above still have their input decoded by the executors).
        let cluster = match (&opts.cluster, &group.input, increment) {
            (Some(c), Input::Source(name), None) => {
                let stages: Vec<&str> = group.stages.iter().map(|s| s.name.as_str()).collect();
                let how = match group.query {
                    true => "scored and averaged by id on the cluster",
                    false => "read on the cluster, streamed here",
                };
                event(
                    opts.progress,
                    "scan_on_cluster",
                    &format!("source `{name}`: {how} for stage(s) {}", stages.join(", ")),
                    &[("source", Value::from(name.as_str()))],
                );
                Some(c)
            }
            _ => None,
        };
        let frame = match &group.input {
            Input::Source(name) => match increment {
                Some(inc) if inc.new.is_empty() => None,
                Some(inc) => Some(files_frame(&ctx, spec, name, &inc.new).await?),
                None => Some(source_frame(&ctx, spec, name).await?),
            },
            Input::StageTable { stage, table } => {
                let path = &produced[&(stage.clone(), table.clone())];
                Some(
                    ctx.read_parquet(
                        path.to_string_lossy().as_ref(),
                        ParquetReadOptions::default(),
                    )
                    .await?,
                )
            }
            Input::Sketches(_) => unreachable!("handled above"),
        };
        let mut group_ops: Vec<(&StageSpec, Box<dyn Operator>)>;
        if let Some(frame) = frame {
            let frame = frame
                .select_columns(&group.columns.iter().map(String::as_str).collect::<Vec<_>>())?;
            let frame = match group.aggregate {
                Some(agg) => aggregate_duplicates(frame, agg)?,
                None => frame,
            };
            // Each key column of the group is checked once, however many sketch stages use it,
            // during the group's first scan.
            let mut key_checks: Vec<(&StageSpec, &str)> = Vec::new();
            for stage in &group.stages {
                if let OpSpec::CoordinatedSketch(p) = &stage.op {
                    if p.duplicate_keys == DuplicateKeys::Error
                        && !key_checks.iter().any(|(_, k)| *k == p.key)
                    {
                        key_checks.push((stage, &p.key));
                    }
                }
            }
            if group.query {
                let stage = group.stages[0];
                let OpSpec::PruneScores(p) = &stage.op else {
                    unreachable!("the only query stage")
                };
                let stage_ctx = || stage_context(spec, stage);
                event(
                    opts.progress,
                    "stage_started",
                    &format!(
                        "stage `{}`: scoring {} and averaging by id",
                        stage.name,
                        describe_input(spec, &stage.input)
                    ),
                    &[("stage", Value::from(stage.name.as_str()))],
                );
                let by_id = scratch[&stage.name].path().join(BY_ID);
                let work = async {
                    // On a cluster the scoring and the by-id group-by run there; the per-id
                    // rows come back into the local scratch file.
                    let on = cluster.unwrap_or(&ctx);
                    let runs = prune_scores::runs::aggregate(on, frame, p, &by_id).await?;
                    prune_scores::masks::finish(&ctx, &by_id, p, runs).await
                };
                let scores = interruptible(&interrupt, work)
                    .await
                    .map_err(|e| e.context(stage_ctx()))?;
                let rows_read = scores.rows;
                write_stage(
                    spec,
                    stage,
                    opts,
                    &output_dir,
                    &interrupt,
                    Vec::new(),
                    Some(scores),
                    rows_read,
                    &mut produced,
                    &mut pending,
                )
                .await?;
                continue;
            }
            group_ops = group
                .stages
                .iter()
                .map(|s| (*s, ops.remove(&s.name).expect("built in phase 1")))
                .collect();
            run_group(
                &ctx,
                cluster,
                spec,
                group,
                frame,
                &mut group_ops,
                &key_checks,
                opts.progress,
                &interrupt,
                &tmp_root,
            )
            .await?;
        } else {
            // An incremental stage with no new files: its previous state is the answer.
            group_ops = group
                .stages
                .iter()
                .map(|s| (*s, ops.remove(&s.name).expect("built in phase 1")))
                .collect();
        }

        for (stage, op) in group_ops {
            let rows_read = op.rows_read();
            let stage_ctx = || stage_context(spec, stage);
            let mut tables = op.finish().map_err(|e| e.context(stage_ctx()))?;
            if let Some(inc) = increments.get(&stage.name) {
                tables.push(OutputTable::new(incremental::MANIFEST, inc.manifest()?));
            }
            let scores = match &stage.op {
                OpSpec::PruneScores(p) => {
                    let by_id = scratch[&stage.name].path().join(BY_ID);
                    let agg = prune_scores::runs::Aggregated {
                        runs: p.proxy().map_or(1, |x| x.seeds as u64),
                        spilled_bytes: 0,
                    };
                    let work = prune_scores::masks::finish(&ctx, &by_id, p, agg);
                    Some(
                        interruptible(&interrupt, work)
                            .await
                            .map_err(|e| e.context(stage_ctx()))?,
                    )
                }
                _ => None,
            };
            write_stage(
                spec,
                stage,
                opts,
                &output_dir,
                &interrupt,
                tables,
                scores,
                rows_read,
                &mut produced,
                &mut pending,
            )
            .await?;
        }
    }

    // Phase 3: every stage succeeded; move the outputs into place.
    let mut stages = Vec::with_capacity(pending.len());
    for (output, summary) in pending {
        output.commit()?;
        event(
            opts.progress,
            "stage_written",
            &format!(
                "stage `{}`: wrote {} ({})",
                summary.name,
                summary.dir.display(),
                summary.tables.join(", ")
            ),
            &[
                ("stage", Value::from(summary.name.as_str())),
                ("dir", Value::from(summary.dir.display().to_string())),
                ("tables", Value::from(summary.tables.clone())),
                ("rows_read", Value::from(summary.rows_read)),
            ],
        );
        stages.push(summary);
    }
    Ok(RunSummary { output_dir, stages })
}

fn input_schema<'a>(
    ctx: &'a SessionContext,
    spec: &'a PipelineSpec,
    input: &'a Input,
) -> futures::future::BoxFuture<'a, Result<Schema>> {
    Box::pin(async move {
        match input {
            Input::Source(name) => {
                let frame = source_frame(ctx, spec, name).await?;
                Ok(frame.schema().as_arrow().clone())
            }
            Input::Sketches(_) => Ok(Schema::empty()),
            Input::StageTable { stage, table } => {
                let producer = spec
                    .stages
                    .iter()
                    .find(|s| &s.name == stage)
                    .expect("validated");
                let producer_input = input_schema(ctx, spec, &producer.input).await?;
                let decl = producer
                    .op
                    .tables(&producer_input)?
                    .into_iter()
                    .find(|t| t.name == table)
                    .expect("validated");
                Ok(decl.schema.as_ref().clone())
            }
        }
    })
}

fn check_columns(spec: &PipelineSpec, group: &Group<'_>, schema: &Schema) -> Result<()> {
    for stage in &group.stages {
        for column in stage.op.columns() {
            if schema.index_of(column).is_err() {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(Error::Config(format!(
                    "{}: [stages.{}] key `{}`: unknown column `{column}` in {} (it has: {})",
                    spec.file.display(),
                    stage.name,
                    stage.op.column_key(column),
                    describe_input(spec, &group.input),
                    have.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// The per-id scratch table of a `prune_scores` stage.
const BY_ID: &str = "by_id.parquet";

/// The operator of a scan stage; `previous` is the output an incremental stage resumes from.
fn build_operator(
    op: &OpSpec,
    schema: &Schema,
    by_id: Option<&Path>,
    previous: Option<&Path>,
) -> Result<Box<dyn Operator>> {
    Ok(match op {
        OpSpec::TopEigenvector(p) => {
            let mut op = TopEigenvectorOp::new(p.clone(), schema)?;
            if let Some(dir) = previous {
                op.resume(dir)?;
            }
            Box::new(op)
        }
        OpSpec::PruneScores(p) => Box::new(ProxyScoresOp::new(
            p.clone(),
            schema,
            by_id.expect("prune stages have scratch space"),
        )?),
        OpSpec::CoordinatedSketch(p) => {
            let mut op = CoordinatedSketchOp::new(p.clone(), schema)?;
            if let Some(dir) = previous {
                op.resume(dir)?;
            }
            Box::new(op)
        }
        OpSpec::SketchProduct | OpSpec::SketchMerge | OpSpec::SketchRegression(_) => {
            unreachable!("a query stage, not a scan operator")
        }
    })
}

/// Reads a sketch for `sketch_product`, naming where it came from on failure.
fn read_sketch(path: &Path, from: &SketchRef) -> Result<(StoredSketch, Header)> {
    if !path.exists() {
        return Err(Error::Input(format!(
            "{from}: no sketch at {} (a coordinated_sketch stage's output directory, or its \
             sketch.parquet)",
            path.display()
        )));
    }
    crate::operators::coordinated_sketch::table::read(path)
}

/// Adds up (or averages) the value columns of rows sharing a key: a DataFusion group-by,
/// which spills under the memory limit.
fn aggregate_duplicates(frame: DataFrame, p: &CoordinatedSketchParams) -> Result<DataFrame> {
    use datafusion::functions_aggregate::expr_fn::{avg, sum};
    use datafusion::prelude::col;
    let aggr = p
        .columns
        .iter()
        .map(|c| {
            let e = col(datafusion::common::Column::from_name(c));
            match p.duplicate_keys {
                DuplicateKeys::Mean => avg(e),
                _ => sum(e),
            }
            .alias(c)
        })
        .collect::<Vec<_>>();
    frame
        .aggregate(
            vec![col(datafusion::common::Column::from_name(&p.key))],
            aggr,
        )
        .map_err(|e| {
            Error::Config(format!(
                "duplicate_keys = \"sum\" or \"mean\" adds up numeric columns by key: {e}"
            ))
        })
}

/// Runs `work` unless Ctrl-C comes first.
async fn interruptible<T>(
    interrupt: &Interrupt,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = work => r,
        _ = interrupt.wait() => Err(Error::Interrupted),
    }
}

/// Writes a finished stage's tables (in-memory ones, then a `prune_scores` stage's, the large
/// `scores` streamed from its query) uncommitted, records where later stages find them, and
/// queues the output for the commit; errors name the stage.
#[allow(clippy::too_many_arguments)]
async fn write_stage(
    spec: &PipelineSpec,
    stage: &StageSpec,
    opts: &RunOptions,
    output_dir: &Path,
    interrupt: &Interrupt,
    tables: Vec<OutputTable>,
    scores: Option<ScoresOutput>,
    rows_read: u64,
    produced: &mut BTreeMap<(String, String), PathBuf>,
    pending: &mut Vec<(StageOutput, StageSummary)>,
) -> Result<()> {
    let written = write_tables(
        spec, stage, opts, output_dir, interrupt, tables, scores, rows_read, produced,
    )
    .await
    .map_err(|e| e.context(stage_context(spec, stage)))?;
    pending.push(written);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn write_tables(
    spec: &PipelineSpec,
    stage: &StageSpec,
    opts: &RunOptions,
    output_dir: &Path,
    interrupt: &Interrupt,
    mut tables: Vec<OutputTable>,
    scores: Option<ScoresOutput>,
    rows_read: u64,
    produced: &mut BTreeMap<(String, String), PathBuf>,
) -> Result<(StageOutput, StageSummary)> {
    let output = StageOutput::create(output_dir, &stage.name, opts.run_date)?;
    let mut names: Vec<String> = Vec::new();
    if let Some(s) = scores {
        let meta = metadata(spec, stage, "scores", rows_read, opts);
        interruptible(interrupt, output.write_frame("scores", s.scores, meta)).await?;
        names.push("scores".into());
        tables.insert(0, OutputTable::new("stats", s.stats));
    }
    for table in &tables {
        let mut meta = metadata(spec, stage, table.name, rows_read, opts);
        meta.extend(table.metadata.iter().cloned());
        output.write_table(table, meta)?;
        names.push(table.name.to_string());
    }
    for name in &names {
        produced.insert(
            (stage.name.clone(), name.clone()),
            output.tmp_table_path(name),
        );
    }
    let summary = StageSummary {
        name: stage.name.clone(),
        dir: output.final_dir().to_path_buf(),
        tables: names,
        rows_read,
    };
    Ok((output, summary))
}

/// "stage `NAME` (its input)", the prefix of a stage's errors.
pub(super) fn stage_context(spec: &PipelineSpec, stage: &StageSpec) -> String {
    format!(
        "stage `{}` ({})",
        stage.name,
        describe_input(spec, &stage.input)
    )
}

pub(super) fn describe_input(spec: &PipelineSpec, input: &Input) -> String {
    match input {
        Input::Source(name) => format!("source `{name}`: {}", spec.sources[name].describe()),
        other => other.to_string(),
    }
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
        sketches @ Input::Sketches(_) => sketches.to_string(),
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
pub(super) struct Interrupt {
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

    pub(super) async fn wait(&self) {
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
