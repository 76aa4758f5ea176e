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
use std::time::Instant;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::Schema;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use super::group::{group_by_input, Group, GroupScan};
use super::incremental::{self, Increment};
pub use super::interrupt::Stop;
use super::interrupt::{interruptible, Interrupt};
use super::lock::OutputLock;
use super::remote;
use super::sink::ScratchDir;
use super::source::{
    file_tables_frame, files_frame, register_sources, session_with_memory, source_files,
    source_frame,
};
use super::spec::{Input, OutputRef, PipelineSpec, SourceSpec, StageSpec};
use super::writer::{Produced, StageWriter};
pub use super::writer::{RunSummary, StageSummary};
use crate::operators::coordinated_sketch::table;
use crate::operators::op::{Execution, StageContext, StageTables};
use crate::operators::{Operator, OutputTable};
use crate::progress::{event, ProgressMode, Value};
use crate::sketch::stored::{Header, StoredSketch};
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
    /// Stops the run when requested, as a stopping signal would (for library callers that
    /// handle signals themselves).
    pub stop: Option<Arc<Stop>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("output_dir", &self.output_dir)
            .field("run_date", &self.run_date)
            .field("progress", &self.progress)
            .field("handle_ctrl_c", &self.handle_ctrl_c)
            .field("cluster", &self.cluster.as_ref().map(|c| c.session_id()))
            .field("stop", &self.stop)
            .finish()
    }
}

