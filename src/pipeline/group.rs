//! The scan of one input group: which stages share a scan ([`group_by_input`]), and the
//! passes over the input that feed them ([`run_group`]) — ordered (file order, several
//! partitions decoding at once) or through the out-of-core shuffle, with the
//! `duplicate_keys = "error"` checks riding on the first pass and a progress line per pass.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::stats::Precision;
use datafusion::dataframe::DataFrame;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, StatisticsArgs, StatisticsContext};
use datafusion::prelude::SessionContext;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::interrupt::Interrupt;
use super::ordered;
use super::shuffle::{Spilled, Spiller};
use super::spec::{Input, PipelineSpec, StageSpec};
use crate::operators::coordinated_sketch::unique::KeyHashes;
use crate::operators::op::{Execution, Shuffle};
use crate::operators::{Operator, PassInfo, PassKind};
use crate::progress::{event, warning, Progress, ProgressMode, Value};
use crate::{Error, Result};

/// All stages reading one input in the same order, scanned together.
pub(super) struct Group<'a> {
    pub(super) input: Input,
    pub(super) shuffle: Option<Shuffle>,
    pub(super) stages: Vec<&'a StageSpec>,
    /// Union of the stages' columns, in first-use order: the scan's projection.
    pub(super) columns: Vec<String>,
    /// A stage that shares its scan with no other (a query, an incremental stage, one that
    /// rewrites its input).
    pub(super) alone: bool,
}

