//! The pipeline file: TOML → a validated [`PipelineSpec`], before any data is read.
//!
//! Validation covers unknown sections and keys, unknown ops, bad values, stages whose input
//! does not exist, and dependency cycles; every error names the file, the section and the key.
//! Column names and types are checked later against the sources' schemas (see
//! [`super::run`](mod@super::run)), still before any row is read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::incremental::{manifest_schema, MANIFEST};
use super::keys::Keys;
use datafusion::arrow::datatypes::Schema;

use crate::operators::coordinated_sketch::{CoordinatedSketchParams, DuplicateKeys};
use crate::operators::prune_scores::{
    self, KeepSize, Mask, MaskMode, MissingRuns, ProxyParams, PruneScoresParams, ScoreKind,
    ScoresInput,
};
use crate::operators::sketch_regression::RegressionParams;
use crate::operators::top_eigenvector::Frobenius;
use crate::operators::{Algorithm, TableDecl, TopEigenvectorOp, TopEigenvectorParams};
use crate::rows::OnInvalid;
use crate::sketch::Method;
use crate::{Error, Result};

/// The ops this build implements.
pub const OPS: [&str; 6] = [
    "top_eigenvector",
    "prune_scores",
    "coordinated_sketch",
    "sketch_product",
    "sketch_merge",
    "sketch_regression",
];
/// Memory DataFusion may use for a run's group-bys and sorts before spilling to disk.
pub const DEFAULT_MEMORY: u64 = 4 << 30;
/// Names that would clash with DataFusion's own schemas in `sketchpipe sql`.
const RESERVED_NAMES: [&str; 3] = ["public", "information_schema", "datafusion"];

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The pipeline file, as given.
    pub file: PathBuf,
    pub name: String,
    /// Where stage outputs go (`[pipeline] output_dir`, relative to the pipeline file).
    pub output_dir: PathBuf,
    /// `[pipeline] memory`: what DataFusion's group-bys and sorts may hold before spilling.
    pub memory: u64,
    pub sources: BTreeMap<String, SourceSpec>,
    /// Sources declared `shuffled = true`: their rows are already in a uniformly random order
    /// (the user vouches for it; recorded as `order_randomised` in stats).
    pub shuffled_sources: BTreeSet<String>,
    /// Stages in an order where every stage comes after the stage it reads from.
    pub stages: Vec<StageSpec>,
}

/// A named input.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A file, a directory of files or a glob; `path` is resolved against the pipeline file.
    Path {
        path: PathBuf,
        /// Whether `path` holds glob characters.
        glob: bool,
        format: FileFormat,
        /// CSV only: whether the first line names the columns.
        has_header: bool,
    },
    /// Any SQL query; the other `path` sources are registered as tables under their names.
    Sql { query: String },
}

impl SourceSpec {
    /// How the source is described in output metadata and messages.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Path { path, .. } => path.display().to_string(),
            SourceSpec::Sql { query } => format!("sql: {query}"),
        }
    }
}

/// File formats a `path` source can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Csv,
}

impl FileFormat {
    fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" | "parq" | "pq" => Some(FileFormat::Parquet),
            "csv" => Some(FileFormat::Csv),
            _ => None,
        }
    }

    /// The file extension DataFusion lists for this format.
    pub fn extension(&self) -> &'static str {
        match self {
            FileFormat::Parquet => ".parquet",
            FileFormat::Csv => ".csv",
        }
    }
}

/// What a stage reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// A `[sources.NAME]` entry.
    Source(String),
    /// Table `table` written by stage `stage` earlier in the same run (`source = "stage.table"`).
    StageTable { stage: String, table: String },
    /// Sketches: `sketch_product`'s `left` and `right`, or `sketch_merge`'s `inputs`.
    Sketches(Vec<SketchRef>),
}

/// Where a sketch comes from: a `coordinated_sketch` stage of this pipeline, or the output
/// directory of one written earlier (any day, any machine).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SketchRef {
    Stage(String),
    Dir(PathBuf),
}

impl std::fmt::Display for SketchRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SketchRef::Stage(s) => write!(f, "stage `{s}`"),
            SketchRef::Dir(d) => write!(f, "{}", d.display()),
        }
    }
}

