//! `op = "project"`: the scores of a source's rows on the components of a `pca` stage — of
//! this pipeline, or a directory one wrote earlier (`pca = "stage_or_path"`), so a nightly job
//! can project today's rows on last month's basis and compare the score distributions.
//!
//! Output tables (the contract in `docs/reference.md`):
//! * `scores` — the `keep` columns and `projection List<Float64>`: `(x − μ) / σ · Vᵀ`, `k`
//!   values in `pc` order (null for a null row);
//! * `stats` — one row per component: `pc, rows, mean, variance, min, max` of its scores,
//!   and `basis`, the `pca` key as written (the stage or directory the basis came from).
//!
//! The scores are the SQL function `pca_project` over the input with the basis as a constant
//! (one query, on the cluster with `--cluster`), streamed through a scratch file whose writer
//! also keeps the summaries (Welford per component), so the input is scanned once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Schema, SchemaRef, UInt32Type, UInt64Type,
};
use datafusion::common::{Column, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::execution::FunctionRegistry;
use datafusion::functions_nested::expr_fn::make_array;
use datafusion::logical_expr::{lit, Expr};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{col, ParquetReadOptions, SessionContext};
use futures::future::BoxFuture;
use futures::StreamExt;

use super::op::{Execution, Functions, Op, OpKind, Query, StageContext, StageTables, Uses};
use super::pca::COLUMNS_METADATA;
use super::{read_small_table, rows_expr, OutputTable, TableDecl};
use crate::eigen::Pca;
use crate::keys::Keys;
use crate::rows::{is_list, DenseRowReader, OnInvalid};
use crate::udf::pca::basis_array;
use crate::{Error, Result};

/// The registry's entry (its SQL function, `pca_project`, comes with the `pca` op).
pub const KIND: OpKind = OpKind {
    name: "project",
    parse: |keys| Ok(Box::new(parse(keys)?)),
    functions: Functions::default,
};

/// Validated parameters of a `project` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectParams {
    /// The `pca` stage or directory, as written.
    pub pca: String,
    /// The row columns, as the `pca` stage named them.
    pub row_columns: Vec<String>,
    /// Input columns copied into `scores`.
    pub keep: Vec<String>,
    /// Every input column read: `columns` then `keep` (without repeats).
    input_columns: Vec<String>,
}

fn stats_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pc", DataType::UInt32, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("mean", DataType::Float64, true),
        Field::new("variance", DataType::Float64, true),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        Field::new("basis", DataType::Utf8, false),
    ]))
}

fn projection_field() -> Field {
    Field::new(
        "projection",
        DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
        true,
    )
}

/// Reads a `project` stage's keys.
pub fn parse(keys: &mut Keys<'_>) -> Result<ProjectParams> {
    let pca = keys.required_string("pca")?;
    let columns = keys.string_list("columns")?;
    let keep = match keys.table_value("keep") {
        Some(_) => keys.string_list("keep")?,
        None => Vec::new(),
    };
    if keep.iter().any(|k| k == "projection") {
        return Err(keys.error(
            "keep",
            "`projection` is the scores column; rename the input column in a `sql` source",
        ));
    }
    let mut read = columns.clone();
    for k in &keep {
        if !read.contains(k) {
            read.push(k.clone());
        }
    }
    Ok(ProjectParams {
        pca,
        row_columns: columns,
        keep,
        input_columns: read,
    })
}

