//! The pipeline file: TOML → a validated [`PipelineSpec`], before any data is read.
//!
//! Validation covers unknown sections and keys, unknown ops, bad values, stages whose input
//! does not exist, and dependency cycles; every error names the file, the section and the key.
//! Column names and types are checked later against the sources' schemas (see
//! [`super::run`](mod@super::run)), still before any row is read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use toml::{Table, Value};

use super::incremental::{manifest_schema, MANIFEST};
use crate::keys::{KeyLines, Keys};
use crate::operators::op::{InputForm, Op, Uses};
use crate::operators::{registry, TableDecl};
use crate::{Error, Result};

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
    /// The line of every key of the file, for messages.
    pub lines: KeyLines,
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
    Sketches(Vec<OutputRef>),
}

/// Where a stage's output comes from: a stage of this pipeline, or the output directory of
/// one written earlier (any day, any machine) — a sketch of `left`/`right`/`inputs`, or an
/// [`Op::uses`] reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputRef {
    Stage(String),
    Dir(PathBuf),
}

impl std::fmt::Display for OutputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputRef::Stage(s) => write!(f, "stage `{s}`"),
            OutputRef::Dir(d) => write!(f, "{}", d.display()),
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
                    OutputRef::Stage(s) => Some(s.as_str()),
                    OutputRef::Dir(_) => None,
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
    /// The op, with its validated parameters.
    pub op: Arc<dyn Op>,
    /// What [`Op::uses`] names, resolved.
    pub uses: Vec<(Uses, OutputRef)>,
    /// The stage's keys as written (after `--set`), recorded in output metadata.
    pub params: Table,
}

impl StageSpec {
    /// The stages of this pipeline that must run first: the input's and the [`Op::uses`] ones.
    pub fn depends_on(&self) -> Vec<&str> {
        let mut stages = self.input.stages();
        for (_, r) in &self.uses {
            if let OutputRef::Stage(s) = r {
                stages.push(s.as_str());
            }
        }
        stages
    }

    /// The names of the tables the stage writes (the incremental manifest included).
    pub fn table_names(&self) -> Vec<&'static str> {
        let mut names = self.op.table_names();
        if self.op.incremental() {
            names.push(MANIFEST);
        }
        names
    }

    /// The tables the stage writes, with their schemas, for an input of schema `input`.
    pub fn tables(&self, input: &Schema) -> Result<Vec<TableDecl>> {
        let mut tables = self.op.tables(input)?;
        if self.op.incremental() {
            tables.push(TableDecl {
                name: MANIFEST,
                schema: manifest_schema(),
            });
        }
        Ok(tables)
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

        let lines = KeyLines::parse(text);
        let mut top = Keys::new(file, "top level", &doc).with_lines(&lines);
        let pipeline = section(&mut top, "pipeline")?;
        let sources_table = section(&mut top, "sources")?;
        let stages_table = section(&mut top, "stages")?;
        top.finish()?;

        let mut keys = Keys::new(file, "[pipeline]", &pipeline).with_lines(&lines);
        let default_name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".into());
        let name = keys.string("name")?.unwrap_or(default_name);
        let output_dir = keys
            .string("output_dir")?
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("out").join(&name));
        if super::stores::is_remote(&output_dir) {
            return Err(keys.error(
                "output_dir",
                "must be a local directory: outputs are committed by an atomic rename and                  guarded by a file lock, which object stores do not have (sources may be                  object-store URLs; copy the committed outputs to a bucket after the run)",
            ));
        }
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
            let at = lines.locate(file, &format!("sources.{sname}"));
            let table = as_table(&at, &section, value)?;
            check_name(&at, &section, sname)?;
            let (source, shuffled) = parse_source(file, &lines, &section, table, &base)?;
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
            let at = lines.locate(file, &format!("stages.{name}"));
            let table = as_table(&at, &section, value)?;
            check_name(&at, &section, name)?;
            stages.push(parse_stage(file, &lines, &base, &section, name, table)?);
        }
        let stages = resolve_order(file, &lines, &sources, stages)?;

        Ok(PipelineSpec {
            file: file.to_path_buf(),
            name,
            output_dir: base.join(output_dir),
            memory,
            sources,
            shuffled_sources,
            stages,
            lines,
        })
    }
}

