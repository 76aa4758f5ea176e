//! Sources through a DataFusion `SessionContext`: files, directories and globs of Parquet or
//! CSV, registered as tables under their source names, and SQL over them.

use std::path::Path;
use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::options::ReadOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionConfig, SessionContext};

use futures::StreamExt;

use super::incremental::FileEntry;
use super::spec::{FileFormat, PipelineSpec, SourceSpec};
use super::stores::is_remote;
use crate::{Error, Result};

/// The session every sketchpipe run and query uses. Quoted file paths work as tables in SQL
/// (`SELECT * FROM 'data/x.parquet'`, relative to the current directory).
pub fn session() -> SessionContext {
    session_with_memory(super::spec::DEFAULT_MEMORY).expect("the default runtime builds")
}

/// A session whose group-bys and sorts spill to disk (the OS temporary directory) beyond
/// `memory` bytes, shared fairly between the operators of a query.
pub fn session_with_memory(memory: u64) -> Result<SessionContext> {
    let config = SessionConfig::new().with_information_schema(true);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(memory as usize)))
        .with_object_store_registry(Arc::new(super::stores::CloudStores::default()))
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime).enable_url_table();
    crate::udf::register(&ctx);
    Ok(ctx)
}

/// Registers every `path` source under its name, so SQL sources can refer to them. Only file
/// metadata is read (Parquet footers; for CSV, the sample DataFusion infers a schema from).
pub async fn register_sources(ctx: &SessionContext, spec: &PipelineSpec) -> Result<()> {
    for (name, source) in &spec.sources {
        if let SourceSpec::Path {
            path,
            glob,
            format,
            has_header,
        } = source
        {
            let context = || spec.section(&format!("sources.{name}"));
            if !glob && !is_remote(path) && !path.exists() {
                return Err(Error::io(
                    format!(
                        "{}: {} does not exist (paths in a pipeline file are relative to the \
                         file)",
                        context(),
                        path.display()
                    ),
                    std::io::ErrorKind::NotFound.into(),
                ));
            }
            let (url, extension) = location(path, *format)?;
            let registered = match format {
                FileFormat::Parquet => {
                    let options = ParquetReadOptions {
                        file_extension: &extension,
                        ..Default::default()
                    };
                    register_listing(ctx, name, url, options).await
                }
                FileFormat::Csv => {
                    let options = CsvReadOptions::new()
                        .has_header(*has_header)
                        .file_extension(&extension);
                    register_listing(ctx, name, url, options).await
                }
            };
            registered.map_err(|e| {
                let what = format!("{}: cannot open {}", context(), path.display());
                // An object store that cannot be reached or has nothing at the URL is an I/O
                // failure (exit 4), as a local path that does not exist is.
                let missing =
                    matches!(&e, DataFusionError::Plan(m) if m.starts_with("No files found"));
                let message = e.to_string();
                let io = Error::DataFusion(e).exit_kind() == crate::error::ExitKind::Io;
                if is_remote(path) && (io || missing) {
                    Error::io(what, std::io::Error::other(message))
                } else {
                    Error::Input(format!("{what}: {message}"))
                }
            })?;
        }
    }
    Ok(())
}