impl Op for ProjectParams {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn table_names(&self) -> Vec<&'static str> {
        vec!["scores", "stats"]
    }

    fn tables(&self, input: &Schema) -> Result<Vec<TableDecl>> {
        let mut fields: Vec<Field> = Vec::new();
        for k in &self.keep {
            fields.push(input.field_with_name(k)?.clone());
        }
        fields.push(projection_field());
        Ok(vec![
            TableDecl {
                name: "scores",
                schema: Arc::new(Schema::new(fields)),
            },
            TableDecl {
                name: "stats",
                schema: stats_schema(),
            },
        ])
    }

    fn columns(&self) -> &[String] {
        &self.input_columns
    }

    fn column_key(&self, column: &str) -> &'static str {
        if self.row_columns.iter().any(|c| c == column) {
            "columns"
        } else {
            "keep"
        }
    }

    fn check_schema(&self, input: &Schema) -> Result<()> {
        DenseRowReader::new(input, &self.row_columns, OnInvalid::Error).map(|_| ())
    }

    fn needs_scratch(&self) -> bool {
        true
    }

    fn uses(&self) -> Vec<Uses> {
        vec![Uses {
            key: "pca",
            value: self.pca.clone(),
            op: "pca",
        }]
    }

    fn execution(&self) -> Execution<'_> {
        Execution::Query(self)
    }
}

/// A `pca` stage's output read back: the basis and the columns it was computed over.
struct StoredBasis {
    pca: Pca,
    columns: Vec<String>,
}

/// Reads the basis a `pca` stage wrote into `dir`.
fn read_basis(dir: &Path) -> Result<StoredBasis> {
    let path = |t: &str| dir.join(format!("{t}.parquet"));
    let components = path("components");
    if !components.exists() {
        return Err(Error::Input(format!(
            "{}: no components.parquet (a pca stage's output directory)",
            dir.display()
        )));
    }
    let bad = |what: &str| {
        Error::Input(format!(
            "{}: {what} (a pca stage's output, as sketchpipe writes it)",
            dir.display()
        ))
    };
    let (batches, meta) = read_small_table(&components)?;
    let meta_value = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    match meta_value("sketchpipe.op").as_deref() {
        Some("pca") => {}
        other => {
            return Err(bad(&format!(
                "written by {}, not a pca stage",
                other.map_or("something other than sketchpipe".to_string(), |o| format!(
                    "a {o} stage"
                ))
            )))
        }
    }
    let columns: Vec<String> = meta_value(COLUMNS_METADATA)
        .and_then(|v| serde_json::from_str(&v).ok())
        .ok_or_else(|| bad(&format!("components.parquet has no {COLUMNS_METADATA}")))?;
    // A Float64 column of one of the basis's tables (`None` when the table is absent).
    let floats = |t: &str, column: &str| -> Result<Option<Vec<f64>>> {
        if !path(t).exists() {
            return Ok(None);
        }
        let (batches, _) = read_small_table(&path(t))?;
        let mut out = Vec::new();
        for b in &batches {
            let v = b
                .column_by_name(column)
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
                .ok_or_else(|| bad(&format!("{t}.parquet has no Float64 `{column}` column")))?;
            out.extend_from_slice(v.values());
        }
        Ok(Some(out))
    };
    let mean = floats("mean", "value")?.ok_or_else(|| bad("no mean.parquet"))?;
    let scale = floats("scale", "value")?;
    let eigenvalues =
        floats("spectrum", "eigenvalue")?.ok_or_else(|| bad("no spectrum.parquet"))?;
    let d = mean.len();
    let mut components: Vec<Vec<f64>> = Vec::new();
    for b in &batches {
        let (Some(pc), Some(value)) = (
            b.column_by_name("pc")
                .and_then(|c| c.as_primitive_opt::<UInt32Type>()),
            b.column_by_name("value")
                .and_then(|c| c.as_primitive_opt::<Float64Type>()),
        ) else {
            return Err(bad(
                "components.parquet lacks `pc UInt32` / `value Float64`",
            ));
        };
        for (p, v) in pc.values().iter().zip(value.values()) {
            let p = *p as usize;
            if p >= components.len() {
                components.resize(p + 1, Vec::with_capacity(d));
            }
            components[p].push(*v);
        }
    }
    if components.is_empty() || components.iter().any(|c| c.len() != d) {
        return Err(bad(&format!(
            "components.parquet does not hold whole components of dimension {d}"
        )));
    }
    if eigenvalues.len() != components.len() {
        return Err(bad(
            "spectrum.parquet and components.parquet differ in their components",
        ));
    }
    if scale.as_ref().is_some_and(|s| s.len() != d) {
        return Err(bad("scale.parquet and mean.parquet differ in length"));
    }
    Ok(StoredBasis {
        // What the basis struct carries (`pca_project` reads the components, mean and
        // scale); the total, bound and memory are not part of it.
        pca: Pca {
            eigenvalues,
            components,
            total: 0.0,
            mean,
            scale,
            rows: stats_rows(dir)?,
            error_bound: None,
            state_bytes: 0,
        },
        columns,
    })
}