/// Groups stages by input, ordered so that a group comes after the stages it reads from
/// (the spec's stages are already in dependency order).
pub(super) fn group_by_input(spec: &PipelineSpec) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for stage in &spec.stages {
        let shuffle = stage.op.shuffle();
        // Queries, incremental stages (which read only some files) and stages that rewrite
        // their input scan alone; stages from sketches read no rows.
        let alone = !matches!(stage.op.execution(), Execution::Passes(_))
            || stage.op.incremental()
            || stage.op.rewrites_input();
        let group = match groups
            .iter_mut()
            .find(|g| !alone && !g.alone && g.input == stage.input && g.shuffle == shuffle)
        {
            Some(g) => g,
            None => {
                groups.push(Group {
                    input: stage.input.clone(),
                    shuffle,
                    stages: Vec::new(),
                    columns: Vec::new(),
                    alone,
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
    let position = |g: &Group<'_>| {
        g.stages
            .iter()
            .flat_map(|s| s.depends_on())
            .map(|stage| {
                1 + spec
                    .stages
                    .iter()
                    .position(|s| s.name == stage)
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    };
    groups.sort_by_key(position);
    groups
}

/// One `duplicate_keys = "error"` check of a group: the first stage that asked for it (its
/// name goes into messages), its key column, and the hashes of the group's first scan.
struct KeyCheck<'a> {
    stage: &'a StageSpec,
    key: &'a str,
    hashes: KeyHashes,
}

/// The scan of one group: its input, its stages' operators, and where progress, Ctrl-C and
/// scratch files go.
pub(super) struct GroupScan<'a> {
    pub(super) ctx: &'a SessionContext,
    /// With `--cluster`: the executors decode, the batches stream here in partition order.
    pub(super) cluster: Option<&'a SessionContext>,
    pub(super) spec: &'a PipelineSpec,
    pub(super) group: &'a Group<'a>,
    pub(super) mode: ProgressMode,
    pub(super) interrupt: &'a Interrupt,
    pub(super) tmp_root: &'a Path,
    /// An incremental stage resuming: the files merged by earlier runs, whose keys the
    /// duplicate-key check counts too (a key repeated across increments is a repeat).
    pub(super) merged: Option<DataFrame>,
}

impl GroupScan<'_> {
    /// Runs every pass the group's operators ask for (see the module docs); the
    /// `duplicate_keys = "error"` checks ride on the first scan of the whole input.
    pub(super) async fn run(
        &self,
        frame: DataFrame,
        ops: &mut [(&StageSpec, Box<dyn Operator>)],
    ) -> Result<()> {
        let (spec, group) = (self.spec, self.group);
        let what = spec.describe_input(&group.input);
        let label = match &group.input {
            Input::Source(name) => format!("source `{name}`"),
            other => other.to_string(),
        };
        // Every pass reads the input in file order, several partitions decoding at once
        // (`ordered`). A physical plan is planned afresh for every scan: some (CSV,
        // repartitioned SQL) yield nothing when executed a second time.
        let plan = frame.clone().create_physical_plan().await?;
        let (mut rows, estimated_bytes) = statistics(&plan);
        let schema = plan.schema();
        let state = ordered::ordered_state(
            self.cluster.unwrap_or(self.ctx),
            &plan,
            rows,
            ordered::CHUNK_BYTES,
        );
        let task_ctx = Arc::new(TaskContext::from(&state));
        let scan = async || -> Result<BoxStream<'static, Result<RecordBatch>>> {
            let plan = state.create_physical_plan(frame.logical_plan()).await?;
            let stream = ordered::in_file_order(
                plan,
                Arc::clone(&task_ctx),
                ordered::decoders(),
                ordered::READ_AHEAD_BYTES,
            );
            Ok(stream.map(|b| b.map_err(Error::from)).boxed())
        };
        let mut checks = self.key_checks(&schema)?;
        if let (Some(merged), false) = (&self.merged, checks.is_empty()) {
            self.feed_merged_keys(merged, &mut checks, &label).await?;
        }
        let feed_checks = |checks: &mut Vec<KeyCheck<'_>>, batch: &RecordBatch| -> Result<()> {
            for c in checks.iter_mut() {
                c.hashes
                    .update(batch)
                    .map_err(|e| e.context(spec.stage_context(c.stage)))?;
            }
            Ok(())
        };
        let mut spilled: Option<Spilled> = None;
        let mut scans = 0u32;
        loop {
            let wanting: Vec<(usize, PassKind)> = ops
                .iter()
                .enumerate()
                .filter_map(|(i, (_, op))| op.next_pass().map(|k| (i, k)))
                .collect();
            if !checks.is_empty() && scans > 0 {
                self.finish_key_checks(std::mem::take(&mut checks), &frame)
                    .await?;
            }
            if wanting.is_empty() {
                return Ok(());
            }
            if let (Some(shuffle), None) = (group.shuffle, &spilled) {
                // Spill pass: also serves every pass that does not care about the order.
                let fed: Vec<usize> = wanting
                    .iter()
                    .filter(|(_, k)| *k == PassKind::AnyOrder)
                    .map(|(i, _)| *i)
                    .collect();
                scans += 1;
                let info = PassInfo {
                    rows,
                    order_randomised: false,
                    scan: scans,
                };
                let doing = pass_names(ops, &fed, None);
                each(ops, &fed, &what, |op| op.begin_pass(&info))?;
                let mut spiller = Spiller::new(
                    self.tmp_root,
                    schema.clone(),
                    shuffle.seed,
                    shuffle.memory,
                    estimated_bytes,
                )?;
                let pass = format!("{label}, spilling for the shuffle{doing}");
                self.drive(scan().await?, rows, &pass, &what, |batch| {
                    spiller.push(batch)?;
                    feed_checks(&mut checks, batch)?;
                    each(ops, &fed, &what, |op| op.update(batch))
                })
                .await?;
                let done = spiller.finish()?;
                rows = Some(done.rows());
                spilled = Some(done);
                each(ops, &fed, &what, |op| op.end_pass())?;
                continue;
            }
            let fed: Vec<usize> = wanting.iter().map(|(i, _)| *i).collect();
            if rows.is_none() && fed.iter().any(|&i| ops[i].1.needs_row_count()) {
                scans += 1;
                rows = Some(frame.clone().count().await? as u64);
            }
            scans += 1;
            let declared =
                matches!(&group.input, Input::Source(n) if spec.shuffled_sources.contains(n));
            let info = PassInfo {
                rows,
                order_randomised: spilled.is_some() || declared,
                scan: scans,
            };
            let doing = pass_names(ops, &fed, Some(scans));
            if !info.order_randomised {
                self.warn_file_order(ops, &fed);
            }
            each(ops, &fed, &what, |op| op.begin_pass(&info))?;
            let (pass, what, stream) = match &spilled {
                Some(s) => (
                    format!("{label}, shuffled{doing}"),
                    format!("{what}, read in shuffled order: row numbers are shuffled positions"),
                    futures::stream::iter(s.replay()).boxed(),
                ),
                None => (format!("{label}{doing}"), what.clone(), scan().await?),
            };
            let seen = self
                .drive(stream, rows, &pass, &what, |batch| {
                    feed_checks(&mut checks, batch)?;
                    each(ops, &fed, &what, |op| op.update(batch))
                })
                .await?;
            // A full pass counts the rows: a later stream-order pass needs no COUNT(*) scan.
            rows.get_or_insert(seen);
            each(ops, &fed, &what, |op| op.end_pass())?;
        }
    }

    /// Warns, for each stage about to make a stream-order pass over rows in file order, that
    /// its guarantee assumes a random order, and names the remedies.
    fn warn_file_order(&self, ops: &[(&StageSpec, Box<dyn Operator>)], fed: &[usize]) {
        let source = match &self.group.input {
            Input::Source(name) => format!("source `{name}`"),
            other => other.to_string(),
        };
        for &i in fed {
            let (stage, op) = &ops[i];
            if op.next_pass() != Some(PassKind::StreamOrder) {
                continue;
            }
            let extra = stage
                .op
                .file_order_remedy()
                .map_or(String::new(), |r| format!("; or {r}"));
            warning(
                self.mode,
                "file_order",
                &format!(
                    "stage `{}` reads {source} in file order, but its algorithm's guarantee \
                     assumes a uniformly random order (a file sorted by date, norm or label can \
                     give a poor answer): set `shuffle = true` on the stage, or `shuffled = true` \
                     on the source if its rows are already in random order{extra}",
                    stage.name
                ),
                &[("stage", Value::from(stage.name.as_str()))],
            );
        }
    }

    /// The group's key checks: each key column once, however many stages need it unique.
    fn key_checks(
        &self,
        schema: &datafusion::arrow::datatypes::SchemaRef,
    ) -> Result<Vec<KeyCheck<'_>>> {
        let mut checks: Vec<KeyCheck<'_>> = Vec::new();
        for stage in &self.group.stages {
            let Some(key) = stage.op.unique_key() else {
                continue;
            };
            let within = stage.op.unique_within();
            if checks
                .iter()
                .any(|c| c.key == key && c.stage.op.unique_within() == within)
            {
                continue;
            }
            let hashes = KeyHashes::new(schema, key, self.spec.memory / 2, self.tmp_root)
                .and_then(|h| h.within(schema, within))
                .map_err(|e| e.context(self.spec.stage_context(stage)))?;
            checks.push(KeyCheck { stage, key, hashes });
        }
        Ok(checks)
    }

    /// Feeds the key columns (only) of the files merged by earlier incremental runs into the
    /// key checks, before the scan of the new files.
    async fn feed_merged_keys(
        &self,
        merged: &DataFrame,
        checks: &mut [KeyCheck<'_>],
        label: &str,
    ) -> Result<()> {
        for c in checks.iter_mut() {
            let mut columns = vec![c.key.to_string()];
            columns.extend(c.hashes.within_column().map(str::to_string));
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            let keys = merged.clone().select_columns(&names)?;
            let stream = keys.execute_stream().await?;
            let stream = stream.map(|b| b.map_err(Error::from)).boxed();
            let pass = format!("{label}: keys of the files already merged");
            let what = self.spec.stage_context(c.stage);
            self.drive(stream, None, &pass, &what, |batch| {
                let within = (batch.num_columns() > 1).then(|| batch.column(1));
                c.hashes.update_columns(batch.column(0), within)
            })
            .await?;
        }
        Ok(())
    }

    /// Ends the key checks fed by the group's first scan.
    async fn finish_key_checks(&self, checks: Vec<KeyCheck<'_>>, frame: &DataFrame) -> Result<()> {
        for KeyCheck { stage, key, hashes } in checks {
            // With earlier increments, a repeat is looked for over their keys and the new ones.
            let mut columns = vec![key];
            columns.extend(hashes.within_column());
            let (frame, across) = match &self.merged {
                Some(merged) => (
                    frame
                        .clone()
                        .select_columns(&columns)?
                        .union(merged.clone().select_columns(&columns)?)?,
                    "; counting the files earlier incremental runs merged, whose rows are in the \
                     sketch already. An incremental stage needs each key in one file: rerun with \
                     incremental = false to combine a key's rows",
                ),
                None => (frame.clone(), ""),
            };
            let spilled = hashes.spilled_bytes();
            if spilled > 0 {
                event(
                    self.mode,
                    "key_check_spilled",
                    &format!(
                        "stage `{}`: the duplicate-key check of `{key}` held more hashes than \
                         half of [pipeline] memory and spilled {:.1} MB of them to disk",
                        stage.name,
                        spilled as f64 / 1e6
                    ),
                    &[
                        ("stage", Value::from(stage.name.as_str())),
                        ("spilled_bytes", Value::from(spilled)),
                    ],
                );
            }
            hashes
                .finish(&frame, key)
                .await
                .map_err(|e| match e {
                    Error::Input(m) => Error::Input(format!("{m}{across}")),
                    other => other,
                })
                .map_err(|e| e.context(self.spec.stage_context(stage)))?;
        }
        Ok(())
    }

    /// Streams one pass through `on_batch`, with progress and Ctrl-C handling; returns the
    /// rows it saw.
    async fn drive(
        &self,
        mut stream: BoxStream<'_, Result<RecordBatch>>,
        total: Option<u64>,
        label: &str,
        what: &str,
        mut on_batch: impl FnMut(&RecordBatch) -> Result<()>,
    ) -> Result<u64> {
        let mut rows = 0u64;
        let mut progress = Progress::new(label.to_string(), total, self.mode);
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                s = self.interrupt.wait() => return Err(Error::Interrupted(s)),
            };
            let Some(batch) = next else { break };
            let batch = batch.map_err(|e| match e {
                // Bytes that could not be read (a disk, an object store) stay I/O failures.
                Error::DataFusion(_) if e.exit_kind() == crate::error::ExitKind::Io => {
                    e.context(format!("reading {what}"))
                }
                Error::DataFusion(_) | Error::Arrow(_) => {
                    Error::Input(format!("reading {what}: {e}"))
                }
                other => other,
            })?;
            on_batch(&batch)?;
            rows += batch.num_rows() as u64;
            progress.inc(
                batch.num_rows() as u64,
                batch.get_array_memory_size() as u64,
            );
        }
        progress.finish();
        Ok(rows)
    }
}

