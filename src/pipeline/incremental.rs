//! `incremental = true`: a mergeable stage reads only the files its source gained since the
//! previous run, and merges them into the previous run's state.
//!
//! The stage's output directory holds, next to its usual tables, a `manifest` table — one row
//! per input file consumed so far (`file`, `bytes`, `modified`) — and its resumable state (the
//! `sketch` table of a coordinated sketch; a `state` table for a top eigenvector). Both are
//! swapped into place atomically with the rest of the output, so the manifest always describes
//! exactly the state next to it.
//!
//! The next run lists the source's files (as DataFusion lists them), and:
//! * resumes from the previous output when it has a manifest and was made with the same stage
//!   parameters (all keys but `incremental`); otherwise it reads every file (a full run, said
//!   in the log);
//! * refuses to go on when a file the manifest lists has disappeared or changed (size or
//!   modification time): the merged result would no longer equal a full run. The message says
//!   how to recompute in full;
//! * reads the other files, and merges — exactly as one pass for priority sketches, the exact
//!   Gram matrix (to rounding), exact/JL/CountSketch sketches; within its bound for Frequent
//!   Directions.
//!
//! With `--run-date D`, the previous output is `date=D` itself on a rerun of that date, or else
//! the latest complete partition before `D`: each date partition holds the result over every
//! file seen up to that date.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use toml::Table;

use super::sink::SUCCESS;
use crate::{Error, Result};

/// The manifest table's name.
pub const MANIFEST: &str = "manifest";

static MANIFEST_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("modified", DataType::Utf8, false),
    ]))
});

/// The manifest table's schema.
pub fn manifest_schema() -> SchemaRef {
    Arc::clone(&MANIFEST_SCHEMA)
}

/// One input file: its path, size and modification time (RFC 3339, nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileEntry {
    pub file: String,
    pub bytes: u64,
    pub modified: String,
}

/// What an incremental stage reads this run.
#[derive(Debug, Clone)]
pub struct Increment {
    /// The output to resume from (`None`: a full run).
    pub previous: Option<PathBuf>,
    /// Files already in the previous state.
    pub consumed: Vec<FileEntry>,
    /// Files to read now.
    pub new: Vec<FileEntry>,
    /// Why the run is full, when it is.
    pub full_because: Option<String>,
}

impl Increment {
    /// The manifest after this run: every file consumed, sorted.
    pub fn manifest(&self) -> Result<RecordBatch> {
        let mut all: Vec<&FileEntry> = self.consumed.iter().chain(&self.new).collect();
        all.sort();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(all.iter().map(|f| &f.file))),
            Arc::new(UInt64Array::from_iter_values(all.iter().map(|f| f.bytes))),
            Arc::new(StringArray::from_iter_values(
                all.iter().map(|f| &f.modified),
            )),
        ];
        Ok(RecordBatch::try_new(manifest_schema(), columns)?)
    }
}

/// The stage's keys as they count for resuming: all but `incremental`.
fn comparable(params: &Table) -> Table {
    let mut p = params.clone();
    p.remove("incremental");
    p
}

/// Decides what `stage` reads, given the source's `files` now; `params` are the stage's keys.
pub fn plan(
    output_dir: &Path,
    stage: &str,
    run_date: Option<NaiveDate>,
    params: &Table,
    mut files: Vec<FileEntry>,
) -> Result<Increment> {
    files.sort();
    let full = |why: String| Increment {
        previous: None,
        consumed: Vec::new(),
        new: files.clone(),
        full_because: Some(why),
    };
    let Some(previous) = previous_output(output_dir, stage, run_date) else {
        return Ok(full("no previous output".into()));
    };
    let manifest_path = previous.join(format!("{MANIFEST}.parquet"));
    if !manifest_path.exists() {
        return Ok(full(format!(
            "the previous output {} has no manifest (it was not an incremental run)",
            previous.display()
        )));
    }
    let (consumed, old_params) = read_manifest(&manifest_path)?;
    if old_params.as_ref().map(comparable) != Some(comparable(params)) {
        return Ok(full(format!(
            "the stage's parameters changed since the run that wrote {}",
            previous.display()
        )));
    }
    for c in &consumed {
        let now = files.iter().find(|f| f.file == c.file);
        let what = match now {
            None => "has disappeared",
            Some(f) if f.bytes != c.bytes || f.modified != c.modified => {
                "has changed (size or modification time)"
            }
            Some(_) => continue,
        };
        return Err(Error::Input(format!(
            "stage `{stage}`: input file {} {what} since an earlier run consumed it, so merging \
             only the new files would no longer equal a full run; recompute in full with \
             --set {stage}.incremental=false (the next incremental run then resumes from that)",
            c.file
        )));
    }
    let new = files
        .into_iter()
        .filter(|f| !consumed.iter().any(|c| c.file == f.file))
        .collect();
    Ok(Increment {
        previous: Some(previous),
        consumed,
        new,
        full_because: None,
    })
}