/// The length of the first non-null list in column `name` (reads until one is found).
async fn first_length(frame: &DataFrame, name: &str) -> Result<Option<usize>> {
    let column = col(Column::from_name(name));
    let first = frame
        .clone()
        .select(vec![column.clone()])?
        .filter(column.is_not_null())?
        .limit(0, Some(1))?
        .collect()
        .await?;
    Ok(first
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| list_length(b.column(0))))
}

fn list_length(a: &ArrayRef) -> Option<usize> {
    match a.data_type() {
        DataType::List(_) => Some(a.as_list::<i32>().value_length(0) as usize),
        DataType::LargeList(_) => Some(a.as_list::<i64>().value_length(0) as usize),
        _ => None,
    }
}

/// The rows a `pca` stage's basis was computed from (its `stats.rows`).
fn stats_rows(dir: &Path) -> Result<u64> {
    let (batches, _) = read_small_table(&dir.join("stats.parquet"))?;
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column_by_name("rows")?
                .as_primitive_opt::<UInt64Type>()
                .map(|r| r.value(0))
        })
        .ok_or_else(|| {
            Error::Input(format!(
                "{}: stats.parquet has no UInt64 `rows`",
                dir.display()
            ))
        })
}

/// Running summaries of one component's scores (Welford), in row order.
#[derive(Debug, Clone, Default)]
struct Summary {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Summary {
    fn add(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
        if self.n == 1 || x < self.min {
            self.min = x;
        }
        if self.n == 1 || x > self.max {
            self.max = x;
        }
    }
}

impl ProjectParams {
    /// The basis, checked against this stage's columns and input (its schema, and for a list
    /// column of no fixed size the first non-null row's length).
    async fn basis(&self, dir: &Path, frame: &DataFrame) -> Result<StoredBasis> {
        let basis = read_basis(dir)?;
        if basis.columns != self.row_columns {
            return Err(Error::Input(format!(
                "the basis in {} was computed over column(s) {} and this stage reads {}; \
                 project rows with the basis's columns, in its order (rename them in a `sql` \
                 source if the new table calls them otherwise)",
                dir.display(),
                basis.columns.join(", "),
                self.row_columns.join(", ")
            )));
        }
        let d = basis.pca.mean.len();
        let have = match self.row_columns.as_slice() {
            [one] => match frame.schema().field_with_unqualified_name(one)?.data_type() {
                DataType::FixedSizeList(_, n) => Some(*n as usize),
                t if is_list(t) => first_length(frame, one).await?,
                _ => Some(1),
            },
            many => Some(many.len()),
        };
        if let Some(have) = have.filter(|h| *h != d) {
            return Err(Error::Input(format!(
                "the rows have dimension {have} ({}) and the basis in {} dimension {d}",
                self.row_columns.join(", "),
                dir.display()
            )));
        }
        Ok(basis)
    }