impl Input {
    /// The stages this input reads from.
    pub fn stages(&self) -> Vec<&str> {
        match self {
            Input::Source(_) => Vec::new(),
            Input::StageTable { stage, .. } => vec![stage],
            Input::Sketches(refs) => refs
                .iter()
                .filter_map(|r| match r {
                    SketchRef::Stage(s) => Some(s.as_str()),
                    SketchRef::Dir(_) => None,
                })
                .collect(),
        }
    }
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Source(s) => write!(f, "source `{s}`"),
            Input::StageTable { stage, table } => write!(f, "table `{stage}.{table}`"),
            Input::Sketches(refs) => write!(
                f,
                "sketches {}",
                refs.iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A validated stage.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    pub input: Input,
    pub op: OpSpec,
    /// The stage's keys as written (after `--set`), recorded in output metadata.
    pub params: Table,
}

/// The op of a stage, with its validated parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum OpSpec {
    TopEigenvector(TopEigenvectorParams),
    PruneScores(PruneScoresParams),
    CoordinatedSketch(CoordinatedSketchParams),
    SketchProduct,
    SketchMerge,
    SketchRegression(RegressionParams),
}

impl OpSpec {
    /// The op's name as written in the pipeline file.
    pub fn name(&self) -> &'static str {
        match self {
            OpSpec::TopEigenvector(_) => "top_eigenvector",
            OpSpec::PruneScores(_) => "prune_scores",
            OpSpec::CoordinatedSketch(_) => "coordinated_sketch",
            OpSpec::SketchProduct => "sketch_product",
            OpSpec::SketchMerge => "sketch_merge",
            OpSpec::SketchRegression(_) => "sketch_regression",
        }
    }

    /// The names of the tables the op writes.
    pub fn table_names(&self) -> Vec<&'static str> {
        match self {
            OpSpec::TopEigenvector(p) => TopEigenvectorOp::tables(p.incremental)
                .iter()
                .map(|t| t.name)
                .chain(p.incremental.then_some(MANIFEST))
                .collect(),
            OpSpec::PruneScores(p) => prune_scores::table_names(p),
            OpSpec::CoordinatedSketch(p) if p.incremental => vec!["sketch", "stats", MANIFEST],
            OpSpec::CoordinatedSketch(_) => vec!["sketch", "stats"],
            OpSpec::SketchProduct => vec!["product", "stats"],
            OpSpec::SketchMerge => vec!["sketch", "stats"],
            OpSpec::SketchRegression(_) => vec!["coefficients", "stats"],
        }
    }

    /// The tables the op writes, with their schemas, for an input of schema `input`.
    pub fn tables(&self, input: &Schema) -> Result<Vec<TableDecl>> {
        let mut tables =
            match self {
                OpSpec::TopEigenvector(p) => TopEigenvectorOp::tables(p.incremental),
                OpSpec::PruneScores(p) => p.tables(input)?,
                OpSpec::CoordinatedSketch(p) => p.tables(input)?,
                OpSpec::SketchProduct => crate::operators::sketch_product::tables(),
                OpSpec::SketchRegression(_) => crate::operators::sketch_regression::tables(),
                OpSpec::SketchMerge => return Err(Error::Config(
                    "a sketch_merge output is read as a sketch (sketch_product's left/right, or \
                     another sketch_merge's inputs), not as a `source`"
                        .into(),
                )),
            };
        if self.incremental() {
            tables.push(TableDecl {
                name: MANIFEST,
                schema: manifest_schema(),
            });
        }
        Ok(tables)
    }

    /// The input columns the op reads (the scan projects only these).
    pub fn columns(&self) -> &[String] {
        match self {
            OpSpec::TopEigenvector(p) => &p.columns,
            OpSpec::PruneScores(p) => p.columns(),
            OpSpec::CoordinatedSketch(p) => p.read_columns(),
            OpSpec::SketchProduct | OpSpec::SketchMerge | OpSpec::SketchRegression(_) => &[],
        }
    }

    /// The pipeline-file key that names input column `column` (for error messages).
    pub fn column_key(&self, column: &str) -> &'static str {
        match self {
            OpSpec::TopEigenvector(_) => "columns",
            OpSpec::PruneScores(p) => p.key_of(column),
            OpSpec::CoordinatedSketch(p) if *column == p.key => "key",
            OpSpec::CoordinatedSketch(_) => "columns",
            OpSpec::SketchProduct | OpSpec::SketchRegression(_) => "left",
            OpSpec::SketchMerge => "inputs",
        }
    }

    /// Whether the stage resumes from its previous output and reads only new files.
    pub fn incremental(&self) -> bool {
        match self {
            OpSpec::TopEigenvector(p) => p.incremental,
            OpSpec::CoordinatedSketch(p) => p.incremental,
            _ => false,
        }
    }

    /// The seed recorded in output metadata.
    pub fn seed(&self) -> Option<u64> {
        match self {
            OpSpec::TopEigenvector(p) => Some(p.seed),
            OpSpec::PruneScores(p) => Some(p.seed),
            OpSpec::CoordinatedSketch(p) => Some(p.seed),
            OpSpec::SketchProduct | OpSpec::SketchMerge | OpSpec::SketchRegression(_) => None,
        }
    }

    /// `(seed, memory budget)` when the stage reads its input through the shuffle.
    pub fn shuffle(&self) -> Option<(u64, u64)> {
        match self {
            OpSpec::TopEigenvector(p) => p.shuffle.then_some((p.seed, p.shuffle_memory)),
            _ => None,
        }
    }

    /// Whether the stage is one DataFusion query over its input rather than operator passes
    /// over a shared scan (`prune_scores` over logged outputs: a spilling group-by).
    pub fn is_query(&self) -> bool {
        matches!(self, OpSpec::PruneScores(p) if p.proxy().is_none())
            || matches!(
                self,
                OpSpec::SketchProduct | OpSpec::SketchMerge | OpSpec::SketchRegression(_)
            )
    }
}