/// The Ballista scheduler and executors are not given the object-store clients of
/// [`super::stores`]: a `--cluster` run of a pipeline with an object-store source is refused
/// before anything starts, rather than failing on the executors.
fn refuse_remote_sources_on_a_cluster(spec: &PipelineSpec) -> Result<()> {
    for (name, source) in &spec.sources {
        if let SourceSpec::Path { path, .. } = source {
            if super::stores::is_remote(path) {
                return Err(Error::Config(format!(
                    "{}: {} is in an object store, which `run --cluster` cannot read yet; run \
                     this pipeline without --cluster",
                    spec.section(&format!("sources.{name}")),
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// Runs `spec`; see the module docs.
pub async fn run(spec: &PipelineSpec, opts: &RunOptions) -> Result<RunSummary> {
    if opts.cluster.is_some() {
        refuse_remote_sources_on_a_cluster(spec)?;
    }
    let ctx = session_with_memory(spec.memory)?;
    register_sources(&ctx, spec).await?;
    let output_dir = opts
        .output_dir
        .clone()
        .unwrap_or_else(|| spec.output_dir.clone());
    let mut groups = group_by_input(spec);
    // Phase 1: every stage checked against its input schema before anything is scanned or
    // written.
    let schemas = check_stages(&ctx, spec, &groups).await?;
    let _lock = lock_output(spec, opts, &output_dir)?;
    let tmp_root = output_dir.join(super::sink::TMP_DIR);
    let increments = plan_increments(&ctx, spec, opts, &output_dir).await?;
    let mut runner = Runner {
        ctx,
        spec,
        opts,
        tmp_root,
        interrupt: Interrupt::new(opts.handle_ctrl_c, opts.stop.clone()),
        schemas,
        scratch: BTreeMap::new(),
        increments,
    };
    // Stages that run on the cluster (they read sources only) go first; every other stage
    // has its scratch space and operator made before any scan, so a bad stage fails early.
    let on_cluster: Vec<&StageSpec> = match &opts.cluster {
        Some(_) => spec.stages.iter().filter(|s| remote::eligible(s)).collect(),
        None => Vec::new(),
    };
    for g in &mut groups {
        g.stages
            .retain(|s| !on_cluster.iter().any(|c| c.name == s.name));
    }
    groups.retain(|g| !g.stages.is_empty());
    for stage in groups.iter().flat_map(|g| &g.stages) {
        if stage.op.needs_scratch() {
            let dir = ScratchDir::new(&runner.tmp_root, &format!("{}-", stage.op.name()))?;
            runner.scratch.insert(stage.name.clone(), dir);
        }
    }
    let mut ops = runner.build_operators(&groups)?;

    // Phase 2: outputs written uncommitted, in dependency order.
    let mut writer = StageWriter {
        spec,
        progress: opts.progress,
        run_date: opts.run_date,
        output_dir: &output_dir,
        produced: BTreeMap::new(),
        pending: Vec::new(),
    };
    if let (Some(cluster), false) = (&opts.cluster, on_cluster.is_empty()) {
        register_sources(cluster, spec).await?;
        for stage in on_cluster {
            let started = Instant::now();
            let tables = runner.on_cluster(cluster, stage).await?;
            writer
                .write(stage, tables, &runner.interrupt, started)
                .await?;
        }
    }
    for group in &groups {
        let started = Instant::now();
        match &group.input {
            Input::Sketches(refs) => {
                let stage = group.stages[0];
                let tables = runner.compute_from_sketches(stage, refs, &writer.produced)?;
                writer
                    .write(stage, tables, &runner.interrupt, started)
                    .await?;
            }
            _ => {
                let stages = runner.scan(group, &mut ops, &writer.produced).await?;
                for (stage, tables) in stages {
                    writer
                        .write(stage, tables, &runner.interrupt, started)
                        .await?;
                }
            }
        }
    }

    // Phase 3: every stage succeeded; move the outputs into place.
    writer.commit()
}

/// Checks every stage against its input's schema (columns exist, types fit); returns each
/// scan stage's input schema, projected to its group's columns.
async fn check_stages(
    ctx: &SessionContext,
    spec: &PipelineSpec,
    groups: &[Group<'_>],
) -> Result<BTreeMap<String, Schema>> {
    let mut schemas = BTreeMap::new();
    for group in groups {
        let mut schema = input_schema(ctx, spec, &group.input).await?;
        if let Some((column, _)) = group.stages.first().and_then(|s| s.op.tables_from_files()) {
            // Filled in by the runner from each file's name.
            let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
            fields.push(std::sync::Arc::new(
                datafusion::arrow::datatypes::Field::new(
                    column,
                    datafusion::arrow::datatypes::DataType::Utf8,
                    false,
                ),
            ));
            schema = Schema::new(fields);
        }
        check_columns(spec, group, &schema)?;
        let projected = schema.project(
            &group
                .columns
                .iter()
                .map(|c| schema.index_of(c).expect("checked"))
                .collect::<Vec<_>>(),
        )?;
        for stage in &group.stages {
            stage
                .op
                .check_schema(&projected)
                .map_err(|e| e.context(spec.section(&format!("stages.{}", stage.name))))?;
            schemas.insert(stage.name.clone(), projected.clone());
        }
    }
    Ok(schemas)
}

/// Takes the output directory's lock (one run per directory) and clears a dead run's
/// temporary files under it.
fn lock_output(spec: &PipelineSpec, opts: &RunOptions, output_dir: &Path) -> Result<OutputLock> {
    let lock = OutputLock::acquire(output_dir, &spec.file.display().to_string())?;
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
    let tmp_root = output_dir.join(super::sink::TMP_DIR);
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
    Ok(lock)
}

/// For each incremental stage: which files are new, and the output to resume from.
async fn plan_increments(
    ctx: &SessionContext,
    spec: &PipelineSpec,
    opts: &RunOptions,
    output_dir: &Path,
) -> Result<BTreeMap<String, Increment>> {
    let mut increments = BTreeMap::new();
    for stage in spec.stages.iter().filter(|s| s.op.incremental()) {
        let Input::Source(source) = &stage.input else {
            unreachable!("checked with the spec: incremental stages read a path source")
        };
        let files = source_files(ctx, spec, source).await?;
        let inc = incremental::plan(output_dir, &stage.name, opts.run_date, &stage.params, files)?;
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
    Ok(increments)
}

/// What a run holds while its stages run.
struct Runner<'a> {
    ctx: SessionContext,
    spec: &'a PipelineSpec,
    opts: &'a RunOptions,
    tmp_root: PathBuf,
    interrupt: Interrupt,
    /// Each scan stage's projected input schema.
    schemas: BTreeMap<String, Schema>,
    /// Scratch space of the stages that asked for it, removed when the run ends.
    scratch: BTreeMap<String, ScratchDir>,
    increments: BTreeMap<String, Increment>,
}

impl Runner<'_> {
    /// What a stage's operator, query or finish step is handed.
    fn stage_context<'s>(&'s self, stage: &StageSpec) -> StageContext<'s> {
        StageContext {
            schema: &self.schemas[&stage.name],
            scratch: self.scratch.get(&stage.name).map(|d| d.path()),
            previous: self
                .increments
                .get(&stage.name)
                .and_then(|i| i.previous.as_deref()),
            uses: Vec::new(),
        }
    }

    /// [`Self::stage_context`] with the directories of the stage's [`Op::uses`] filled in
    /// (the stages they name have run: the spec orders them first).
    ///
    /// [`Op::uses`]: crate::operators::op::Op::uses
    fn stage_context_after<'s>(
        &'s self,
        stage: &StageSpec,
        produced: &Produced,
    ) -> StageContext<'s> {
        let mut ctx = self.stage_context(stage);
        ctx.uses = stage
            .uses
            .iter()
            .map(|(_, r)| match r {
                OutputRef::Stage(s) => produced
                    .iter()
                    .find(|((stage, _), _)| stage == s)
                    .and_then(|(_, path)| path.parent())
                    .expect("a used stage has run and written tables")
                    .to_path_buf(),
                OutputRef::Dir(d) => d.clone(),
            })
            .collect();
        ctx
    }

    /// The operators of every stage made of passes, before any scan.
    fn build_operators(&self, groups: &[Group<'_>]) -> Result<BTreeMap<String, Box<dyn Operator>>> {
        let mut ops = BTreeMap::new();
        for stage in groups.iter().flat_map(|g| &g.stages) {
            if let Execution::Passes(p) = stage.op.execution() {
                let op = p
                    .operator(&self.stage_context(stage))
                    .map_err(|e| e.context(self.spec.section(&format!("stages.{}", stage.name))))?;
                ops.insert(stage.name.clone(), op);
            }
        }
        Ok(ops)
    }

    /// Runs a stage as one aggregate on the cluster.
    async fn on_cluster(&self, cluster: &SessionContext, stage: &StageSpec) -> Result<StageTables> {
        event(
            self.opts.progress,
            "stage_on_cluster",
            &format!(
                "stage `{}`: running on the cluster as an SQL aggregate",
                stage.name
            ),
            &[("stage", Value::from(stage.name.as_str()))],
        );
        let agg = stage.op.cluster().expect("chosen for the cluster");
        let work = remote::run_stage(cluster, self.spec, stage, agg, &self.schemas[&stage.name]);
        let tables = interruptible(&self.interrupt, work)
            .await
            .map_err(|e| e.context(self.spec.stage_context(stage)))?;
        Ok(StageTables::in_memory(tables, 0))
    }

    /// Runs a stage computed from sketches.
    fn compute_from_sketches(
        &self,
        stage: &StageSpec,
        refs: &[OutputRef],
        produced: &Produced,
    ) -> Result<StageTables> {
        let op = match stage.op.execution() {
            Execution::Sketches(op) => op,
            Execution::Outputs(op) => {
                let ctx = self.stage_context_after(stage, produced);
                let tables = op
                    .compute(&ctx.uses)
                    .map_err(|e| e.context(self.spec.stage_context(stage)))?;
                return Ok(StageTables::in_memory(tables, 0));
            }
            _ => unreachable!("a stage reading sketches computes from sketches"),
        };
        let read = |r: &OutputRef| {
            let path = match r {
                OutputRef::Stage(s) => produced[&(s.clone(), "sketch".to_string())].clone(),
                OutputRef::Dir(d) if d.is_dir() => d.join("sketch.parquet"),
                OutputRef::Dir(d) => d.clone(),
            };
            read_sketch(&path, r).map(|(s, h)| (s, h, r.to_string()))
        };
        let tables = refs
            .iter()
            .map(read)
            .collect::<Result<Vec<_>>>()
            .and_then(|sketches| op.compute(sketches))
            .map_err(|e| e.context(self.spec.stage_context(stage)))?;
        Ok(StageTables::in_memory(tables, 0))
    }

    /// The scan of a group's input (with `--cluster`, a source's scan runs there); `None` for
    /// an incremental stage with no new files.
    async fn input_frame(
        &self,
        group: &Group<'_>,
        produced: &Produced,
    ) -> Result<(Option<DataFrame>, Option<&SessionContext>)> {
        let increment = group
            .stages
            .first()
            .and_then(|s| self.increments.get(&s.name));
        let cluster = match (&self.opts.cluster, &group.input, increment) {
            (Some(c), Input::Source(name), None) => {
                let stages: Vec<&str> = group.stages.iter().map(|s| s.name.as_str()).collect();
                let how = match group.stages[0].op.execution() {
                    Execution::Query(q) => q.on_cluster(),
                    _ => "read on the cluster, streamed here",
                };
                event(
                    self.opts.progress,
                    "scan_on_cluster",
                    &format!("source `{name}`: {how} for stage(s) {}", stages.join(", ")),
                    &[("source", Value::from(name.as_str()))],
                );
                Some(c)
            }
            _ => None,
        };
        let file_tables = group.stages.first().and_then(|s| s.op.tables_from_files());
        let frame = match &group.input {
            Input::Source(name) => match (increment, file_tables) {
                (Some(inc), _) if inc.new.is_empty() => None,
                (Some(inc), _) => Some(files_frame(&self.ctx, self.spec, name, &inc.new).await?),
                (None, Some((column, skip))) => {
                    let stage = group.stages[0];
                    let schema = source_frame(&self.ctx, self.spec, name).await?;
                    let (frame, skipped) = file_tables_frame(
                        &self.ctx,
                        self.spec,
                        name,
                        column,
                        &group.columns,
                        schema.schema().as_arrow(),
                        skip,
                    )
                    .await
                    .map_err(|e| e.context(self.spec.stage_context(stage)))?;
                    if !skipped.is_empty() {
                        crate::progress::warning(
                            self.opts.progress,
                            "files_skipped",
                            &format!(
                                "stage `{}`: {} file(s) of source `{name}` lack a column it \
                                 reads and were left out (on_missing = \"skip\"): {}",
                                stage.name,
                                skipped.len(),
                                skipped.join(", ")
                            ),
                            &[
                                ("stage", Value::from(stage.name.as_str())),
                                ("files", Value::from(skipped.clone())),
                            ],
                        );
                    }
                    Some(frame.ok_or_else(|| {
                        Error::Input(format!(
                            "{}: no file of source `{name}` has every column it reads",
                            self.spec.stage_context(stage)
                        ))
                    })?)
                }
                (None, None) => Some(source_frame(&self.ctx, self.spec, name).await?),
            },
            Input::StageTable { stage, table } => {
                let path = &produced[&(stage.clone(), table.clone())];
                Some(
                    self.ctx
                        .read_parquet(
                            path.to_string_lossy().as_ref(),
                            ParquetReadOptions::default(),
                        )
                        .await?,
                )
            }
            Input::Sketches(_) => unreachable!("read as sketches"),
        };
        let Some(frame) = frame else {
            return Ok((None, cluster));
        };
        let mut frame =
            frame.select_columns(&group.columns.iter().map(String::as_str).collect::<Vec<_>>())?;
        for stage in &group.stages {
            frame = stage
                .op
                .prepare(frame)
                .map_err(|e| e.context(self.spec.stage_context(stage)))?;
        }
        Ok((Some(frame), cluster))
    }

    /// For an incremental group resuming with a key check: the files earlier runs merged.
    async fn merged_files(&self, group: &Group<'_>) -> Result<Option<DataFrame>> {
        let (Input::Source(name), Some(stage)) = (&group.input, group.stages.first()) else {
            return Ok(None);
        };
        let Some(inc) = self.increments.get(&stage.name) else {
            return Ok(None);
        };
        if inc.previous.is_none() || inc.consumed.is_empty() || stage.op.unique_key().is_none() {
            return Ok(None);
        }
        Ok(Some(
            files_frame(&self.ctx, self.spec, name, &inc.consumed).await?,
        ))
    }

    /// Scans a group's input for its stages (one query, or the passes of every operator) and
    /// returns each stage's tables.
    async fn scan<'g>(
        &self,
        group: &Group<'g>,
        ops: &mut BTreeMap<String, Box<dyn Operator>>,
        produced: &Produced,
    ) -> Result<Vec<(&'g StageSpec, StageTables)>> {
        let (frame, cluster) = self.input_frame(group, produced).await?;
        if let Execution::Query(query) = group.stages[0].op.execution() {
            let stage = group.stages[0];
            let frame = frame.expect("query stages are not incremental");
            event(
                self.opts.progress,
                "stage_started",
                &format!(
                    "stage `{}`: {}",
                    stage.name,
                    query.describe(&self.spec.describe_input(&stage.input))
                ),
                &[("stage", Value::from(stage.name.as_str()))],
            );
            let ctx = self.stage_context_after(stage, produced);
            let work = query.run(cluster.unwrap_or(&self.ctx), &self.ctx, frame, &ctx);
            let tables = interruptible(&self.interrupt, work)
                .await
                .map_err(|e| e.context(self.spec.stage_context(stage)))?;
            return Ok(vec![(stage, tables)]);
        }
        let mut group_ops: Vec<(&StageSpec, Box<dyn Operator>)> = group
            .stages
            .iter()
            .map(|s| (*s, ops.remove(&s.name).expect("built before the scans")))
            .collect();
        if let Some(frame) = frame {
            let scan = GroupScan {
                ctx: &self.ctx,
                cluster,
                spec: self.spec,
                group,
                mode: self.opts.progress,
                interrupt: &self.interrupt,
                tmp_root: &self.tmp_root,
                merged: self.merged_files(group).await?,
            };
            scan.run(frame, &mut group_ops).await?;
        }
        // Else an incremental stage with no new files: its previous state is the answer.
        let mut out = Vec::with_capacity(group_ops.len());
        for (stage, op) in group_ops {
            let Execution::Passes(passes) = stage.op.execution() else {
                unreachable!("an operator is built for stages made of passes")
            };
            let ctx = self.stage_context_after(stage, produced);
            let work = passes.finish(op, &self.ctx, &ctx);
            let mut tables = interruptible(&self.interrupt, work)
                .await
                .map_err(|e| e.context(self.spec.stage_context(stage)))?;
            if let Some(inc) = self.increments.get(&stage.name) {
                tables
                    .tables
                    .push(OutputTable::new(incremental::MANIFEST, inc.manifest()?));
            }
            out.push((stage, tables));
        }
        Ok(out)
    }
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
                return Err(spec.lines.key_error(
                    &spec.file,
                    &format!("[stages.{}]", stage.name),
                    stage.op.column_key(column),
                    format!(
                        "unknown column `{column}` in {} (it has: {})",
                        spec.describe_input(&group.input),
                        have.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Reads a sketch for a stage computed from sketches, naming where it came from on failure.
fn read_sketch(path: &Path, from: &OutputRef) -> Result<(StoredSketch, Header)> {
    if !path.exists() {
        return Err(Error::Input(format!(
            "{from}: no sketch at {} (a coordinated_sketch stage's output directory, or its \
             sketch.parquet)",
            path.display()
        )));
    }
    table::read(path)
}