    /// The scores query over `frame`.
    fn scores_frame(
        &self,
        session: &SessionContext,
        frame: DataFrame,
        basis: &Pca,
    ) -> Result<DataFrame> {
        let basis = ScalarValue::Struct(Arc::new(basis_array(basis)?));
        // One numeric column is a row of one value: a list too.
        let rows = match self.row_columns.as_slice() {
            [one] if !is_list(frame.schema().field_with_unqualified_name(one)?.data_type()) => {
                make_array(vec![col(Column::from_name(one))])
            }
            _ => rows_expr(&self.row_columns),
        };
        let project = session.udf("pca_project")?.call(vec![rows, lit(basis)]);
        let mut exprs: Vec<Expr> = self
            .keep
            .iter()
            .map(|k| col(Column::from_name(k)))
            .collect();
        exprs.push(project.alias("projection"));
        Ok(frame.select(exprs)?)
    }
}

impl Query for ProjectParams {
    fn run<'a>(
        &'a self,
        on: &'a SessionContext,
        local: &'a SessionContext,
        frame: DataFrame,
        ctx: &'a StageContext<'a>,
    ) -> BoxFuture<'a, Result<StageTables>> {
        Box::pin(async move {
            let dir = ctx.uses.first().expect("project uses one pca output");
            let basis = self.basis(dir, &frame).await?;
            let k = basis.pca.components.len();
            let scores = self.scores_frame(on, frame, &basis.pca)?;
            let scratch: PathBuf = ctx
                .scratch
                .expect("project asks for scratch space")
                .join("scores.parquet");
            let mut stream = scores.execute_stream().await?;
            let file = File::create(&scratch)
                .map_err(|e| Error::io(format!("cannot create {}", scratch.display()), e))?;
            let mut writer = ArrowWriter::try_new(file, stream.schema(), None)?;
            let mut summaries = vec![Summary::default(); k];
            let mut rows = 0u64;
            while let Some(batch) = stream.next().await {
                let batch: RecordBatch = batch?;
                rows += batch.num_rows() as u64;
                summarise(&batch, &mut summaries);
                writer.write(&batch)?;
            }
            writer.close()?;
            let stats = stats_batch(&summaries, &self.pca)?;
            let written = local
                .read_parquet(
                    scratch.to_string_lossy().as_ref(),
                    ParquetReadOptions::default(),
                )
                .await?;
            Ok(StageTables {
                streamed: Some(("scores", written)),
                tables: vec![OutputTable::new("stats", stats)],
                rows_read: rows,
            })
        })
    }

    fn describe(&self, input: &str) -> String {
        format!("projecting {input} on the basis of {}", self.pca)
    }

    fn on_cluster(&self) -> &'static str {
        "projected on the cluster, summarised here"
    }
}

/// Folds a batch's `projection` column into the per-component summaries.
fn summarise(batch: &RecordBatch, summaries: &mut [Summary]) {
    let lists = batch.column(batch.num_columns() - 1).as_list::<i32>();
    let values = lists.values().as_primitive::<Float64Type>().values();
    let offsets = lists.value_offsets();
    for i in 0..lists.len() {
        if lists.is_null(i) {
            continue;
        }
        let row = &values[offsets[i] as usize..offsets[i + 1] as usize];
        for (s, x) in summaries.iter_mut().zip(row) {
            s.add(*x);
        }
    }
}

fn stats_batch(summaries: &[Summary], basis: &str) -> Result<RecordBatch> {
    let some = |f: fn(&Summary) -> f64| -> Float64Array {
        summaries.iter().map(|s| (s.n > 0).then(|| f(s))).collect()
    };
    let variance: Float64Array = summaries
        .iter()
        .map(|s| (s.n > 1).then(|| s.m2 / (s.n - 1) as f64))
        .collect();
    Ok(RecordBatch::try_new(
        stats_schema(),
        vec![
            Arc::new(UInt32Array::from_iter_values(0..summaries.len() as u32)) as ArrayRef,
            Arc::new(UInt64Array::from_iter_values(summaries.iter().map(|s| s.n))),
            Arc::new(some(|s| s.mean)),
            Arc::new(variance),
            Arc::new(some(|s| s.min)),
            Arc::new(some(|s| s.max)),
            Arc::new(StringArray::from(vec![basis; summaries.len()])),
        ],
    )?)
}