impl PipelineSpec {
    /// Reads and validates a pipeline file, applying `--set STAGE.KEY=VALUE` overrides first.
    pub fn load(file: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::io(format!("cannot read pipeline file {}", file.display()), e))?;
        Self::parse(&text, file, overrides)
    }

    /// Validates pipeline-file text; `file` is used for messages and to resolve relative paths.
    pub fn parse(text: &str, file: &Path, overrides: &[String]) -> Result<Self> {
        let mut doc: Table = text.parse().map_err(|e: toml::de::Error| {
            Error::Config(format!(
                "{}: invalid TOML: {}",
                file.display(),
                e.message().trim()
            ))
        })?;
        apply_overrides(&mut doc, file, overrides)?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();

        let mut top = Keys::new(file, "top level", &doc);
        let pipeline = section(&mut top, "pipeline")?;
        let sources_table = section(&mut top, "sources")?;
        let stages_table = section(&mut top, "stages")?;
        top.finish()?;

        let mut keys = Keys::new(file, "[pipeline]", &pipeline);
        let default_name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".into());
        let name = keys.string("name")?.unwrap_or(default_name);
        let output_dir = keys
            .string("output_dir")?
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("out").join(&name));
        keys.string("description")?;
        let memory = keys.bytes("memory")?.unwrap_or(DEFAULT_MEMORY);
        if memory < 64 << 20 {
            return Err(keys.error(
                "memory",
                "must be at least 64MiB (sorts reserve memory up front)",
            ));
        }
        keys.finish()?;

        let mut sources = BTreeMap::new();
        let mut shuffled_sources = BTreeSet::new();
        for (sname, value) in &sources_table {
            let section = format!("[sources.{sname}]");
            let table = as_table(file, &section, value)?;
            check_name(file, &section, sname)?;
            let (source, shuffled) = parse_source(file, &section, table, &base)?;
            sources.insert(sname.clone(), source);
            if shuffled {
                shuffled_sources.insert(sname.clone());
            }
        }

        if stages_table.is_empty() {
            return Err(Error::Config(format!(
                "{}: the pipeline has no [stages.NAME] sections: nothing to do",
                file.display()
            )));
        }
        let mut stages = Vec::new();
        for (name, value) in &stages_table {
            let section = format!("[stages.{name}]");
            let table = as_table(file, &section, value)?;
            check_name(file, &section, name)?;
            stages.push(parse_stage(file, &base, &section, name, table)?);
        }
        let stages = resolve_order(file, &sources, stages)?;

        Ok(PipelineSpec {
            file: file.to_path_buf(),
            name,
            output_dir: base.join(output_dir),
            memory,
            sources,
            shuffled_sources,
            stages,
        })
    }
}

fn section(keys: &mut Keys<'_>, name: &'static str) -> Result<Table> {
    match keys.table_value(name) {
        None => Ok(Table::new()),
        Some(Value::Table(t)) => Ok(t.clone()),
        Some(v) => Err(keys.error(name, format!("expected a table, got {}", v.type_str()))),
    }
}

fn as_table<'a>(file: &Path, section: &str, value: &'a Value) -> Result<&'a Table> {
    value.as_table().ok_or_else(|| {
        Error::Config(format!(
            "{}: {section}: expected a table of keys, got {}",
            file.display(),
            value.type_str()
        ))
    })
}

fn check_name(file: &Path, section: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(Error::Config(format!(
            "{}: {section}: the name `{name}` must be lower-case letters, digits and `_`, starting \
             with a letter (it becomes an SQL identifier)",
            file.display()
        )));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::Config(format!(
            "{}: {section}: `{name}` is reserved by the SQL engine; choose another name",
            file.display()
        )));
    }
    Ok(())
}

/// A source and whether it is declared `shuffled = true`.
fn parse_source(
    file: &Path,
    section: &str,
    table: &Table,
    base: &Path,
) -> Result<(SourceSpec, bool)> {
    let mut keys = Keys::new(file, section, table);
    let shuffled = keys.boolean("shuffled")?.unwrap_or(false);
    let source = parse_source_kind(file, section, &mut keys, base)?;
    keys.finish()?;
    Ok((source, shuffled))
}

