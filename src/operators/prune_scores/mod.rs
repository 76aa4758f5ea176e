//! `op = "prune_scores"`: EL2N and GraNd scores per example id, averaged over runs, with
//! prune masks — Paul, Ganguli, Dziugaite, *Deep Learning on a Data Diet*, NeurIPS 2021,
//! arXiv:2107.07075 (the cores are in [`crate::prune`]).
//!
//! Two ways in:
//! * **logged outputs** (`logits = "…"` or `probs = "…"`, optional `run`, optional
//!   `embedding`): every row is scored with the SQL functions of [`crate::udf`], then grouped by
//!   id with DataFusion — a group-by that spills to disk when the ids do not fit in memory
//!   ([`runs`]);
//! * **proxy mode** (`features = [...]` + `[stages.NAME.proxy]`): a small model trained in the
//!   pipeline, streaming every epoch from the input, scores every row ([`proxy`]).
//!
//! Both produce one row per id (a scratch Parquet file), which [`masks`] checks, ranks and
//! masks into the output tables:
//! * `scores` — `id`, `label` (input types), `el2n`, `el2n_std`, `grand`, `grand_std`
//!   (`Float64`; GraNd null without embedding or proxy; standard deviations across runs, null
//!   for one run), `runs UInt32`, `rank UInt64` (ascending by the chosen score, ties by id),
//!   `keep Boolean` (true for every id when no mask is asked for), ordered by rank;
//! * `stats` — one row: ids, rows, runs, ids with missing runs, classes, the mask and its size;
//! * `training` (proxy mode) — loss and accuracy per seed and epoch.

pub mod masks;
pub mod proxy;
pub mod runs;
mod sql;
pub mod stage;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::TableDecl;
use crate::rows::{is_number_list, is_string};
use crate::{Error, Result};

pub use proxy::{ProxyParams, ProxyScoresOp};

/// What the scores are computed from.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoresInput {
    /// A list column of logits (softmax applied).
    Logits(String),
    /// A list column of probabilities (checked, used as they are).
    Probs(String),
    /// Feature columns for a proxy model trained in the pipeline.
    Features {
        columns: Vec<String>,
        proxy: ProxyParams,
    },
}

/// What to do with ids that are missing from some runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingRuns {
    /// Fail, naming an id and how many runs it has (the default: never average silently over
    /// fewer runs).
    Error,
    /// Average over the runs each id has; the `runs` column and `stats` say how many.
    AverageAvailable,
}

/// The score masks and ranks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreKind {
    El2n,
    Grand,
}

impl ScoreKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ScoreKind::El2n => "el2n",
            ScoreKind::Grand => "grand",
        }
    }
}

/// How many ids a mask keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeepSize {
    /// `round(fraction × ids)`.
    Fraction(f64),
    Count(u64),
}

/// Which ids a mask keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskMode {
    /// The highest scores (the hardest examples).
    KeepMax,
    /// Skip the `offset` highest scores, keep the next ones (drops likely-mislabeled rows too).
    Offset(u64),
    /// The highest scores within each class, each class keeping its share of the total.
    ClassBalanced,
    /// A seeded uniform random subset of the requested size: the control.
    Random,
}

impl MaskMode {
    pub const NAMES: [&'static str; 4] = ["keep_max", "offset", "class_balanced", "random"];

    pub fn as_str(&self) -> &'static str {
        match self {
            MaskMode::KeepMax => "keep_max",
            MaskMode::Offset(_) => "offset",
            MaskMode::ClassBalanced => "class_balanced",
            MaskMode::Random => "random",
        }
    }
}

/// A prune mask: how many ids to keep, and which.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mask {
    pub size: KeepSize,
    pub mode: MaskMode,
}

/// Validated parameters of a `prune_scores` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneScoresParams {
    pub id: String,
    pub label: String,
    pub input: ScoresInput,
    pub run: Option<String>,
    pub embedding: Option<String>,
    pub missing_runs: MissingRuns,
    pub score: ScoreKind,
    pub mask: Option<Mask>,
    /// The number of classes, when the stage states it (checked against the data).
    pub classes: Option<usize>,
    pub seed: u64,
    /// Input columns the stage reads, each once.
    columns: Vec<String>,
}

impl PruneScoresParams {
    /// Parameters with defaults (EL2N, no mask, missing runs an error, seed 42).
    pub fn new(
        id: String,
        label: String,
        input: ScoresInput,
        run: Option<String>,
        embedding: Option<String>,
    ) -> Self {
        let mut named = vec![id.clone(), label.clone()];
        match &input {
            ScoresInput::Logits(c) | ScoresInput::Probs(c) => named.push(c.clone()),
            ScoresInput::Features { columns, .. } => named.extend(columns.iter().cloned()),
        }
        named.extend(run.iter().cloned());
        named.extend(embedding.iter().cloned());
        let mut columns: Vec<String> = Vec::new();
        for c in named {
            if !columns.contains(&c) {
                columns.push(c);
            }
        }
        PruneScoresParams {
            id,
            label,
            input,
            run,
            embedding,
            missing_runs: MissingRuns::Error,
            score: ScoreKind::El2n,
            mask: None,
            classes: None,
            seed: 42,
            columns,
        }
    }

