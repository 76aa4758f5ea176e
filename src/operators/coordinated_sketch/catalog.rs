//! A corpus sketched in one run: a `coordinated_sketch` stage with `table_column` keeps one
//! sketch per table (the values of that column name the tables) and writes them as one
//! catalog table, `sketches` — one row per table: its name, the sketch value (the bytes the
//! SQL aggregates return, [`super::table::to_bytes`]) and its stats. Every table's sketch is
//! made with the stage's method, size, seed and weights, so any two of them, or any of them
//! and a query sketched the same way, are coordinated.
//!
//! A key is a row identity within its table, not across tables: the duplicate-key check of
//! the scan ([`super::unique::KeyHashes::within`]) mixes each key's hash with its table's, so
//! a key repeated within a table is refused by name and the same key in two tables is not;
//! `duplicate_keys = "sum"` or `"mean"` groups by `(table, key)` ([`group_by_table_and_key`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Float64Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::col;

use super::{table, CoordinatedSketchParams, Core, DuplicateKeys, SketchStats};
use crate::hash::HASH_VERSION;
use crate::operators::OutputTable;
use crate::sketch::stored::{self, Header, KeyType, StoredSketch};
use crate::{Error, Result};

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("sketch", DataType::Binary, false),
        Field::new("method", DataType::Utf8, false),
        Field::new("weights", DataType::Utf8, true),
        Field::new("rows", DataType::UInt64, false),
        Field::new("kept", DataType::UInt64, false),
        Field::new("dim", DataType::UInt32, false),
        Field::new("stored_words", DataType::Float64, false),
        Field::new("frobenius_sq", DataType::Float64, false),
        Field::new("level", DataType::Float64, true),
        Field::new("seed", DataType::UInt64, false),
        Field::new("hash", DataType::Utf8, false),
    ]))
});

/// The `sketches` table's schema.
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// The input with the rows of each `(table, key)` added up or averaged
/// (`duplicate_keys = "sum"` or `"mean"`): the key, the table column, then the value columns —
/// the order the stage reads.
pub fn group_by_table_and_key(p: &CoordinatedSketchParams, frame: DataFrame) -> Result<DataFrame> {
    use datafusion::functions_aggregate::expr_fn::{avg, sum};
    let table = p.table_column.as_deref().expect("a corpus stage");
    let by = |c: &str| col(Column::from_name(c));
    let aggr: Vec<_> = p
        .columns
        .iter()
        .map(|c| match p.duplicate_keys {
            DuplicateKeys::Mean => avg(by(c)).alias(c),
            _ => sum(by(c)).alias(c),
        })
        .collect();
    frame
        .aggregate(vec![by(&p.key), by(table)], aggr)
        .map_err(|e| {
            Error::Config(format!(
                "duplicate_keys = \"sum\" or \"mean\" adds up numeric columns by (table, key): {e}"
            ))
        })
}

/// The tables of a corpus being sketched.
pub(crate) struct Corpus {
    table: String,
    table_index: usize,
    /// The tables' cores, in the order first seen, and where each name is.
    cores: Vec<(String, Core)>,
    index: HashMap<String, usize>,
    /// The table of the row before (rows of a table often come together).
    last: Option<usize>,
    /// Incremental: the previous run's catalog, merged in at the end table by table.
    previous: Vec<(String, StoredSketch, Header)>,
}

impl Corpus {
    pub(crate) fn new(schema: &Schema, table: &str) -> Result<Self> {
        Ok(Corpus {
            table: table.to_string(),
            table_index: schema.index_of(table)?,
            cores: Vec::new(),
            index: HashMap::new(),
            last: None,
            previous: Vec::new(),
        })
    }

    /// A batch's table names, after checking that every row has one.
    pub(crate) fn batch(&self, batch: &RecordBatch, first_row: u64) -> Result<StringArray> {
        let names = cast(batch.column(self.table_index), &DataType::Utf8)?;
        let names = names.as_string::<i32>().clone();
        if let Some(i) = (0..names.len()).find(|&i| names.is_null(i)) {
            return Err(Error::Input(format!(
                "column `{}`: row {} has no table name (a corpus row needs one)",
                self.table,
                first_row + i as u64
            )));
        }
        Ok(names)
    }

    /// The core of table `name`, made by `make` for its first row.
    pub(crate) fn core(
        &mut self,
        name: &str,
        make: impl FnOnce() -> Result<Core>,
    ) -> Result<&mut Core> {
        let at = match self.last.filter(|&i| self.cores[i].0 == name) {
            Some(i) => i,
            None => match self.index.get(name) {
                Some(&i) => i,
                None => {
                    self.cores.push((name.to_string(), make()?));
                    self.index.insert(name.to_string(), self.cores.len() - 1);
                    self.cores.len() - 1
                }
            },
        };
        self.last = Some(at);
        Ok(&mut self.cores[at].1)
    }