fn parse_source_kind(
    file: &Path,
    section: &str,
    keys: &mut Keys<'_>,
    base: &Path,
) -> Result<SourceSpec> {
    let path = keys.string("path")?;
    let sql = keys.string("sql")?;
    let format = keys.choice("format", &["parquet", "csv"])?;
    let has_header = keys.boolean("has_header")?;
    match (path, sql) {
        (Some(_), Some(_)) => Err(keys_error(
            file,
            section,
            "sql",
            "give either `path` or `sql`, not both",
        )),
        (None, None) => Err(keys_error(
            file,
            section,
            "path",
            "is required (or give `sql`)",
        )),
        (None, Some(query)) => {
            if format.is_some() || has_header.is_some() {
                return Err(keys_error(
                    file,
                    section,
                    "format",
                    "only applies to `path` sources",
                ));
            }
            Ok(SourceSpec::Sql { query })
        }
        (Some(p), None) => {
            let path = base.join(&p);
            let glob = p.contains(['*', '?', '[']);
            let format = match format.as_deref() {
                Some("parquet") => FileFormat::Parquet,
                Some("csv") => FileFormat::Csv,
                _ => detect_format(&path, glob).ok_or_else(|| {
                    keys_error(
                        file,
                        section,
                        "path",
                        format!(
                            "cannot tell the format of `{p}` from its name; add format = \
                             \"parquet\" or \"csv\""
                        ),
                    )
                })?,
            };
            if has_header.is_some() && format != FileFormat::Csv {
                return Err(keys_error(
                    file,
                    section,
                    "has_header",
                    "only applies to CSV sources",
                ));
            }
            Ok(SourceSpec::Path {
                path,
                glob,
                format,
                has_header: has_header.unwrap_or(true),
            })
        }
    }
}

fn keys_error(file: &Path, section: &str, key: &str, msg: impl std::fmt::Display) -> Error {
    Error::Config(format!("{}: {section} key `{key}`: {msg}", file.display()))
}

