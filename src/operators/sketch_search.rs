//! `op = "sketch_search"`: which tables of a catalog to join with a query table — ranked by
//! the estimated correlation of each candidate column with the query's target over the join,
//! by the R² of a regression of the target on the candidate's columns, or by the join's size,
//! each with its confidence interval, without joining anything (Daliri, Freire, Musco,
//! Santos, Zhang, VLDB 2024, arXiv:2309.16157; the estimators: [`crate::sketch::join`]).
//!
//! Keys: `query` (a `coordinated_sketch` stage, or a directory holding its `sketch.parquet`
//! or a one-table `sketches.parquet`), `catalog` (a `coordinated_sketch` stage with
//! `table_column`, or a directory holding its `sketches.parquet`), `target` (a column of the
//! query sketch; default its only one), `min_join_size` (candidates whose estimated join is
//! smaller are left out; default 1), `confidence` (default 0.95), `rank_by` (`correlation`,
//! the default, `r2` or `join_size`: by the conservative end of the estimate's interval, then
//! the estimate — [`Row::key`]) and `lambda` (the regression's ridge penalty, default 0). The
//! catalog is scanned a batch at a time, not loaded.
//!
//! Output: `ranking` — one row per candidate table and column ([`ranking_schema`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::coordinated_sketch::{catalog, table};
use super::op::{Execution, FromOutputs, Functions, InputForm, Op, OpKind, Uses};
use super::{OutputTable, TableDecl};
use crate::keys::Keys;
use crate::sketch::join::{Estimate, JoinEstimator};
use crate::sketch::stored::{self, Header, StoredSketch};
use crate::{Error, Result};

/// The registry's entry.
pub const KIND: OpKind = OpKind {
    name: "sketch_search",
    parse: |keys| Ok(Box::new(parse(keys)?)),
    functions: Functions::default,
};

/// What the ranking orders by (descending; a missing estimate last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankBy {
    Correlation,
    R2,
    JoinSize,
}

/// Parameters of a `sketch_search` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParams {
    pub query: String,
    pub catalog: String,
    pub target: Option<String>,
    pub min_join_size: f64,
    pub confidence: f64,
    pub rank_by: RankBy,
    pub lambda: f64,
}

/// Reads a `sketch_search` stage's keys.
pub fn parse(keys: &mut Keys<'_>) -> Result<SearchParams> {
    let query = keys.required_string("query")?;
    let catalog = keys.required_string("catalog")?;
    let target = keys.string("target")?;
    let min_join_size = keys.float("min_join_size")?.unwrap_or(1.0);
    if !(min_join_size >= 0.0 && min_join_size.is_finite()) {
        return Err(keys.error("min_join_size", format!("must be ≥ 0, got {min_join_size}")));
    }
    let confidence = keys.float("confidence")?.unwrap_or(0.95);
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(keys.error(
            "confidence",
            format!("must be between 0 and 1 (exclusive), got {confidence}"),
        ));
    }
    let rank_by = match keys
        .choice("rank_by", &["correlation", "r2", "join_size"])?
        .as_deref()
    {
        Some("r2") => RankBy::R2,
        Some("join_size") => RankBy::JoinSize,
        _ => RankBy::Correlation,
    };
    let lambda = keys.float("lambda")?.unwrap_or(0.0);
    if !(lambda >= 0.0 && lambda.is_finite()) {
        return Err(keys.error("lambda", format!("must be ≥ 0, got {lambda}")));
    }
    Ok(SearchParams {
        query,
        catalog,
        target,
        min_join_size,
        confidence,
        rank_by,
        lambda,
    })
}

static RANKING: LazyLock<SchemaRef> = LazyLock::new(|| {
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("column", DataType::Utf8, false),
        f("join_size"),
        f("join_size_lower"),
        f("join_size_upper"),
        f("correlation"),
        f("correlation_lower"),
        f("correlation_upper"),
        f("r2"),
        f("r2_lower"),
        f("r2_upper"),
        Field::new("rank", DataType::UInt32, false),
        Field::new("note", DataType::Utf8, true),
    ]))
});

/// The `ranking` table's schema.
pub fn ranking_schema() -> SchemaRef {
    Arc::clone(&RANKING)
}

impl Op for SearchParams {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn input_form(&self) -> InputForm {
        InputForm::Uses
    }

    fn table_names(&self) -> Vec<&'static str> {
        vec!["ranking"]
    }

    fn tables(&self, _input: &Schema) -> Result<Vec<TableDecl>> {
        Ok(vec![TableDecl {
            name: "ranking",
            schema: ranking_schema(),
        }])
    }

    fn uses(&self) -> Vec<Uses> {
        vec![
            Uses {
                key: "query",
                value: self.query.clone(),
                op: "coordinated_sketch",
            },
            Uses {
                key: "catalog",
                value: self.catalog.clone(),
                op: "coordinated_sketch",
            },
        ]
    }

    fn execution(&self) -> Execution<'_> {
        Execution::Outputs(self)
    }
}

/// The file of a sketch output `dir` (a stage's directory or a file named directly).
fn output_file(dir: &Path, name: &str) -> PathBuf {
    if dir.is_dir() {
        dir.join(name)
    } else {
        dir.to_path_buf()
    }
}