/// Registers `url` as table `name`, as `SessionContext::register_parquet`/`register_csv` do
/// from a string — which would drop the glob of an object-store URL (DataFusion parses globs
/// in local paths only).
async fn register_listing(
    ctx: &SessionContext,
    name: &str,
    url: ListingTableUrl,
    options: impl ReadOptions<'_>,
) -> datafusion::error::Result<()> {
    let state = ctx.state();
    let listing = options.to_listing_options(&ctx.copied_config(), ctx.copied_table_options());
    let schema = options
        .get_resolved_schema(&ctx.copied_config(), state, url.clone())
        .await?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(listing)
        .with_schema(schema);
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// Where DataFusion lists a `path` source's files, and the extension it keeps: a directory's
/// (or an object-store prefix's, ending in `/`) files of the format's extension; a single file
/// or a glob, exactly what was named, whatever its extension.
fn location(path: &Path, format: FileFormat) -> Result<(ListingTableUrl, String)> {
    let mut location = path.to_string_lossy().into_owned();
    let remote = is_remote(path);
    let dir = if remote {
        location.ends_with('/')
    } else {
        path.is_dir()
    };
    let extension = if dir {
        if !location.ends_with('/') {
            location.push('/');
        }
        format.extension().to_string()
    } else {
        path.extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default()
    };
    let bad = |e: String| Error::Config(format!("{location}: not a URL sketchpipe can list: {e}"));
    let url = match location.find(['*', '?', '[']) {
        // The part up to the last `/` before the first glob character is the prefix listed;
        // the rest is matched against the objects under it, as DataFusion does for local globs.
        Some(star) if remote => {
            let split = location[..star].rfind('/').map_or(0, |i| i + 1);
            let prefix = url::Url::parse(&location[..split]).map_err(|e| bad(e.to_string()))?;
            let pattern = glob::Pattern::new(&location[split..]).map_err(|e| bad(e.to_string()))?;
            ListingTableUrl::try_new(prefix, Some(pattern))?
        }
        _ => ListingTableUrl::parse(&location)?,
    };
    Ok((url, extension))
}

/// The files of `path` source `name` as DataFusion lists them (path, size, modification
/// time), for an `incremental` stage.
pub async fn source_files(
    ctx: &SessionContext,
    spec: &PipelineSpec,
    name: &str,
) -> Result<Vec<FileEntry>> {
    let SourceSpec::Path { path, format, .. } = &spec.sources[name] else {
        return Err(Error::Config(format!(
            "[sources.{name}]: an incremental stage needs a `path` source"
        )));
    };
    let (url, extension) = location(path, *format)?;
    let store = ctx.runtime_env().object_store(url.object_store())?;
    let state = ctx.state();
    let mut listed = url
        .list_all_files(&state, store.as_ref(), &extension)
        .await?;
    let mut out = Vec::new();
    // Local files keep their absolute path (as manifests have always recorded them); objects
    // their full URL, so that DataFusion reads them from the same store.
    let prefix = if is_remote(path) {
        url.object_store().as_str().to_string()
    } else {
        "/".to_string()
    };
    while let Some(meta) = listed.next().await {
        let meta = meta?;
        out.push(FileEntry {
            file: format!("{prefix}{}", meta.location),
            bytes: meta.size,
            modified: meta
                .last_modified
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        });
    }
    out.sort();
    Ok(out)
}

/// The rows of `files` of `path` source `name` (a subset of its files, same format).
pub async fn files_frame(
    ctx: &SessionContext,
    spec: &PipelineSpec,
    name: &str,
    files: &[FileEntry],
) -> Result<DataFrame> {
    let SourceSpec::Path {
        path,
        format,
        has_header,
        ..
    } = &spec.sources[name]
    else {
        return Err(Error::Config(format!(
            "[sources.{name}]: an incremental stage needs a `path` source"
        )));
    };
    let (_, extension) = location(path, *format)?;
    let paths: Vec<String> = files.iter().map(|f| f.file.clone()).collect();
    let frame = match format {
        FileFormat::Parquet => {
            let options = ParquetReadOptions {
                file_extension: &extension,
                ..Default::default()
            };
            ctx.read_parquet(paths, options).await
        }
        FileFormat::Csv => {
            let options = CsvReadOptions::new()
                .has_header(*has_header)
                .file_extension(&extension);
            ctx.read_csv(paths, options).await
        }
    };
    frame.map_err(|e| Error::Input(format!("{}: {e}", spec.section(&format!("sources.{name}")))))
}

/// The data frame of a source (registered by [`register_sources`]).
pub async fn source_frame(
    ctx: &SessionContext,
    spec: &PipelineSpec,
    name: &str,
) -> Result<DataFrame> {
    let frame = match &spec.sources[name] {
        SourceSpec::Path { .. } => ctx.table(name).await,
        SourceSpec::Sql { query } => ctx.sql(query).await,
    };
    frame.map_err(|e| Error::Input(format!("{}: {e}", spec.section(&format!("sources.{name}")))))
}

/// The rows of `path` source `name` as a corpus of tables, one per file: each file's rows
/// with its stem (`a/b/t07.parquet` → `t07`) in column `column`, the `columns` cast to the
/// source's types (`schema`), all files one after the other. A file that lacks one of
/// `columns` is an error naming both, or with `skip_missing` left out; the skipped files are
/// returned.
pub async fn file_tables_frame(
    ctx: &SessionContext,
    spec: &PipelineSpec,
    name: &str,
    column: &str,
    columns: &[String],
    schema: &datafusion::arrow::datatypes::Schema,
    skip_missing: bool,
) -> Result<(Option<DataFrame>, Vec<String>)> {
    use datafusion::prelude::{cast, col, lit};
    let files = source_files(ctx, spec, name).await?;
    let mut frame: Option<DataFrame> = None;
    let mut skipped = Vec::new();
    for file in &files {
        let one = files_frame(ctx, spec, name, std::slice::from_ref(file)).await?;
        let have = one.schema().as_arrow().clone();
        if let Some(missing) = columns
            .iter()
            .find(|c| c.as_str() != column && have.index_of(c).is_err())
        {
            if skip_missing {
                skipped.push(file.file.clone());
                continue;
            }
            return Err(Error::Input(format!(
                "{}: file {} has no column `{missing}` (each file is one table of the corpus; \
                 set on_missing = \"skip\" on the stage to leave such files out)",
                spec.section(&format!("sources.{name}")),
                file.file
            )));
        }
        let stem = Path::new(&file.file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let exprs = columns
            .iter()
            .map(|c| {
                if c == column {
                    lit(stem.clone()).alias(c)
                } else {
                    let t = schema.field_with_name(c).map(|f| f.data_type().clone());
                    let e = col(datafusion::common::Column::from_name(c));
                    match t {
                        Ok(t) => cast(e, t).alias(c),
                        Err(_) => e,
                    }
                }
            })
            .collect::<Vec<_>>();
        let one = one.select(exprs)?;
        frame = Some(match frame {
            None => one,
            Some(f) => f.union(one)?,
        });
    }
    Ok((frame, skipped))
}
