//! Writing a run's stages: each stage's tables go to its uncommitted output directory as the
//! stage finishes (later stages of the run read them there), and all are committed together
//! when every stage has succeeded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;

use super::interrupt::{interruptible, Interrupt};
use super::sink::StageOutput;
use super::spec::{Input, PipelineSpec, StageSpec};
use crate::operators::op::StageTables;
use crate::progress::{event, ProgressMode, Value};
use crate::Result;

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
    /// Seconds from the start of the stage's scan (or query) to its tables being written;
    /// stages sharing a scan share its time.
    pub seconds: f64,
}

/// Where finished stages' tables are, by `(stage, table)`, for the stages reading them.
pub(super) type Produced = BTreeMap<(String, String), PathBuf>;

/// Writes finished stages' tables uncommitted, records where later stages find them, and
/// commits them all at the end of a good run.
pub(super) struct StageWriter<'a> {
    pub(super) spec: &'a PipelineSpec,
    pub(super) progress: ProgressMode,
    /// Writes into `STAGE/date=YYYY-MM-DD/` partitions.
    pub(super) run_date: Option<NaiveDate>,
    pub(super) output_dir: &'a Path,
    pub(super) produced: Produced,
    pub(super) pending: Vec<(StageOutput, StageSummary)>,
}

impl StageWriter<'_> {
    /// Writes a stage's tables (the streamed one first, then the in-memory ones); errors name
    /// the stage. `started` is when the stage's scan or query began.
    pub(super) async fn write(
        &mut self,
        stage: &StageSpec,
        tables: StageTables,
        interrupt: &Interrupt,
        started: Instant,
    ) -> Result<()> {
        let written = self
            .write_tables(stage, tables, interrupt, started)
            .await
            .map_err(|e| e.context(self.spec.stage_context(stage)))?;
        self.pending.push(written);
        Ok(())
    }

    async fn write_tables(
        &mut self,
        stage: &StageSpec,
        tables: StageTables,
        interrupt: &Interrupt,
        started: Instant,
    ) -> Result<(StageOutput, StageSummary)> {
        let (spec, run_date) = (self.spec, self.run_date);
        let rows_read = tables.rows_read;
        let output = StageOutput::create(self.output_dir, &stage.name, run_date)?;
        let mut names: Vec<String> = Vec::new();
        if let Some((name, frame)) = tables.streamed {
            let meta = metadata(spec, stage, name, rows_read, run_date);
            interruptible(interrupt, output.write_frame(name, frame, meta)).await?;
            names.push(name.into());
        }
        for table in &tables.tables {
            let mut meta = metadata(spec, stage, table.name, rows_read, run_date);
            meta.extend(table.metadata.iter().cloned());
            output.write_table(table, meta)?;
            names.push(table.name.to_string());
        }
        for name in &names {
            self.produced.insert(
                (stage.name.clone(), name.clone()),
                output.tmp_table_path(name),
            );
        }
        let summary = StageSummary {
            name: stage.name.clone(),
            dir: output.final_dir().to_path_buf(),
            tables: names,
            rows_read,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((output, summary))
    }

    /// Moves every stage's outputs into place.
    pub(super) fn commit(self) -> Result<RunSummary> {
        let mut stages = Vec::with_capacity(self.pending.len());
        for (output, summary) in self.pending {
            output.commit()?;
            event(
                self.progress,
                "stage_written",
                &format!(
                    "stage `{}`: wrote {} ({}) in {:.1}s",
                    summary.name,
                    summary.dir.display(),
                    summary.tables.join(", "),
                    summary.seconds
                ),
                &[
                    ("stage", Value::from(summary.name.as_str())),
                    ("dir", Value::from(summary.dir.display().to_string())),
                    ("tables", Value::from(summary.tables.clone())),
                    ("rows_read", Value::from(summary.rows_read)),
                    ("seconds", Value::from(summary.seconds)),
                ],
            );
            stages.push(summary);
        }
        Ok(RunSummary {
            output_dir: self.output_dir.to_path_buf(),
            stages,
        })
    }
}

/// The key-value metadata of every output table: what made it, from what, with which seed.
fn metadata(
    spec: &PipelineSpec,
    stage: &StageSpec,
    table: &str,
    rows_read: u64,
    run_date: Option<NaiveDate>,
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
    if let Some(d) = run_date {
        kv.push(("sketchpipe.run_date", d.to_string()));
    }
    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