/// The query's sketch: a `sketch.parquet`, or a catalog of exactly one table.
fn read_query(dir: &Path) -> Result<(StoredSketch, Header, String)> {
    let single = output_file(dir, "sketch.parquet");
    if single.is_file() && single.file_name().is_some_and(|n| n != "sketches.parquet") {
        let (s, h) = table::read(&single)?;
        return Ok((s, h, format!("the query ({})", single.display())));
    }
    let path = output_file(dir, "sketches.parquet");
    let mut found = Vec::new();
    catalog::scan(&path, |name, s, h| {
        found.push((
            s,
            h,
            format!("the query (table {name:?} of {})", path.display()),
        ));
        Ok(())
    })?;
    if found.len() != 1 {
        return Err(Error::Config(format!(
            "key `query`: {} holds {} tables; the query is one table's sketch (a \
             coordinated_sketch stage without table_column)",
            path.display(),
            found.len()
        )));
    }
    Ok(found.pop().expect("one"))
}

/// The name of value column `j` of a sketch (`values[1]` … for one list column, 1-based as in
/// SQL).
fn column_name(h: &Header, dim: usize, j: usize) -> String {
    match h.columns.as_slice() {
        [one] if dim > 1 => format!("{one}[{}]", j + 1),
        cols => cols
            .get(j)
            .cloned()
            .unwrap_or_else(|| format!("[{}]", j + 1)),
    }
}

/// One ranking row before ranking.
struct Row {
    table: String,
    column: String,
    join_size: Estimate,
    correlation: Estimate,
    r2: Estimate,
}

impl Row {
    /// What the ranking orders by, descending: the conservative end of the estimate's
    /// interval (for a correlation, the end nearest 0, or 0 when the interval spans 0), then
    /// the estimate — so a strong-looking estimate from a handful of joined keys, whose
    /// interval is wide, does not outrank a slightly weaker one that is sure.
    fn key(&self, by: RankBy) -> Option<(f64, f64)> {
        let e = match by {
            RankBy::Correlation => self.correlation.as_ref().ok()?,
            RankBy::R2 => self.r2.as_ref().ok()?,
            RankBy::JoinSize => self.join_size.as_ref().ok()?,
        };
        Some(match by {
            RankBy::Correlation => {
                let sure = if e.lower > 0.0 {
                    e.lower
                } else if e.upper < 0.0 {
                    -e.upper
                } else {
                    0.0
                };
                (sure, e.estimate.abs())
            }
            _ => (e.lower, e.estimate),
        })
    }
}

impl FromOutputs for SearchParams {
    fn compute(&self, dirs: &[PathBuf]) -> Result<Vec<OutputTable>> {
        let (qs, qh, qname) = read_query(&dirs[0])?;
        let q = qs.sample(&qname)?;
        let names: Vec<String> = (0..q.dim).map(|j| column_name(&qh, q.dim, j)).collect();
        let target = match &self.target {
            Some(t) => names.iter().position(|n| n == t).ok_or_else(|| {
                Error::Config(format!(
                    "key `target`: {qname} has no column `{t}` (it has: {})",
                    names.join(", ")
                ))
            })?,
            None if q.dim == 1 => 0,
            None => {
                return Err(Error::Config(format!(
                    "key `target`: {qname} has several columns ({}); name the one to predict",
                    names.join(", ")
                )))
            }
        };
        let path = output_file(&dirs[1], "sketches.parquet");
        let mut rows = Vec::new();
        catalog::scan(&path, |name, s, h| {
            let cname = format!("table {name:?} of the catalog");
            stored::check_compatible((&qs, &qh, &qname), (&s, &h, &cname))?;
            let c = s.sample(&cname)?;
            let e = JoinEstimator::new(q, c, self.confidence)?;
            let join_size = e.join_size();
            if let Ok(js) = &join_size {
                if js.estimate < self.min_join_size {
                    return Ok(());
                }
            }
            let r2 = e.r2(target, self.lambda)?;
            for j in 0..c.dim {
                rows.push(Row {
                    table: name.to_string(),
                    column: column_name(&h, c.dim, j),
                    join_size: join_size.clone(),
                    correlation: e.correlation(target, j)?,
                    r2: r2.clone(),
                });
            }
            Ok(())
        })?;
        let by = self.rank_by;
        rows.sort_by(|a, b| match (a.key(by), b.key(by)) {
            (Some(x), Some(y)) => (y.0.total_cmp(&x.0))
                .then(y.1.total_cmp(&x.1))
                .then_with(|| (&a.table, &a.column).cmp(&(&b.table, &b.column))),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => (&a.table, &a.column).cmp(&(&b.table, &b.column)),
        });
        Ok(vec![OutputTable::new("ranking", ranking(&rows)?)])
    }
}

fn ranking(rows: &[Row]) -> Result<RecordBatch> {
    let part = |f: fn(&Row) -> &Estimate, which: usize| -> ArrayRef {
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| {
            f(r).as_ref().ok().map(|i| match which {
                0 => i.estimate,
                1 => i.lower,
                _ => i.upper,
            })
        })))
    };
    let estimates: [fn(&Row) -> &Estimate; 3] = [|r| &r.join_size, |r| &r.correlation, |r| &r.r2];
    let notes = rows.iter().map(|r| {
        [&r.join_size, &r.correlation, &r.r2]
            .into_iter()
            .find_map(|e| e.as_ref().err().cloned())
    });
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.table))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &r.column),
        )),
    ];
    for f in estimates {
        for which in 0..3 {
            columns.push(part(f, which));
        }
    }
    columns.push(Arc::new(UInt32Array::from_iter_values(
        1..=rows.len() as u32,
    )));
    columns.push(Arc::new(StringArray::from_iter(notes)));
    Ok(RecordBatch::try_new(ranking_schema(), columns)?)
}
