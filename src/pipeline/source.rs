//! Sources through a DataFusion `SessionContext`: files, directories and globs of Parquet or
//! CSV, registered as tables under their source names, and SQL over them.

use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionConfig, SessionContext};

use super::spec::{FileFormat, PipelineSpec, SourceSpec};
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
            let context = || format!("{}: [sources.{name}]", spec.file.display());
            if !glob && !path.exists() {
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
            let mut location = path.to_string_lossy().into_owned();
            let extension = if path.is_dir() {
                if !location.ends_with('/') {
                    location.push('/');
                }
                format.extension().to_string()
            } else {
                // A single file or a glob: list exactly what was named, whatever its extension.
                path.extension()
                    .map(|e| format!(".{}", e.to_string_lossy()))
                    .unwrap_or_default()
            };
            let registered = match format {
                FileFormat::Parquet => {
                    let options = ParquetReadOptions {
                        file_extension: &extension,
                        ..Default::default()
                    };
                    ctx.register_parquet(name.as_str(), &location, options)
                        .await
                }
                FileFormat::Csv => {
                    let options = CsvReadOptions::new()
                        .has_header(*has_header)
                        .file_extension(&extension);
                    ctx.register_csv(name.as_str(), &location, options).await
                }
            };
            registered.map_err(|e| {
                Error::Input(format!(
                    "{}: cannot open {}: {e}",
                    context(),
                    path.display()
                ))
            })?;
        }
    }
    Ok(())
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
    frame.map_err(|e| Error::Input(format!("{}: [sources.{name}]: {e}", spec.file.display())))
}