/// The format of a file or glob from its extension; of a directory, from the first file in it
/// with a known extension (listing a directory reads no data).
fn detect_format(path: &Path, glob: bool) -> Option<FileFormat> {
    if glob || !path.is_dir() {
        return FileFormat::from_extension(path);
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    names.iter().find_map(|p| FileFormat::from_extension(p))
}

fn parse_stage(
    file: &Path,
    base: &Path,
    section: &str,
    name: &str,
    table: &Table,
) -> Result<StageSpec> {
    let mut keys = Keys::new(file, section, table);
    let op = keys.required_string("op")?;
    let op = match op.as_str() {
        "top_eigenvector" => OpSpec::TopEigenvector(parse_top_eigenvector(&mut keys)?),
        "prune_scores" => OpSpec::PruneScores(parse_prune_scores(file, section, &mut keys)?),
        "coordinated_sketch" => OpSpec::CoordinatedSketch(parse_coordinated_sketch(&mut keys)?),
        "sketch_product" => OpSpec::SketchProduct,
        "sketch_merge" => OpSpec::SketchMerge,
        "sketch_regression" => {
            let target = keys.string("target")?;
            let lambda = keys.float("lambda")?.unwrap_or(0.0);
            if !(lambda >= 0.0 && lambda.is_finite()) {
                return Err(keys.error("lambda", format!("must be ≥ 0, got {lambda}")));
            }
            OpSpec::SketchRegression(RegressionParams { target, lambda })
        }
        other => {
            return Err(keys.error(
                "op",
                format!("unknown op `{other}` (available: {})", OPS.join(", ")),
            ))
        }
    };
    let mut op = op;
    if keys.boolean("incremental")?.unwrap_or(false) {
        let refuse = |why: &str| keys.error("incremental", why.to_string());
        match &mut op {
            OpSpec::TopEigenvector(p) => {
                if !matches!(
                    p.algorithm,
                    Algorithm::Exact | Algorithm::FrequentDirections
                ) {
                    return Err(refuse(
                        "needs a mergeable algorithm: \"exact\" or \"frequent-directions\" \
                         (random-order and oja make one ordered pass over all the rows)",
                    ));
                }
                if p.verify {
                    return Err(refuse(
                        "cannot be combined with verify = true (it needs a pass over every file)",
                    ));
                }
                if p.shuffle {
                    return Err(refuse(
                        "cannot be combined with shuffle = true (exact and frequent-directions do \
                         not depend on the row order)",
                    ));
                }
                p.incremental = true;
            }
            OpSpec::CoordinatedSketch(p) => {
                if p.method == Method::Threshold {
                    return Err(refuse(
                        "threshold sketches do not merge; use method = \"priority\"",
                    ));
                }
                if p.duplicate_keys != DuplicateKeys::Error {
                    return Err(refuse(
                        "cannot be combined with duplicate_keys = \"sum\" or \"mean\" (a key's \
                         rows in earlier files are no longer read)",
                    ));
                }
                p.incremental = true;
            }
            _ => {
                return Err(refuse(
                    "only mergeable stages can be incremental: top_eigenvector (exact, \
                     frequent-directions) and coordinated_sketch (priority, exact, jl, \
                     countsketch)",
                ))
            }
        }
    }
    let sketch_ref = |v: String| {
        if v.contains('/') || v.contains('\\') || v.starts_with('.') {
            SketchRef::Dir(base.join(v))
        } else {
            SketchRef::Stage(v)
        }
    };
    let input = if matches!(op, OpSpec::SketchProduct | OpSpec::SketchRegression(_)) {
        let left = sketch_ref(keys.required_string("left")?);
        let right = sketch_ref(keys.required_string("right")?);
        keys.finish()?;
        Input::Sketches(vec![left, right])
    } else if op == OpSpec::SketchMerge {
        let inputs = keys.string_list("inputs")?;
        if inputs.len() < 2 {
            return Err(keys.error("inputs", "name at least two sketches to merge"));
        }
        keys.finish()?;
        Input::Sketches(inputs.into_iter().map(sketch_ref).collect())
    } else {
        let source = keys.required_string("source")?;
        keys.finish()?;
        match source.split_once('.') {
            Some((stage, table)) => Input::StageTable {
                stage: stage.to_string(),
                table: table.to_string(),
            },
            None => Input::Source(source),
        }
    };
    Ok(StageSpec {
        name: name.to_string(),
        input,
        op,
        params: table.clone(),
    })
}

fn parse_top_eigenvector(keys: &mut Keys<'_>) -> Result<TopEigenvectorParams> {
    let columns = keys.string_list("columns")?;
    let algorithm = keys
        .choice("algorithm", &Algorithm::NAMES)?
        .map(|s| Algorithm::parse(&s).expect("choice checked"))
        .unwrap_or(Algorithm::RandomOrder);
    let mut p = TopEigenvectorParams::new(columns, algorithm);
    let only_for = |keys: &Keys<'_>, key: &str, what: &str| {
        keys.error(key, format!("only applies to algorithm = {what}"))
    };
    if let Some(seed) = keys.unsigned("seed")? {
        p.seed = seed;
    }
    p.shuffle = keys.boolean("shuffle")?.unwrap_or(false);
    if let Some(m) = keys.bytes("shuffle_memory")? {
        if !p.shuffle {
            return Err(keys.error("shuffle_memory", "only applies with shuffle = true"));
        }
        if m < 1 << 20 {
            return Err(keys.error("shuffle_memory", "must be at least 1MiB"));
        }
        p.shuffle_memory = m;
    }
    p.verify = keys.boolean("verify")?.unwrap_or(false);
    if let Some(ell) = keys.unsigned("ell")? {
        if algorithm != Algorithm::FrequentDirections {
            return Err(only_for(keys, "ell", "\"frequent-directions\""));
        }
        if ell < 2 {
            return Err(keys.error("ell", format!("must be at least 2, got {ell}")));
        }
        p.ell = ell as usize;
    }
    let stream_order = "\"random-order\" or \"oja\"";
    if let Some(f) = keys.choice("frobenius", &["prefix", "exact"])? {
        if !algorithm.is_order_sensitive() {
            return Err(only_for(keys, "frobenius", stream_order));
        }
        p.frobenius = if f == "exact" {
            Frobenius::Exact
        } else {
            Frobenius::Prefix
        };
    }
    if let Some(m) = keys.unsigned("prefix_rows")? {
        if !algorithm.is_order_sensitive() || p.frobenius != Frobenius::Prefix {
            return Err(keys.error(
                "prefix_rows",
                format!("only applies to algorithm = {stream_order} with frobenius = \"prefix\""),
            ));
        }
        if m == 0 {
            return Err(keys.error("prefix_rows", "must be at least 1"));
        }
        p.prefix_rows = m;
    }
    let ro = "\"random-order\"";
    if let Some(f) = keys.float("heavy_factor")? {
        if algorithm != Algorithm::RandomOrder {
            return Err(only_for(keys, "heavy_factor", ro));
        }
        if f <= 0.0 {
            return Err(keys.error("heavy_factor", format!("must be positive, got {f}")));
        }
        p.random_order.heavy_factor = f;
    }
    if let Some(steps) = keys.unsigned("power_steps")? {
        if algorithm != Algorithm::RandomOrder {
            return Err(only_for(keys, "power_steps", ro));
        }
        if steps == 0 {
            return Err(keys.error("power_steps", "must be at least 1"));
        }
        p.random_order.power_steps = Some(steps as usize);
    }
    if let Some(k) = keys.unsigned("block_width")? {
        if algorithm != Algorithm::RandomOrder {
            return Err(only_for(keys, "block_width", ro));
        }
        if k == 0 {
            return Err(keys.error("block_width", "must be at least 1"));
        }
        p.random_order.block_width = k as usize;
    }
    if let Some(m) = keys.bytes("heavy_memory")? {
        if algorithm != Algorithm::RandomOrder {
            return Err(only_for(keys, "heavy_memory", ro));
        }
        p.random_order.heavy_memory = m;
    }
    if let Some(s) = keys.choice("on_invalid", &["error", "skip"])? {
        p.on_invalid = OnInvalid::parse(&s).expect("choice checked");
    }
    Ok(p)
}

