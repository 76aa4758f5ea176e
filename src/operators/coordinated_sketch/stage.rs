//! The `coordinated_sketch` op: its keys, its tables, how it runs (operator passes with the
//! duplicate-key check riding on the first, or one aggregate on a cluster for the methods
//! that merge).

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{lit, Expr};
use datafusion::prelude::{col, SessionContext};

use super::{output_tables, table, CoordinatedSketchOp, CoordinatedSketchParams, DuplicateKeys};
use crate::keys::Keys;
use crate::operators::op::{
    check_folded, ClusterAggregate, Execution, Op, OpKind, Passes, StageContext,
};
use crate::operators::{rows_expr, Operator, OutputTable, TableDecl};
use crate::sketch::{Method, Weights};
use crate::{Error, Result};

/// The registry's entry.
pub const KIND: OpKind = OpKind {
    name: "coordinated_sketch",
    parse: |keys| Ok(Box::new(parse(keys)?)),
    functions: crate::udf::sketches::sketch_functions,
};

impl Op for CoordinatedSketchParams {
    fn name(&self) -> &'static str {
        KIND.name
    }

    fn table_names(&self) -> Vec<&'static str> {
        match self.table_column {
            Some(_) => vec!["sketches"],
            None => vec!["sketch", "stats"],
        }
    }

    fn tables(&self, input: &Schema) -> Result<Vec<TableDecl>> {
        CoordinatedSketchParams::tables(self, input)
    }

    fn columns(&self) -> &[String] {
        self.read_columns()
    }

    fn column_key(&self, column: &str) -> &'static str {
        if column == self.key {
            "key"
        } else if self.table_column.as_deref() == Some(column) {
            "table_column"
        } else {
            "columns"
        }
    }

    fn check_schema(&self, input: &Schema) -> Result<()> {
        CoordinatedSketchParams::check_schema(self, input)
    }

    fn seed(&self) -> Option<u64> {
        Some(self.seed)
    }

    fn incremental(&self) -> bool {
        self.incremental
    }

    fn make_incremental(&mut self) -> std::result::Result<(), String> {
        if self.table_from_file.is_some() {
            return Err(
                "a corpus of files (table_from = \"file\") is sketched whole for now; a corpus \
                 with a table_column can be incremental"
                    .into(),
            );
        }
        if self.method == Method::Threshold {
            return Err("threshold sketches do not merge; use method = \"priority\"".into());
        }
        if self.duplicate_keys != DuplicateKeys::Error {
            return Err(
                "cannot be combined with duplicate_keys = \"sum\" or \"mean\" (a key's rows \
                 in earlier files are no longer read)"
                    .into(),
            );
        }
        self.incremental = true;
        Ok(())
    }

    fn writes_sketch(&self) -> bool {
        self.table_column.is_none()
    }

    fn unique_key(&self) -> Option<&str> {
        (self.duplicate_keys == DuplicateKeys::Error).then_some(self.key.as_str())
    }

    fn tables_from_files(&self) -> Option<(&str, bool)> {
        self.table_from_file
            .map(|skip| (super::FILE_TABLE_COLUMN, skip))
    }

    fn unique_within(&self) -> Option<&str> {
        // A corpus's keys identify rows of their table.
        self.table_column.as_deref()
    }

    fn rewrites_input(&self) -> bool {
        // A corpus of files is read file by file, alone.
        self.duplicate_keys != DuplicateKeys::Error || self.table_from_file.is_some()
    }

    /// Adds up (or averages) the value columns of rows sharing a key: a DataFusion group-by,
    /// which spills under the memory limit.
    fn prepare(&self, frame: DataFrame) -> Result<DataFrame> {
        use datafusion::functions_aggregate::expr_fn::{avg, sum};
        if self.duplicate_keys == DuplicateKeys::Error {
            return Ok(frame);
        }
        if self.table_column.is_some() {
            return super::catalog::group_by_table_and_key(self, frame);
        }
        let aggr = self
            .columns
            .iter()
            .map(|c| {
                let e = col(Column::from_name(c));
                match self.duplicate_keys {
                    DuplicateKeys::Mean => avg(e),
                    _ => sum(e),
                }
                .alias(c)
            })
            .collect::<Vec<_>>();
        frame
            .aggregate(vec![col(Column::from_name(&self.key))], aggr)
            .map_err(|e| {
                Error::Config(format!(
                    "duplicate_keys = \"sum\" or \"mean\" adds up numeric columns by key: {e}"
                ))
            })
    }

    fn execution(&self) -> Execution<'_> {
        Execution::Passes(self)
    }

    fn cluster(&self) -> Option<&dyn ClusterAggregate> {
        let eligible = self.method != Method::Threshold
            && self.table_column.is_none()
            && !self.incremental
            && self.duplicate_keys == DuplicateKeys::Error;
        eligible.then_some(self as &dyn ClusterAggregate)
    }
}

