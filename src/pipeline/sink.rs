//! Atomic stage outputs.
//!
//! A stage's tables are written into a private temporary directory under
//! `OUTPUT_DIR/.sketchpipe-tmp/`, then moved into place in one step once everything is
//! written: on Linux with `renameat2(RENAME_EXCHANGE)`, which swaps the new directory with the
//! old one atomically, so a reader sees either the complete old output or the complete new
//! one, never a mix and never nothing. A failed or interrupted run removes its temporary
//! directory and leaves the previous output untouched.
//!
//! Layout: `OUTPUT_DIR/STAGE/TABLE.parquet` + `_SUCCESS`, or with a run date
//! `OUTPUT_DIR/STAGE/date=YYYY-MM-DD/TABLE.parquet` + `_SUCCESS` (a Hive-style partition:
//! a rerun of the same date replaces that date only).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrame;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;

use crate::operators::OutputTable;
use crate::{Error, Result};

/// Name of the directory (inside the output dir) that holds in-progress outputs.
pub const TMP_DIR: &str = ".sketchpipe-tmp";
/// Marker written last into every complete output directory.
pub const SUCCESS: &str = "_SUCCESS";

/// The output of one stage while it is being written; see the module docs.
#[derive(Debug)]
pub struct StageOutput {
    final_dir: PathBuf,
    tmp_dir: PathBuf,
    committed: bool,
}

impl StageOutput {
    /// Prepares a temporary directory for `stage`'s tables. Refuses to mix dated and undated
    /// outputs in one stage directory: an undated run would replace every dated partition.
    pub fn create(output_dir: &Path, stage: &str, run_date: Option<NaiveDate>) -> Result<Self> {
        let stage_dir = output_dir.join(stage);
        check_layout(&stage_dir, run_date.is_some())?;
        let final_dir = match run_date {
            Some(d) => stage_dir.join(format!("date={}", d.format("%Y-%m-%d"))),
            None => stage_dir,
        };
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp_dir = output_dir.join(TMP_DIR).join(format!(
            "{stage}-{}-{}-{nonce}",
            run_date
                .map(|d| d.to_string())
                .unwrap_or_else(|| "latest".into()),
            std::process::id()
        ));
        std::fs::create_dir_all(&tmp_dir)
            .map_err(|e| Error::io(format!("cannot create {}", tmp_dir.display()), e))?;
        Ok(StageOutput {
            final_dir,
            tmp_dir,
            committed: false,
        })
    }

    /// Where the stage's output will be once committed.
    pub fn final_dir(&self) -> &Path {
        &self.final_dir
    }

    /// Where table `name` is while uncommitted (later stages of the same run read it here).
    pub fn tmp_table_path(&self, name: &str) -> PathBuf {
        self.tmp_dir.join(format!("{name}.parquet"))
    }

    /// Writes one table as Parquet with the given key-value metadata, and syncs it to disk.
    pub fn write_table(&self, table: &OutputTable, metadata: Vec<(String, String)>) -> Result<()> {
        let mut writer = self.writer(table.name, table.batch.schema_ref(), metadata)?;
        writer.write(&table.batch)?;
        self.close(table.name, writer)
    }

    /// Writes the result of `frame` as table `name`, batch by batch as the query produces
    /// them (the table may be larger than memory); returns its rows.
    pub async fn write_frame(
        &self,
        name: &str,
        frame: DataFrame,
        metadata: Vec<(String, String)>,
    ) -> Result<u64> {
        let stream = frame.execute_stream().await?;
        let mut writer = self.writer(name, &stream.schema(), metadata)?;
        let rows = crate::operators::write_stream(stream, &mut writer).await?;
        self.close(name, writer)?;
        Ok(rows)
    }