/// The committed output to resume from; see the module docs.
fn previous_output(output_dir: &Path, stage: &str, run_date: Option<NaiveDate>) -> Option<PathBuf> {
    let stage_dir = output_dir.join(stage);
    let complete = |p: &Path| p.join(SUCCESS).exists();
    let Some(date) = run_date else {
        return complete(&stage_dir).then_some(stage_dir);
    };
    let mut dates: Vec<(NaiveDate, PathBuf)> = std::fs::read_dir(&stage_dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let d = NaiveDate::parse_from_str(name.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
            (d <= date && complete(&e.path())).then(|| (d, e.path()))
        })
        .collect();
    dates.sort();
    dates.pop().map(|(_, p)| p)
}

/// The manifest's files and the stage keys recorded in its metadata.
fn read_manifest(path: &Path) -> Result<(Vec<FileEntry>, Option<Table>)> {
    let what = || path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open manifest {}", what()), e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let params = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == "sketchpipe.params"))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| v.parse::<Table>().ok());
    let mut out = Vec::new();
    for batch in builder.build()? {
        let batch = batch?;
        let bad = || Error::Input(format!("{} is not a sketchpipe manifest", what()));
        let (Some(file), Some(bytes), Some(modified)) = (
            batch
                .column_by_name("file")
                .and_then(|c| c.as_string_opt::<i32>()),
            batch
                .column_by_name("bytes")
                .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
            batch
                .column_by_name("modified")
                .and_then(|c| c.as_string_opt::<i32>()),
        ) else {
            return Err(bad());
        };
        for i in 0..batch.num_rows() {
            if file.is_null(i) || bytes.is_null(i) || modified.is_null(i) {
                return Err(bad());
            }
            out.push(FileEntry {
                file: file.value(i).to_string(),
                bytes: bytes.value(i),
                modified: modified.value(i).to_string(),
            });
        }
    }
    Ok((out, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(file: &str, bytes: u64) -> FileEntry {
        FileEntry {
            file: file.into(),
            bytes,
            modified: "2026-11-28T00:00:00.000000000Z".into(),
        }
    }

    #[test]
    fn the_latest_complete_partition_up_to_the_run_date_is_resumed() {
        let tmp = tempfile::tempdir().unwrap();
        for (d, done) in [
            ("2026-11-01", true),
            ("2026-11-03", true),
            ("2026-11-04", false),
            ("2026-11-09", true),
        ] {
            let p = tmp.path().join(format!("s/date={d}"));
            std::fs::create_dir_all(&p).unwrap();
            if done {
                std::fs::write(p.join(SUCCESS), "").unwrap();
            }
        }
        let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let prev = |d: &str| previous_output(tmp.path(), "s", Some(date(d)));
        assert!(prev("2026-11-05").unwrap().ends_with("date=2026-11-03"));
        assert!(prev("2026-11-03").unwrap().ends_with("date=2026-11-03"));
        assert!(prev("2026-10-31").is_none());
        assert!(previous_output(tmp.path(), "s", None).is_none());
    }

    #[test]
    fn a_full_run_when_there_is_nothing_to_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let inc = plan(
            tmp.path(),
            "s",
            None,
            &Table::new(),
            vec![entry("/b", 2), entry("/a", 1)],
        )
        .unwrap();
        assert!(inc.previous.is_none());
        assert_eq!(inc.new, vec![entry("/a", 1), entry("/b", 2)]);
        assert_eq!(inc.manifest().unwrap().num_rows(), 2);
    }
}