    /// Every input column the stage reads.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The pipeline-file key that names `column` (for error messages).
    pub fn key_of(&self, column: &str) -> &'static str {
        let is = |c: &Option<String>| c.as_deref() == Some(column);
        match &self.input {
            _ if column == self.id => "id",
            _ if column == self.label => "label",
            _ if is(&self.run) => "run",
            _ if is(&self.embedding) => "embedding",
            ScoresInput::Logits(_) => "logits",
            ScoresInput::Probs(_) => "probs",
            ScoresInput::Features { .. } => "features",
        }
    }

    /// Proxy mode's parameters: a model trained in the pipeline (operator passes over a
    /// scan), rather than one DataFusion query over logged outputs.
    pub fn proxy(&self) -> Option<&ProxyParams> {
        match &self.input {
            ScoresInput::Features { proxy, .. } => Some(proxy),
            _ => None,
        }
    }

    /// Checks the input's column types before any data is read.
    pub fn check_schema(&self, schema: &Schema) -> Result<()> {
        let field = |name: &str| schema.field_with_name(name).map_err(Error::from);
        let id = field(&self.id)?.data_type().clone();
        if !(id.is_integer() || is_string(&id)) {
            return Err(Error::Config(format!(
                "key `id`: column `{}` is {id}; ids must be integers or strings",
                self.id
            )));
        }
        let label = field(&self.label)?.data_type().clone();
        let label_ok = label.is_integer() || (self.proxy().is_none() && is_number_list(&label));
        if !label_ok {
            return Err(Error::Config(format!(
                "key `label`: column `{}` is {label}; labels must be integer classes{}",
                self.label,
                if self.proxy().is_some() {
                    " in proxy mode"
                } else {
                    " or lists of class weights (one-hot or soft labels)"
                }
            )));
        }
        if matches!(self.mask, Some(m) if m.mode == MaskMode::ClassBalanced) && !label.is_integer()
        {
            return Err(Error::Config(format!(
                "key `mode`: \"class_balanced\" needs integer class labels; `{}` is {label}",
                self.label
            )));
        }
        let (output_key, output) = match &self.input {
            ScoresInput::Logits(c) => ("logits", Some(c)),
            ScoresInput::Probs(c) => ("probs", Some(c)),
            ScoresInput::Features { .. } => ("features", None),
        };
        for (key, column) in [("embedding", self.embedding.as_ref()), (output_key, output)] {
            if let Some(c) = column {
                let t = field(c)?.data_type().clone();
                if !is_number_list(&t) {
                    return Err(Error::Config(format!(
                        "key `{key}`: column `{c}` is {t}; expected a list of numbers"
                    )));
                }
            }
        }
        if let Some(r) = &self.run {
            let t = field(r)?.data_type().clone();
            if !(t.is_integer() || is_string(&t)) {
                return Err(Error::Config(format!(
                    "key `run`: column `{r}` is {t}; runs are told apart by an integer or a string"
                )));
            }
        }
        Ok(())
    }

    /// The tables the stage writes, with their schemas (the `id` and `label` columns keep the
    /// input's types).
    pub fn tables(&self, input: &Schema) -> Result<Vec<TableDecl>> {
        let id = input.field_with_name(&self.id)?.data_type().clone();
        let label = input.field_with_name(&self.label)?.data_type().clone();
        let mut tables = vec![
            TableDecl {
                name: "scores",
                schema: scores_schema(id, label),
            },
            TableDecl {
                name: "stats",
                schema: masks::stats_schema(),
            },
        ];
        if self.proxy().is_some() {
            tables.push(TableDecl {
                name: "training",
                schema: proxy::training_schema(),
            });
        }
        Ok(tables)
    }
}

/// The names of the tables a `prune_scores` stage writes (known without the input schema).
pub fn table_names(params: &PruneScoresParams) -> Vec<&'static str> {
    let mut names = vec!["scores", "stats"];
    if params.proxy().is_some() {
        names.push("training");
    }
    names
}

/// The `scores` table.
pub fn scores_schema(id: DataType, label: DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", id, true),
        Field::new("label", label, true),
        Field::new("el2n", DataType::Float64, true),
        Field::new("el2n_std", DataType::Float64, true),
        Field::new("grand", DataType::Float64, true),
        Field::new("grand_std", DataType::Float64, true),
        Field::new("runs", DataType::UInt32, false),
        Field::new("rank", DataType::UInt64, true),
        Field::new("keep", DataType::Boolean, true),
    ]))
}

/// The per-id scratch table both ways in produce and [`masks`] reads: the `scores` columns
/// before ranking, plus what the checks need.
pub fn by_id_schema(id: DataType, label: DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", id, true),
        Field::new("label", label.clone(), true),
        // The largest label seen for the id (equal to `label` unless runs disagree).
        Field::new("label_max", label, true),
        Field::new("el2n", DataType::Float64, true),
        Field::new("el2n_std", DataType::Float64, true),
        Field::new("grand", DataType::Float64, true),
        Field::new("grand_std", DataType::Float64, true),
        Field::new("runs", DataType::UInt32, false),
        // Input rows of the id (more than `runs` when an (id, run) pair repeats).
        Field::new("rows", DataType::UInt64, false),
        // Rows that got a score (fewer than `rows` when some had null outputs or labels).
        Field::new("scored", DataType::UInt64, false),
        // Smallest and largest number of classes over the id's rows.
        Field::new("k_min", DataType::UInt32, true),
        Field::new("k_max", DataType::UInt32, true),
    ]))
}