    fn writer(
        &self,
        name: &str,
        schema: &SchemaRef,
        metadata: Vec<(String, String)>,
    ) -> Result<ArrowWriter<File>> {
        let path = self.tmp_table_path(name);
        let file = File::create(&path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        let mut props = WriterProperties::builder().set_compression(Compression::SNAPPY);
        // Floating-point columns (scores, eigenvalues, projections) are nearly all distinct:
        // a dictionary page only costs time (a hash per value) before Parquet gives it up.
        for field in schema.fields() {
            if field.data_type().is_floating() {
                props = props
                    .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
            }
        }
        let props = props
            .set_key_value_metadata(Some(
                metadata
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect(),
            ))
            .build();
        Ok(ArrowWriter::try_new(file, Arc::clone(schema), Some(props))?)
    }

    fn close(&self, name: &str, writer: ArrowWriter<File>) -> Result<()> {
        let path = self.tmp_table_path(name);
        let file = writer.into_inner()?;
        file.sync_all()
            .map_err(|e| Error::io(format!("cannot sync {}", path.display()), e))
    }

    /// Writes `_SUCCESS` and moves the output into place atomically.
    pub fn commit(mut self) -> Result<()> {
        let marker = self.tmp_dir.join(SUCCESS);
        File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(format!("cannot write {}", marker.display()), e))?;
        if let Some(parent) = self.final_dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        }
        let ctx = || {
            format!(
                "cannot move {} into place at {}",
                self.tmp_dir.display(),
                self.final_dir.display()
            )
        };
        if self.final_dir.exists() {
            exchange(&self.tmp_dir, &self.final_dir).map_err(|e| Error::io(ctx(), e))?;
            // The temporary path now holds the previous output; Drop removes it.
        } else {
            std::fs::rename(&self.tmp_dir, &self.final_dir).map_err(|e| Error::io(ctx(), e))?;
        }
        self.committed = true;
        cleanup(&self.tmp_dir);
        Ok(())
    }
}

impl Drop for StageOutput {
    fn drop(&mut self) {
        if !self.committed {
            cleanup(&self.tmp_dir);
        }
    }
}

fn cleanup(tmp_dir: &Path) {
    let _ = std::fs::remove_dir_all(tmp_dir);
    if let Some(parent) = tmp_dir.parent() {
        // Removed only when empty: another run may be writing next to us.
        let _ = std::fs::remove_dir(parent);
    }
}

/// Dated runs need a stage directory of `date=…` partitions only, undated runs one without.
fn check_layout(stage_dir: &Path, dated: bool) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(stage_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_partition = name.starts_with("date=");
        if dated && !is_partition {
            return Err(Error::Config(format!(
                "{} holds an undated output ({name}); a --run-date run writes date=YYYY-MM-DD \
                 partitions and will not mix them with it: use another output_dir or remove it",
                stage_dir.display()
            )));
        }
        if !dated && is_partition {
            return Err(Error::Config(format!(
                "{} holds dated partitions ({name}); a run without --run-date would replace all \
                 of them: pass --run-date or use another output_dir",
                stage_dir.display()
            )));
        }
    }
    Ok(())
}

/// Atomically swaps two directories (Linux `renameat2(RENAME_EXCHANGE)`); elsewhere, two
/// renames with a short window where the output is absent.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let ca = CString::new(a.as_os_str().as_bytes())?;
        let cb = CString::new(b.as_os_str().as_bytes())?;
        // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        // Filesystems without RENAME_EXCHANGE fall through to the portable path.
        if err.raw_os_error() != Some(libc::EINVAL) && err.raw_os_error() != Some(libc::ENOSYS) {
            return Err(err);
        }
    }
    let old = a.with_extension("old");
    std::fs::rename(b, &old)?;
    std::fs::rename(a, b)?;
    std::fs::rename(&old, a)
}

/// A private scratch directory under the run's temporary directory (`parent`), for spill
/// files and intermediate tables: removed on drop — success, error and Ctrl-C alike — and
/// `parent` too if that leaves it empty (it must not outlive the run).
pub struct ScratchDir {
    dir: Option<tempfile::TempDir>,
    parent: PathBuf,
}

impl ScratchDir {
    /// Creates `parent/PREFIXxxxxxx`.
    pub fn new(parent: &Path, prefix: &str) -> Result<Self> {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|e| {
                Error::io(
                    format!("cannot create a scratch dir in {}", parent.display()),
                    e,
                )
            })?;
        Ok(ScratchDir {
            dir: Some(dir),
            parent: parent.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        drop(self.dir.take());
        let _ = std::fs::remove_dir(&self.parent);
    }
}