fn parse_coordinated_sketch(keys: &mut Keys<'_>) -> Result<CoordinatedSketchParams> {
    let key = keys.required_string("key")?;
    let columns = keys.string_list("columns")?;
    if columns.contains(&key) {
        return Err(keys.error(
            "columns",
            format!("`{key}` is the key; it cannot also be a value"),
        ));
    }
    let method = keys
        .choice("method", &Method::NAMES)?
        .map(|m| Method::parse(&m).expect("choice checked"))
        .unwrap_or(Method::Priority);
    let mut p = CoordinatedSketchParams::new(key, columns, method);
    if let Some(size) = keys.unsigned("size")? {
        if method == Method::Exact {
            return Err(keys.error(
                "size",
                "does not apply to method = \"exact\" (it keeps every row)",
            ));
        }
        if size == 0 {
            return Err(keys.error("size", "must be at least 1"));
        }
        p.size = size as usize;
    }
    if let Some(seed) = keys.unsigned("seed")? {
        p.seed = seed;
    }
    if let Some(dim) = keys.unsigned("dim")? {
        if dim == 0 {
            return Err(keys.error("dim", "must be at least 1"));
        }
        p.dim = Some(dim as usize);
    }
    if let Some(d) = keys.choice("duplicate_keys", &["error", "sum", "mean"])? {
        p.duplicate_keys = match d.as_str() {
            "sum" => DuplicateKeys::Sum,
            "mean" => DuplicateKeys::Mean,
            _ => DuplicateKeys::Error,
        };
    }
    Ok(p)
}

