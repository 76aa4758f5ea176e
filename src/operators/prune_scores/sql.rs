//! What the stage's SQL queries share: tables registered for one stage, the per-id scratch
//! table, and reading a single number back.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use arrow_ipc::writer::FileWriter;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema, UInt64Type};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::options::ArrowReadOptions;
use datafusion::prelude::SessionContext;

use crate::{Error, Result};

/// A table registered for the duration of one stage's queries under a private name made of
/// lower-case letters, digits and `_` (a plain SQL identifier: no quoting needed), its
/// columns the stage's own fixed names.
pub(super) struct Registered<'a> {
    ctx: &'a SessionContext,
    pub name: String,
}

impl<'a> Registered<'a> {
    pub(super) fn new(ctx: &'a SessionContext, what: &str, frame: DataFrame) -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("__sketchpipe_{what}_{}_{n}", std::process::id());
        ctx.register_table(name.as_str(), frame.into_view())?;
        Ok(Registered { ctx, name })
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let _ = self.ctx.deregister_table(self.name.as_str());
    }
}

/// The first column of the first row of `query`, as a `u64` (null → `None`).
pub(super) async fn scalar_u64(ctx: &SessionContext, query: &str) -> Result<Option<u64>> {
    let batches = ctx.sql(query).await?.collect().await?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let col = cast(b.column(0), &DataType::UInt64)?;
    let col = col.as_primitive::<UInt64Type>();
    Ok((!col.is_null(0)).then(|| col.value(0)))
}

/// The per-id scratch table (one row per id, [`super::by_id_schema`]) as it is written: an
/// Arrow IPC file — read back whole by the ranking's queries, so nothing is gained by
/// Parquet's encoding and compression, which cost more than the rest of the write.
pub(super) struct ByIdWriter(FileWriter<BufWriter<File>>);

impl ByIdWriter {
    pub(super) fn create(path: &Path, schema: &Schema) -> Result<Self> {
        let file = File::create(path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        Ok(ByIdWriter(FileWriter::try_new_buffered(file, schema)?))
    }

    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        Ok(self.0.write(batch)?)
    }

    pub(super) fn finish(mut self) -> Result<()> {
        Ok(self.0.finish()?)
    }
}

/// The per-id scratch table at `path` (a `.arrow` file) as a frame.
pub(super) async fn read_by_id(ctx: &SessionContext, path: &Path) -> Result<DataFrame> {
    let path = path.to_string_lossy();
    Ok(ctx
        .read_arrow(path.as_ref(), ArrowReadOptions::default())
        .await?)
}