impl Passes for CoordinatedSketchParams {
    fn operator(&self, ctx: &StageContext<'_>) -> Result<Box<dyn Operator>> {
        let mut op = CoordinatedSketchOp::new(self.clone(), ctx.schema)?;
        if let Some(dir) = ctx.previous {
            op.resume(dir)?;
        }
        Ok(Box::new(op))
    }
}

impl ClusterAggregate for CoordinatedSketchParams {
    fn aggregate(&self, session: &SessionContext) -> Result<Expr> {
        let mut args = vec![
            col(Column::from_name(&self.key)),
            rows_expr(&self.columns),
            lit(self.method.as_str()),
            lit(self.size as u64),
            lit(self.seed),
        ];
        if let Some(d) = self.dim {
            args.push(lit(d as u64));
        }
        if self.weights != Weights::Norm {
            args.push(lit(self.weights.as_str()));
        }
        Ok(session.udaf("coordinated_sketch")?.call(args))
    }

    fn finish(
        &self,
        state: &ArrayRef,
        rows: u64,
        _schema: &Schema,
        _order_randomised: bool,
    ) -> Result<Vec<OutputTable>> {
        let bytes = state.as_binary::<i32>();
        if bytes.is_null(0) {
            return Err(Error::Input(
                "the input has no rows: nothing to sketch".into(),
            ));
        }
        let (stored, mut header) = table::from_bytes(bytes.value(0), "the cluster's sketch")?;
        check_folded(stored.rows_seen(), rows, &self.columns)?;
        // Named by the stage's columns, as locally (SQL names the expression).
        header.columns = self.columns.clone();
        output_tables(&stored, &header)
    }
}

/// Reads a `coordinated_sketch` stage's keys.
pub fn parse(keys: &mut Keys<'_>) -> Result<CoordinatedSketchParams> {
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
    let mut p = CoordinatedSketchParams::new(key.clone(), columns, method);
    if let Some(t) = keys.string("table_column")? {
        if t == key || p.columns.contains(&t) {
            return Err(keys.error(
                "table_column",
                format!("`{t}` is the key or a value column; name the column of table names"),
            ));
        }
        p = p.with_table_column(t);
    }
    if let Some(from) = keys.choice("table_from", &["file"])? {
        if p.table_column.is_some() {
            return Err(keys.error(
                "table_from",
                "give either table_column (a column names the tables) or table_from = \"file\" \
                 (each file is a table), not both",
            ));
        }
        debug_assert_eq!(from, "file");
        p = p.with_table_column(super::FILE_TABLE_COLUMN.to_string());
        p.table_from_file = Some(false);
    }
    if let Some(m) = keys.choice("on_missing", &["error", "skip"])? {
        if p.table_from_file.is_none() {
            return Err(keys.error(
                "on_missing",
                "applies to table_from = \"file\" (files that lack a column)",
            ));
        }
        p.table_from_file = Some(m == "skip");
    }
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
    if let Some(w) = keys.choice("weights", &Weights::NAMES)? {
        if !method.is_sampling() {
            return Err(keys.error(
                "weights",
                format!(
                    "only applies to sampling methods (priority, threshold, exact); `{}` \
                     sketches every row linearly",
                    method.as_str()
                ),
            ));
        }
        p.weights = Weights::parse(&w).expect("choice checked");
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