/// The part of a pass's progress label after the input: which stages the pass feeds and what
/// each multi-pass stage does in it, each description once with its stages — `" (scan 2:
/// threshold sampling — `th`; verify — `v`)"` — with the scan number from the second scan
/// on, or when a stage describes its pass; `" (`a`, `b`)"` for a first scan of single-pass
/// stages. `scan` is `None` for the shuffle's spill pass (its label says what it is).
fn pass_names(ops: &[(&StageSpec, Box<dyn Operator>)], fed: &[usize], scan: Option<u32>) -> String {
    let mut doing: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for &i in fed {
        let name = ops[i].1.pass_name();
        let stage = format!("`{}`", ops[i].0.name);
        match doing.iter_mut().find(|(n, _)| *n == name) {
            Some((_, stages)) => stages.push(stage),
            None => doing.push((name, vec![stage])),
        }
    }
    let described = doing.iter().any(|(n, _)| n.is_some());
    let parts: Vec<String> = doing
        .iter()
        .map(|(name, stages)| match name {
            Some(name) => format!("{name} — {}", stages.join(", ")),
            None => stages.join(", "),
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    match scan {
        Some(n) if n > 1 || described => format!(" (scan {n}: {})", parts.join("; ")),
        Some(_) => format!(" ({})", parts.join("; ")),
        None => format!(": {}", parts.join("; ")),
    }
}

/// The input's exact row count (Parquet footers give it for free; estimates after a filter
/// are not used: they would show a wrong 100 % and size blocks wrongly) and estimated bytes.
fn statistics(plan: &Arc<dyn ExecutionPlan>) -> (Option<u64>, Option<u64>) {
    let stats = StatisticsContext::new()
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .ok();
    let rows = stats.as_ref().and_then(|s| match s.num_rows {
        Precision::Exact(n) => Some(n as u64),
        _ => None,
    });
    let bytes = stats
        .as_ref()
        .and_then(|s| s.total_byte_size.get_value().map(|b| *b as u64));
    (rows, bytes)
}

/// Applies `f` to the operators at `which`, naming the stage in any error.
fn each(
    ops: &mut [(&StageSpec, Box<dyn Operator>)],
    which: &[usize],
    what: &str,
    mut f: impl FnMut(&mut dyn Operator) -> Result<()>,
) -> Result<()> {
    for &i in which {
        let (stage, op) = &mut ops[i];
        f(op.as_mut()).map_err(|e| e.context(format!("stage `{}` ({what})", stage.name)))?;
    }
    Ok(())
}