fn parse_prune_scores(
    file: &Path,
    section: &str,
    keys: &mut Keys<'_>,
) -> Result<PruneScoresParams> {
    let id = keys.required_string("id")?;
    let label = keys.string("label")?.unwrap_or_else(|| "label".into());
    let logits = keys.string("logits")?;
    let probs = keys.string("probs")?;
    let features = match keys.table_value("features") {
        Some(_) => Some(keys.string_list("features")?),
        None => None,
    };
    let proxy_section = format!("{}.proxy]", section.trim_end_matches(']'));
    let proxy = match keys.table_value("proxy") {
        None => None,
        Some(Value::Table(t)) => Some(parse_proxy(file, &proxy_section, t)?),
        Some(v) => {
            return Err(keys.error(
                "proxy",
                format!("expected a table ({proxy_section}), got {}", v.type_str()),
            ))
        }
    };
    let run = keys.string("run")?;
    let embedding = keys.string("embedding")?;
    let given = [
        ("logits", logits.is_some()),
        ("probs", probs.is_some()),
        ("features", features.is_some()),
    ];
    let named: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
    let has_proxy = proxy.is_some();
    let input = match (logits, probs, features) {
        (Some(c), None, None) => ScoresInput::Logits(c),
        (None, Some(c), None) => ScoresInput::Probs(c),
        (None, None, Some(columns)) => ScoresInput::Features {
            columns,
            proxy: proxy.unwrap_or_default(),
        },
        _ => {
            return Err(keys.error(
                if named.is_empty() { "logits" } else { named[1] },
                format!(
                    "give exactly one of `logits`, `probs` (logged model outputs) or \
                     `features` (train a proxy model){}",
                    if named.is_empty() {
                        String::new()
                    } else {
                        format!("; got {}", named.join(" and "))
                    }
                ),
            ))
        }
    };
    let proxy_mode = matches!(input, ScoresInput::Features { .. });
    if has_proxy && !proxy_mode {
        return Err(keys.error(
            "proxy",
            "a proxy model needs `features = [...]` to train on",
        ));
    }
    if proxy_mode {
        if run.is_some() {
            return Err(keys.error(
                "run",
                "proxy mode makes its own runs (the proxy's `seeds`); `run` is for logged outputs",
            ));
        }
        if embedding.is_some() {
            return Err(keys.error(
                "embedding",
                "proxy mode computes exact GraNd from its own model; `embedding` is for logged outputs",
            ));
        }
    }
    let mut p = PruneScoresParams::new(id, label, input, run, embedding);
    if let Some(m) = keys.choice("missing_runs", &["error", "average-available"])? {
        p.missing_runs = if m == "error" {
            MissingRuns::Error
        } else {
            MissingRuns::AverageAvailable
        };
    }
    if let Some(score) = keys.choice("score", &["el2n", "grand"])? {
        p.score = if score == "grand" {
            ScoreKind::Grand
        } else {
            ScoreKind::El2n
        };
        if p.score == ScoreKind::Grand && !proxy_mode && p.embedding.is_none() {
            return Err(keys.error(
                "score",
                "\"grand\" needs `embedding` (the penultimate features) or proxy mode",
            ));
        }
    }
    if let Some(k) = keys.unsigned("classes")? {
        if k < 2 {
            return Err(keys.error("classes", format!("must be at least 2, got {k}")));
        }
        p.classes = Some(k as usize);
    }
    if let Some(seed) = keys.unsigned("seed")? {
        p.seed = seed;
    }
    let fraction = keys.float("keep_fraction")?;
    let count = keys.unsigned("keep_count")?;
    let mode = keys.choice("mode", &MaskMode::NAMES)?;
    let mode_given = mode.is_some();
    let offset = keys.unsigned("offset")?;
    let size = match (fraction, count) {
        (Some(_), Some(_)) => {
            return Err(keys.error(
                "keep_count",
                "give `keep_fraction` or `keep_count`, not both",
            ))
        }
        (Some(f), None) if !(f > 0.0 && f <= 1.0) => {
            return Err(keys.error("keep_fraction", format!("must be in (0, 1], got {f}")))
        }
        (Some(f), None) => Some(KeepSize::Fraction(f)),
        (None, Some(0)) => return Err(keys.error("keep_count", "must be at least 1")),
        (None, Some(k)) => Some(KeepSize::Count(k)),
        (None, None) => None,
    };
    let mode = match (mode.as_deref(), offset) {
        (Some("offset"), Some(o)) => MaskMode::Offset(o),
        (Some("offset"), None) => {
            return Err(keys.error(
                "offset",
                "mode = \"offset\" needs `offset` (how many of the highest scores to skip)",
            ))
        }
        (_, Some(_)) => return Err(keys.error("offset", "only applies with mode = \"offset\"")),
        (Some("class_balanced"), None) => MaskMode::ClassBalanced,
        (Some("random"), None) => MaskMode::Random,
        (Some(_) | None, None) => MaskMode::KeepMax,
    };
    match size {
        Some(size) => p.mask = Some(Mask { size, mode }),
        None if mode_given => {
            return Err(keys.error("mode", "a mask needs `keep_fraction` or `keep_count`"))
        }
        None => {}
    }
    Ok(p)
}

fn parse_proxy(file: &Path, section: &str, table: &Table) -> Result<ProxyParams> {
    let mut keys = Keys::new(file, section, table);
    let mut p = ProxyParams::default();
    if let Some(h) = keys.unsigned("hidden")? {
        if h == 0 {
            return Err(keys.error(
                "hidden",
                "must be at least 1 (omit it for logistic regression)",
            ));
        }
        p.hidden = Some(h as usize);
    }
    let positive = |keys: &mut Keys<'_>, key: &'static str| -> Result<Option<u64>> {
        match keys.unsigned(key)? {
            Some(0) => Err(keys.error(key, "must be at least 1")),
            v => Ok(v),
        }
    };
    if let Some(e) = keys.unsigned("epochs")? {
        p.epochs = e as u32;
    }
    if let Some(s) = positive(&mut keys, "seeds")? {
        p.seeds = s as u32;
    }
    if let Some(b) = positive(&mut keys, "batch_size")? {
        p.batch_size = b as usize;
    }
    if let Some(b) = positive(&mut keys, "shuffle_buffer")? {
        p.shuffle_buffer = b as usize;
    }
    if let Some(lr) = keys.float("learning_rate")? {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(keys.error("learning_rate", format!("must be positive, got {lr}")));
        }
        p.learning_rate = lr;
    }
    keys.finish()?;
    Ok(p)
}