impl PipelineSpec {
    /// `FILE:LINE` of the key at dotted `path` (`stages.top.columns`), or `FILE`.
    pub fn locate(&self, path: &str) -> String {
        self.lines.locate(&self.file, path)
    }

    /// `FILE:LINE: [SECTION]` for a section such as `stages.top` or `sources.emb`: the prefix
    /// of errors about it found after its keys were read.
    pub fn section(&self, section: &str) -> String {
        format!("{}: [{section}]", self.locate(section))
    }

    /// "stage `NAME` (its input)", the prefix of a stage's errors.
    pub fn stage_context(&self, stage: &StageSpec) -> String {
        format!(
            "stage `{}` ({})",
            stage.name,
            self.describe_input(&stage.input)
        )
    }

    /// An input as messages name it: a source with its path or query, a table, sketches.
    pub fn describe_input(&self, input: &Input) -> String {
        match input {
            Input::Source(name) => format!("source `{name}`: {}", self.sources[name].describe()),
            other => other.to_string(),
        }
    }
}

fn section(keys: &mut Keys<'_>, name: &'static str) -> Result<Table> {
    match keys.table_value(name) {
        None => Ok(Table::new()),
        Some(Value::Table(t)) => Ok(t.clone()),
        Some(v) => Err(keys.error(name, format!("expected a table, got {}", v.type_str()))),
    }
}

/// `at` is `FILE:LINE` of the section.
fn as_table<'a>(at: &str, section: &str, value: &'a Value) -> Result<&'a Table> {
    value.as_table().ok_or_else(|| {
        Error::Config(format!(
            "{at}: {section}: expected a table of keys, got {}",
            value.type_str()
        ))
    })
}

/// `at` is `FILE:LINE` of the section.
fn check_name(at: &str, section: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(Error::Config(format!(
            "{at}: {section}: the name `{name}` must be lower-case letters, digits and `_`, \
             starting with a letter (it becomes an SQL identifier)"
        )));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::Config(format!(
            "{at}: {section}: `{name}` is reserved by the SQL engine; choose another name"
        )));
    }
    Ok(())
}

/// A source and whether it is declared `shuffled = true`.
fn parse_source(
    file: &Path,
    lines: &KeyLines,
    section: &str,
    table: &Table,
    base: &Path,
) -> Result<(SourceSpec, bool)> {
    let mut keys = Keys::new(file, section, table).with_lines(lines);
    let shuffled = keys.boolean("shuffled")?.unwrap_or(false);
    let source = parse_source_kind(&mut keys, base)?;
    keys.finish()?;
    Ok((source, shuffled))
}