    /// Continues from the catalog of a previous incremental run (`path`): the rows read now
    /// are merged into its tables' sketches, and new tables are added.
    pub(crate) fn resume(&mut self, path: &Path, key_type: KeyType) -> Result<()> {
        let mut previous = Vec::new();
        scan(path, |name, s, h| {
            if h.key_type != key_type {
                return Err(Error::Input(format!(
                    "{}: the previous catalog has {} keys, the input now {}",
                    path.display(),
                    h.key_type.as_str(),
                    key_type.as_str()
                )));
            }
            previous.push((name.to_string(), s, h));
            Ok(())
        })?;
        self.previous = previous;
        Ok(())
    }

    /// The `sketches` table: one row per table, in name order.
    pub(crate) fn finish(
        self,
        header: &Header,
        finish: fn(Core) -> StoredSketch,
    ) -> Result<Vec<OutputTable>> {
        if self.cores.is_empty() && self.previous.is_empty() {
            return Err(Error::Input(
                "the input has no rows: nothing to sketch".into(),
            ));
        }
        let mut tables: BTreeMap<String, (StoredSketch, Header)> = self
            .previous
            .into_iter()
            .map(|(name, s, h)| (name, (s, h)))
            .collect();
        for (name, core) in self.cores {
            let now = finish(core);
            let merged = match tables.remove(&name) {
                None => (now, header.clone()),
                Some((before, h)) => stored::merge(vec![
                    (
                        before,
                        h,
                        format!("the previous run's sketch of table {name:?}"),
                    ),
                    (
                        now,
                        header.clone(),
                        format!("the new files' sketch of table {name:?}"),
                    ),
                ])?,
            };
            tables.insert(name, merged);
        }
        let mut names = Vec::with_capacity(tables.len());
        let mut bytes = Vec::with_capacity(tables.len());
        let mut stats = Stats::default();
        for (name, (sketch, h)) in tables {
            bytes.push(table::to_bytes(&sketch, &h)?);
            stats.push(&sketch);
            names.push(name);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(BinaryArray::from_iter_values(bytes.iter())),
        ];
        columns.extend(stats.columns());
        Ok(vec![OutputTable::new(
            "sketches",
            RecordBatch::try_new(schema(), columns)?,
        )])
    }
}

/// The per-table stats columns of the catalog.
#[derive(Default)]
struct Stats {
    method: Vec<&'static str>,
    weights: Vec<Option<&'static str>>,
    rows: Vec<u64>,
    kept: Vec<u64>,
    dim: Vec<u32>,
    words: Vec<f64>,
    frob: Vec<f64>,
    level: Vec<Option<f64>>,
    seed: Vec<u64>,
}

impl Stats {
    fn push(&mut self, s: &StoredSketch) {
        let st = SketchStats::of(s);
        self.method.push(st.method.as_str());
        self.weights.push(st.weights);
        self.rows.push(st.rows);
        self.kept.push(st.kept);
        self.dim.push(s.dim() as u32);
        self.words.push(st.words);
        self.frob.push(st.frob);
        self.level.push(st.level);
        self.seed.push(st.seed);
    }

    fn columns(self) -> Vec<ArrayRef> {
        let n = self.rows.len();
        vec![
            Arc::new(StringArray::from(self.method)),
            Arc::new(StringArray::from(self.weights)),
            Arc::new(UInt64Array::from(self.rows)),
            Arc::new(UInt64Array::from(self.kept)),
            Arc::new(UInt32Array::from(self.dim)),
            Arc::new(Float64Array::from(self.words)),
            Arc::new(Float64Array::from(self.frob)),
            Arc::new(Float64Array::from(self.level)),
            Arc::new(UInt64Array::from(self.seed)),
            Arc::new(StringArray::from(vec![HASH_VERSION; n])),
        ]
    }
}

/// Calls `f(table, sketch, header)` for every entry of a catalog file (`sketches.parquet`),
/// reading it a batch at a time (a catalog larger than memory is scanned, not loaded).
pub fn scan(
    path: &Path,
    mut f: impl FnMut(&str, StoredSketch, Header) -> Result<()>,
) -> Result<()> {
    let what = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(format!("cannot open catalog {what}"), e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(64);
    let schema = builder.schema().clone();
    let (Ok(ti), Ok(si)) = (schema.index_of("table"), schema.index_of("sketch")) else {
        return Err(Error::Input(format!(
            "{what} is not a sketch catalog (it needs `table` and `sketch` columns: the \
             `sketches` table of a coordinated_sketch stage with table_column)"
        )));
    };
    for batch in builder.build()? {
        let batch = batch?;
        let names = cast(batch.column(ti), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let sketches = cast(batch.column(si), &DataType::Binary)?;
        let sketches = sketches.as_binary::<i32>();
        for i in 0..batch.num_rows() {
            let name = names.value(i);
            let (s, h) = table::from_bytes(sketches.value(i), &format!("{what}, table {name:?}"))?;
            f(name, s, h)?;
        }
    }
    Ok(())
}