/// Applies `--set STAGE.KEY=VALUE`: VALUE is read as a TOML value (`7`, `true`, `"x"`,
/// `["a", "b"]`), and as a plain string when it is not one.
fn apply_overrides(doc: &mut Table, file: &Path, overrides: &[String]) -> Result<()> {
    for item in overrides {
        let bad = |msg: &str| Error::Config(format!("--set {item}: {msg}"));
        let (lhs, raw) = item
            .split_once('=')
            .ok_or_else(|| bad("expected STAGE.KEY=VALUE"))?;
        let (stage, key) = lhs
            .trim()
            .split_once('.')
            .ok_or_else(|| bad("expected STAGE.KEY=VALUE"))?;
        let value = format!("v = {raw}")
            .parse::<Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(raw.to_string()));
        let stage_table = doc
            .get_mut("stages")
            .and_then(Value::as_table_mut)
            .and_then(|s| s.get_mut(stage))
            .and_then(Value::as_table_mut)
            .ok_or_else(|| bad(&format!("{} has no stage `{stage}`", file.display())))?;
        stage_table.insert(key.to_string(), value);
    }
    Ok(())
}

/// Checks every stage's input exists and orders stages so each follows the stage it reads;
/// a dependency cycle is an error that spells the cycle out.
fn resolve_order(
    file: &Path,
    sources: &BTreeMap<String, SourceSpec>,
    stages: Vec<StageSpec>,
) -> Result<Vec<StageSpec>> {
    let by_name: BTreeMap<&str, &StageSpec> = stages.iter().map(|s| (s.name.as_str(), s)).collect();
    for stage in &stages {
        if stage.op.incremental()
            && !matches!(&stage.input, Input::Source(s) if matches!(sources.get(s), Some(SourceSpec::Path { .. })))
        {
            return Err(keys_error(
                file,
                &format!("[stages.{}]", stage.name),
                "incremental",
                format!(
                    "needs a `path` source (files it can tell apart from the ones already \
                     read); `{}` is {}",
                    stage.input,
                    match &stage.input {
                        Input::Source(_) => "an SQL source",
                        _ => "not a source",
                    }
                ),
            ));
        }
        let ok = match &stage.input {
            Input::Source(s) => sources.contains_key(s),
            Input::StageTable {
                stage: other,
                table,
            } => by_name
                .get(other.as_str())
                .is_some_and(|o| o.op.table_names().contains(&table.as_str())),
            Input::Sketches(_) => stage.input.stages().iter().all(|s| {
                by_name.get(s).is_some_and(|o| {
                    matches!(o.op, OpSpec::CoordinatedSketch(_) | OpSpec::SketchMerge)
                })
            }),
        };
        if !ok {
            let mut known: Vec<String> = sources.keys().map(|s| format!("`{s}`")).collect();
            for s in &stages {
                if s.name != stage.name {
                    known.extend(
                        s.op.table_names()
                            .iter()
                            .map(|t| format!("`{}.{}`", s.name, t)),
                    );
                }
            }
            let what = match &stage.input {
                Input::Source(s) => format!("no source named `{s}`"),
                Input::StageTable { stage, table } => {
                    format!("no stage `{stage}` writing a table `{table}`")
                }
                Input::Sketches(_) => {
                    let key = if stage.op == OpSpec::SketchMerge {
                        "inputs"
                    } else {
                        "left"
                    };
                    return Err(keys_error(
                        file,
                        &format!("[stages.{}]", stage.name),
                        key,
                        format!(
                            "each sketch must be a coordinated_sketch or sketch_merge stage of \
                             this pipeline, or a directory holding a sketch written earlier (a \
                             path with a `/`); got {}",
                            stage.input
                        ),
                    ));
                }
            };
            return Err(keys_error(
                file,
                &format!("[stages.{}]", stage.name),
                "source",
                format!("{what} (known: {})", known.join(", ")),
            ));
        }
    }

    // Depth-first topological sort; `path` holds the stages on the current chain.
    fn visit<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a StageSpec>,
        done: &mut BTreeSet<&'a str>,
        path: &mut Vec<&'a str>,
        order: &mut Vec<&'a str>,
    ) -> std::result::Result<(), Vec<String>> {
        if done.contains(name) {
            return Ok(());
        }
        if let Some(pos) = path.iter().position(|p| *p == name) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|s| s.to_string()).collect();
            cycle.push(name.to_string());
            return Err(cycle);
        }
        path.push(name);
        for stage in by_name[name].input.stages() {
            visit(stage, by_name, done, path, order)?;
        }
        path.pop();
        done.insert(name);
        order.push(name);
        Ok(())
    }
    let (mut done, mut order) = (BTreeSet::new(), Vec::new());
    for stage in &stages {
        visit(
            &stage.name,
            &by_name,
            &mut done,
            &mut Vec::new(),
            &mut order,
        )
        .map_err(|cycle| {
            keys_error(
                file,
                &format!("[stages.{}]", cycle[0]),
                "source",
                format!("dependency cycle: {}", cycle.join(" → ")),
            )
        })?;
    }
    let position: BTreeMap<String, usize> = order
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i))
        .collect();
    let mut stages = stages;
    stages.sort_by_key(|s| position[&s.name]);
    Ok(stages)
}