fn parse_source_kind(keys: &mut Keys<'_>, base: &Path) -> Result<SourceSpec> {
    let path = keys.string("path")?;
    let sql = keys.string("sql")?;
    let format = keys.choice("format", &["parquet", "csv"])?;
    let has_header = keys.boolean("has_header")?;
    match (path, sql) {
        (Some(_), Some(_)) => Err(keys.error("sql", "give either `path` or `sql`, not both")),
        (None, None) => Err(keys.error("path", "is required (or give `sql`)")),
        (None, Some(query)) => {
            if format.is_some() || has_header.is_some() {
                return Err(keys.error("format", "only applies to `path` sources"));
            }
            Ok(SourceSpec::Sql { query })
        }
        (Some(p), None) => {
            let remote = super::stores::is_url(&p);
            // A URL names an object store (or a `file://` path) as it is; a path is relative
            // to the pipeline file.
            let path = if remote {
                PathBuf::from(&p)
            } else {
                base.join(&p)
            };
            let glob = p.contains(['*', '?', '[']);
            let format = match format.as_deref() {
                Some("parquet") => FileFormat::Parquet,
                Some("csv") => FileFormat::Csv,
                _ => detect_format(&path, glob).ok_or_else(|| {
                    keys.error(
                        "path",
                        format!(
                            "cannot tell the format of `{p}` from its name; add format = \
                             \"parquet\" or \"csv\""
                        ),
                    )
                })?,
            };
            if has_header.is_some() && format != FileFormat::Csv {
                return Err(keys.error("has_header", "only applies to CSV sources"));
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

/// The format of a file or glob from its extension; of a directory, from the first file in it
/// with a known extension (listing a directory reads no data).
fn detect_format(path: &Path, glob: bool) -> Option<FileFormat> {
    if super::stores::is_remote(path) {
        // An object-store prefix is not listed while the file is parsed (no network then).
        return FileFormat::from_extension(path);
    }
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
    lines: &KeyLines,
    base: &Path,
    section: &str,
    name: &str,
    table: &Table,
) -> Result<StageSpec> {
    let mut keys = Keys::new(file, section, table).with_lines(lines);
    let op_name = keys.required_string("op")?;
    let kind = registry::find(&op_name).ok_or_else(|| {
        keys.error(
            "op",
            format!(
                "unknown op `{op_name}` (available: {})",
                registry::names().join(", ")
            ),
        )
    })?;
    let mut op = (kind.parse)(&mut keys)?;
    if keys.boolean("incremental")?.unwrap_or(false) {
        op.make_incremental()
            .map_err(|why| keys.error("incremental", why))?;
    }
    let output_ref = |v: String| {
        if v.contains('/') || v.contains('\\') || v.starts_with('.') {
            OutputRef::Dir(base.join(v))
        } else {
            OutputRef::Stage(v)
        }
    };
    let input = match op.input_form() {
        InputForm::SketchPair => {
            let left = output_ref(keys.required_string("left")?);
            let right = output_ref(keys.required_string("right")?);
            Input::Sketches(vec![left, right])
        }
        InputForm::SketchList => {
            let inputs = keys.string_list("inputs")?;
            if inputs.len() < 2 {
                return Err(keys.error("inputs", "name at least two sketches to merge"));
            }
            Input::Sketches(inputs.into_iter().map(output_ref).collect())
        }
        InputForm::Uses => Input::Sketches(Vec::new()),
        InputForm::Rows => {
            let source = keys.required_string("source")?;
            match source.split_once('.') {
                Some((stage, table)) => Input::StageTable {
                    stage: stage.to_string(),
                    table: table.to_string(),
                },
                None => Input::Source(source),
            }
        }
    };
    keys.finish()?;
    let uses = op
        .uses()
        .into_iter()
        .map(|u| {
            let r = output_ref(u.value.clone());
            (u, r)
        })
        .collect();
    Ok(StageSpec {
        name: name.to_string(),
        input,
        op: Arc::from(op),
        uses,
        params: table.clone(),
    })
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
    lines: &KeyLines,
    sources: &BTreeMap<String, SourceSpec>,
    stages: Vec<StageSpec>,
) -> Result<Vec<StageSpec>> {
    let by_name: BTreeMap<&str, &StageSpec> = stages.iter().map(|s| (s.name.as_str(), s)).collect();
    for stage in &stages {
        if stage.op.incremental()
            && !matches!(&stage.input, Input::Source(s) if matches!(sources.get(s), Some(SourceSpec::Path { .. })))
        {
            return Err(lines.key_error(
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
        for (uses, r) in &stage.uses {
            let OutputRef::Stage(other) = r else { continue };
            let found = by_name.get(other.as_str()).map(|o| o.op.name());
            if found != Some(uses.op) {
                let what = match found {
                    Some(op) => format!("stage `{other}` is a {op} stage"),
                    None => format!("there is no stage `{other}`"),
                };
                return Err(lines.key_error(
                    file,
                    &format!("[stages.{}]", stage.name),
                    uses.key,
                    format!(
                        "{what}; name a {} stage of this pipeline, or a directory one wrote \
                         earlier (a path with a `/`)",
                        uses.op
                    ),
                ));
            }
        }
        let ok = match &stage.input {
            Input::Source(s) => sources.contains_key(s),
            Input::StageTable {
                stage: other,
                table,
            } => by_name
                .get(other.as_str())
                .is_some_and(|o| o.table_names().contains(&table.as_str())),
            Input::Sketches(_) => stage
                .input
                .stages()
                .iter()
                .all(|s| by_name.get(s).is_some_and(|o| o.op.writes_sketch())),
        };
        if !ok {
            let mut known: Vec<String> = sources.keys().map(|s| format!("`{s}`")).collect();
            for s in &stages {
                if s.name != stage.name {
                    known.extend(
                        s.table_names()
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
                    let key = stage.op.input_form().key();
                    return Err(lines.key_error(
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
            return Err(lines.key_error(
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
        for stage in by_name[name].depends_on() {
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
            lines.key_error(
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
