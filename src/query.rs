//! `sketchpipe sql`: query stage outputs with SQL.
//!
//! Every stage directory under an output directory becomes a schema and each of its tables a
//! table: `SELECT * FROM top.vector`. Dated runs (`STAGE/date=YYYY-MM-DD/…`) are one table with
//! a `date` column over all partitions. The pipeline's own sources are not registered, but any
//! file can be queried by quoting its path: `SELECT count(*) FROM 'data/x.parquet'`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::pipeline::sink::{SUCCESS, TMP_DIR};
use crate::pipeline::source::session;
use crate::{Error, Result};

/// How `sketchpipe sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// A registered table: `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RegisteredTable {
    pub schema: String,
    pub table: String,
    /// Whether the table spans `date=` partitions.
    pub dated: bool,
}

/// Registers the outputs under `dir` in `ctx` (see the module docs).
pub async fn register_outputs(ctx: &SessionContext, dir: &Path) -> Result<Vec<RegisteredTable>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::io(
            format!(
                "cannot read output directory {} (has the pipeline run?)",
                dir.display()
            ),
            e,
        )
    })?;
    let mut stages: Vec<_> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.starts_with('_') && n != TMP_DIR)
        .collect();
    stages.sort();
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| Error::Config("the SQL engine has no default catalog".into()))?;
    let mut registered = Vec::new();
    for stage in stages {
        let stage_dir = dir.join(&stage);
        let partitions = dated_partitions(&stage_dir);
        let (tables, dated) = if !partitions.is_empty() {
            let mut names = BTreeSet::new();
            for p in &partitions {
                names.extend(parquet_tables(p));
            }
            (names, true)
        } else if stage_dir.join(SUCCESS).exists() {
            (parquet_tables(&stage_dir), false)
        } else {
            continue; // not a sketchpipe output
        };
        catalog.register_schema(&stage, Arc::new(MemorySchemaProvider::new()))?;
        for table in tables {
            let reference = TableReference::partial(stage.as_str(), table.as_str());
            if dated {
                let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                    .with_file_extension(format!("/{table}.parquet"))
                    .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8)]);
                let location = format!("{}/", stage_dir.display());
                ctx.register_listing_table(reference, location, options, None, None)
                    .await?;
            } else {
                let file = stage_dir.join(format!("{table}.parquet"));
                ctx.register_parquet(
                    reference,
                    file.to_string_lossy().as_ref(),
                    ParquetReadOptions::default(),
                )
                .await?;
            }
            registered.push(RegisteredTable {
                schema: stage.clone(),
                table,
                dated,
            });
        }
    }
    Ok(registered)
}

/// Complete `date=…` partitions of a stage directory.
fn dated_partitions(stage_dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(stage_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("date="))
                && p.join(SUCCESS).exists()
        })
        .collect();
    out.sort();
    out
}

fn parquet_tables(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".parquet").map(str::to_string)
        })
        .collect()
}

/// Runs `sql` over the outputs in `dir` (if any) and prints the result to `out`. Quoted file
/// paths (`FROM 'data/x.parquet'`) and the SQL functions work with or without outputs.
pub async fn run_query(
    dir: Option<&Path>,
    sql: &str,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<()> {
    query(&session(), dir, sql, format, out, true).await
}

/// [`run_query`] on a given session (e.g. one whose queries run on a cluster).
pub async fn run_query_on(
    ctx: &SessionContext,
    dir: Option<&Path>,
    sql: &str,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<()> {
    query(ctx, dir, sql, format, out, false).await
}

/// Runs `sql` over the outputs in `dir` (if any), as [`run_query`] does, and returns the
/// result: its schema (also when it has no rows) and its batches.
pub async fn query_batches(dir: Option<&Path>, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    collect(&session(), dir, sql, true).await
}

async fn query(
    ctx: &SessionContext,
    dir: Option<&Path>,
    sql: &str,
    format: OutputFormat,
    out: &mut dyn Write,
    local: bool,
) -> Result<()> {
    let (_, batches) = collect(ctx, dir, sql, local).await?;
    write_batches(&batches, format, out)
}

/// The query's result; with `local`, its file scans read batches sized to the columns they
/// read ([`crate::pipeline::ordered::sized`]; a cluster plans its own scans).
async fn collect(
    ctx: &SessionContext,
    dir: Option<&Path>,
    sql: &str,
    local: bool,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let tables = match dir {
        Some(dir) => register_outputs(ctx, dir).await?,
        None => Vec::new(),
    };
    let hint = match (dir, tables.is_empty()) {
        (_, false) => format!("(tables: {})", list(&tables)),
        (Some(dir), true) => format!(
            "(no stage outputs under {}: run the pipeline first with sketchpipe run PIPELINE.toml)",
            dir.display()
        ),
        (None, true) => {
            "(no --pipeline or --dir given: only quoted file paths are tables)".to_string()
        }
    };
    let frame = ctx.sql(sql).await.map_err(|e| {
        // A mistake in the SQL is the user's command line (exit 2); anything else, the data.
        let e = Error::from(e);
        let message = format!("{e}\n{hint}");
        match e.exit_kind() {
            crate::ExitKind::Config => Error::Config(message),
            _ => Error::Input(message),
        }
    })?;
    let frame = match local {
        true => crate::pipeline::ordered::sized(frame).await?,
        false => frame,
    };
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    Ok((schema, batches))
}

fn list(tables: &[RegisteredTable]) -> String {
    tables
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.table))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints batches as a table, CSV or JSON.
pub fn write_batches(
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<()> {
    let io = |e| Error::io("cannot write the query result", e);
    match format {
        OutputFormat::Table => {
            let text = arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{text}").map_err(io)?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for b in batches {
                writer.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            drop(writer);
            writeln!(out).map_err(io)?;
        }
    }
    out.flush().map_err(io)
}
