//! `op = "coordinated_sketch"`: a coordinated sampling (or linear) sketch of one table's rows,
//! keyed by a join key, that any other sketch made with the same seed can be multiplied with
//! later (`op = "sketch_product"`) — Daliri, Freire, Li, Musco, *Matrix Product Sketching via
//! Coordinated Sampling*, ICLR 2025, arXiv:2501.17836. The cores are in [`crate::sketch`].
//!
//! Output tables:
//! * `sketch` — everything needed to rebuild the sketch exactly ([`table`]): one row per kept
//!   row (sampling) or per sketch row (linear), and a header in the Parquet key-value metadata
//!   (format version, method, seed, hash, key type, size, `τ`/`λ`, `d`, column names,
//!   `‖A‖_F²`);
//! * `stats` — `method`, `rows`, `dim`, `size`, `stored_words` (64-bit words, §2), `kept`,
//!   `frobenius_sq`, `level` (`τ` or `λ`), `seed`, `hash`.

pub mod catalog;
pub mod stage;
pub mod table;
pub mod unique;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt64Type};

use super::{Operator, OutputTable, PassInfo, PassKind, TableDecl};
use crate::hash::{Key, HASH_VERSION};
use crate::rows::{is_sparse_list, DenseRowReader, OnInvalid, SparseRowReader};
use crate::sketch::linear::LinearSketch;
use crate::sketch::priority::PrioritySketch;
use crate::sketch::threshold::ThresholdSketch;
use crate::sketch::{ExactSketch, Method, RowRef, Weights};
use crate::{Error, Result};

pub use crate::sketch::stored::{Header, KeyType, StoredSketch};

/// The column a `table_from = "file"` corpus's rows carry their file's stem in.
pub const FILE_TABLE_COLUMN: &str = "__sketchpipe_file";

/// What to do when a key appears on more than one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateKeys {
    /// Fail, naming a repeated key (the default: a key is a row identity).
    Error,
    /// Add up the rows of each key first (numeric columns only).
    Sum,
    /// Average the rows of each key first (numeric columns only).
    Mean,
}

/// Validated parameters of a `coordinated_sketch` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinatedSketchParams {
    pub key: String,
    /// Several numeric columns, or one list column.
    pub columns: Vec<String>,
    pub method: Method,
    /// Rows kept (`priority`; expected for `threshold`), or sketch rows `t` (`jl`,
    /// `countsketch`); unused by `exact`.
    pub size: usize,
    pub seed: u64,
    pub duplicate_keys: DuplicateKeys,
    /// Width of a sparse `List<Struct<index, value>>` column's rows (required for one).
    pub dim: Option<usize>,
    /// Merge into the previous run's sketch, reading only new files.
    pub incremental: bool,
    /// How sampled rows are weighted (sampling methods).
    pub weights: Weights,
    /// A corpus: the column whose values name the tables, one sketch each (a catalog).
    pub table_column: Option<String>,
    /// A corpus of files, one table each (`table_column` is then [`FILE_TABLE_COLUMN`]), and
    /// whether a file lacking a column is skipped (`on_missing = "skip"`).
    pub table_from_file: Option<bool>,
    /// Key column first (then the table column of a corpus), then the value columns: what the
    /// scan reads.
    read: Vec<String>,
}

impl CoordinatedSketchParams {
    pub fn new(key: String, columns: Vec<String>, method: Method) -> Self {
        let mut read = vec![key.clone()];
        read.extend(columns.iter().filter(|c| **c != key).cloned());
        CoordinatedSketchParams {
            key,
            columns,
            method,
            size: 1000,
            seed: 42,
            duplicate_keys: DuplicateKeys::Error,
            dim: None,
            incremental: false,
            weights: Weights::Norm,
            table_column: None,
            table_from_file: None,
            read,
        }
    }

    /// The same stage over a corpus whose tables column `table` names.
    pub fn with_table_column(mut self, table: String) -> Self {
        self.read.retain(|c| *c != table);
        self.read.insert(1, table.clone());
        self.table_column = Some(table);
        self
    }

    /// Every input column the stage reads.
    pub fn read_columns(&self) -> &[String] {
        &self.read
    }

    /// Checks the input's column types before any data is read.
    pub fn check_schema(&self, schema: &Schema) -> Result<()> {
        self.tables(schema)?;
        if self.duplicate_keys != DuplicateKeys::Error {
            for c in &self.columns {
                let t = schema.field_with_name(c)?.data_type();
                if !t.is_numeric() {
                    return Err(Error::Config(format!(
                        "key `duplicate_keys`: \"sum\" and \"mean\" add up numeric columns \
                         row by row; `{c}` is {t} — give the values as numeric columns, or make \
                         the keys unique"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The tables the stage writes.
    pub fn tables(&self, input: &Schema) -> Result<Vec<TableDecl>> {
        let (_, key) = key_column(input, &self.key)?;
        if let Some(t) = &self.table_column {
            let typ = input.field_with_name(t)?.data_type();
            if !(crate::rows::is_string(typ) || typ.is_integer()) {
                return Err(Error::Config(format!(
                    "key `table_column`: column `{t}` is {typ}; table names must be strings or \
                     integers"
                )));
            }
            return Ok(vec![TableDecl {
                name: "sketches",
                schema: catalog::schema(),
            }]);
        }
        Ok(vec![
            TableDecl {
                name: "sketch",
                schema: table::sketch_schema(key),
            },
            TableDecl {
                name: "stats",
                schema: stats_schema(),
            },
        ])
    }
}

static STATS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("method", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("dim", DataType::UInt32, false),
        Field::new("size", DataType::UInt64, false),
        Field::new("stored_words", DataType::Float64, false),
        Field::new("kept", DataType::UInt64, false),
        Field::new("frobenius_sq", DataType::Float64, false),
        Field::new("level", DataType::Float64, true),
        Field::new("seed", DataType::UInt64, false),
        Field::new("hash", DataType::Utf8, false),
    ]))
});

/// The `stats` table of a `coordinated_sketch` stage.
pub fn stats_schema() -> SchemaRef {
    Arc::clone(&STATS)
}

/// The index and key type of column `key` of `schema`, or an error saying keys must be
/// integers or strings.
fn key_column(schema: &Schema, key: &str) -> Result<(usize, KeyType)> {
    let index = schema.index_of(key)?;
    let t = schema.field(index).data_type();
    let key_type = table::key_type_of(t).ok_or_else(|| {
        Error::Config(format!(
            "key `key`: column `{key}` is {t}; keys must be integers or strings"
        ))
    })?;
    Ok((index, key_type))
}

/// One batch's keys, typed once per batch.
enum Keys {
    Int(datafusion::arrow::array::Int64Array),
    UInt(datafusion::arrow::array::UInt64Array),
    Str(StringArray),
}

impl Keys {
    fn read(array: &ArrayRef, key_type: KeyType) -> Result<Self> {
        Ok(match key_type {
            KeyType::Int => Keys::Int(
                cast(array, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone(),
            ),
            KeyType::UInt => Keys::UInt(
                cast(array, &DataType::UInt64)?
                    .as_primitive::<UInt64Type>()
                    .clone(),
            ),
            KeyType::Str => Keys::Str(cast(array, &DataType::Utf8)?.as_string::<i32>().clone()),
        })
    }

    fn is_null(&self, i: usize) -> bool {
        match self {
            Keys::Int(a) => a.is_null(i),
            Keys::UInt(a) => a.is_null(i),
            Keys::Str(a) => a.is_null(i),
        }
    }

    fn get(&self, i: usize) -> Key<'_> {
        match self {
            Keys::Int(a) => Key::Int(a.value(i)),
            Keys::UInt(a) => Key::UInt(a.value(i)),
            Keys::Str(a) => Key::Str(a.value(i)),
        }
    }
}

/// Dense rows (numeric columns or a list column) or sparse ones.
enum Reader {
    Dense(DenseRowReader),
    Sparse(SparseRowReader),
}

pub(crate) enum Core {
    Priority(PrioritySketch),
    Threshold(ThresholdSketch),
    Exact(ExactSketch),
    Linear(LinearSketch),
}

/// The `coordinated_sketch` operator: one pass.
pub struct CoordinatedSketchOp {
    p: CoordinatedSketchParams,
    key_type: KeyType,
    key_index: usize,
    reader: Reader,
    core: Option<Core>,
    /// A corpus: one core per table.
    corpus: Option<catalog::Corpus>,
    done: bool,
    /// Incremental: the previous run's sketch, merged in at the end.
    previous: Option<(StoredSketch, Header)>,
}

impl CoordinatedSketchOp {
    pub fn new(p: CoordinatedSketchParams, schema: &Schema) -> Result<Self> {
        let (key_index, key_type) = key_column(schema, &p.key)?;
        if !p.method.is_sampling() && p.size == 0 {
            return Err(Error::Config("key `size`: must be at least 1".into()));
        }
        let sparse = match p.columns.as_slice() {
            [one] => is_sparse_list(schema.field_with_name(one)?.data_type()),
            _ => false,
        };
        let reader = match (sparse, p.dim) {
            (true, Some(dim)) => Reader::Sparse(SparseRowReader::new(schema, &p.columns[0], dim)?),
            (true, None) => {
                return Err(Error::Config(format!(
                    "key `dim`: column `{}` holds sparse rows; say how wide they are (dim = …)",
                    p.columns[0]
                )))
            }
            (false, Some(_)) => {
                return Err(Error::Config(
                    "key `dim`: only applies to a sparse List<Struct<index, value>> column".into(),
                ))
            }
            (false, None) => {
                Reader::Dense(DenseRowReader::new(schema, &p.columns, OnInvalid::Error)?)
            }
        };
        let corpus = match &p.table_column {
            Some(t) => Some(catalog::Corpus::new(schema, t)?),
            None => None,
        };
        Ok(CoordinatedSketchOp {
            p,
            key_type,
            key_index,
            reader,
            core: None,
            corpus,
            done: false,
            previous: None,
        })
    }
}

impl CoordinatedSketchOp {
    /// The finished sketch and its header; `None` when no row was seen.
    pub fn into_sketch(self) -> Option<(StoredSketch, Header)> {
        let stored = finish_core(self.core?);
        let header = Header {
            key_type: self.key_type,
            columns: self.p.columns.clone(),
        };
        Some((stored, header))
    }

    /// Continues from the sketch of a previous incremental run in `dir`: the rows read now
    /// are merged into it ([`crate::sketch::stored::merge`]: as one pass for priority).
    pub fn resume(&mut self, dir: &Path) -> Result<()> {
        if let Some(corpus) = &mut self.corpus {
            return corpus.resume(&dir.join("sketches.parquet"), self.key_type);
        }
        let path = dir.join("sketch.parquet");
        let (sketch, header) = table::read(&path)?;
        if header.key_type != self.key_type {
            return Err(Error::Input(format!(
                "{}: the previous sketch has {} keys, the input now {}",
                path.display(),
                header.key_type.as_str(),
                self.key_type.as_str()
            )));
        }
        self.previous = Some((sketch, header));
        Ok(())
    }

    /// The sketch of the rows read, merged into the previous run's when incremental.
    fn finished(mut self) -> Result<Option<(StoredSketch, Header)>> {
        let previous = self.previous.take();
        let current = self.into_sketch();
        Ok(match (previous, current) {
            (Some((p, ph)), Some((c, ch))) => Some(crate::sketch::stored::merge(vec![
                (p, ph, "the previous run's sketch".into()),
                (c, ch, "the new files' sketch".into()),
            ])?),
            (p, c) => c.or(p),
        })
    }
}

/// The sketch a core holds.
fn finish_core(core: Core) -> StoredSketch {
    match core {
        Core::Priority(s) => StoredSketch::Sample(s.finish()),
        Core::Threshold(s) => StoredSketch::Sample(s.finish()),
        Core::Exact(s) => StoredSketch::Sample(s.finish()),
        Core::Linear(s) => StoredSketch::Linear(s),
    }
}

/// The core row `i` goes to: its table's in a corpus (`tables` the batch's names), else the
/// one core.
fn route<'a>(
    corpus: &'a mut Option<catalog::Corpus>,
    single: &'a mut Option<Core>,
    tables: Option<&StringArray>,
    p: &CoordinatedSketchParams,
    i: usize,
    d: usize,
) -> Result<&'a mut Core> {
    match (corpus, tables) {
        (Some(c), Some(names)) => c.core(names.value(i), || make_core(p, d)),
        _ => core_for(single, p, d),
    }
}

/// The sketch core, made on the first rows (when the width is known).
fn core_for<'a>(
    slot: &'a mut Option<Core>,
    p: &CoordinatedSketchParams,
    dim: usize,
) -> Result<&'a mut Core> {
    if slot.is_none() {
        *slot = Some(make_core(p, dim)?);
    }
    Ok(slot.as_mut().expect("just set"))
}

fn make_core(p: &CoordinatedSketchParams, dim: usize) -> Result<Core> {
    let (k, seed, w) = (p.size, p.seed, p.weights);
    Ok(match p.method {
        Method::Priority => Core::Priority(PrioritySketch::new(k, dim, seed).with_weights(w)),
        Method::Threshold => Core::Threshold(ThresholdSketch::new(k, dim, seed).with_weights(w)),
        Method::Exact => Core::Exact(ExactSketch::new(dim, seed).with_weights(w)),
        m => Core::Linear(LinearSketch::new(m, k, dim, seed)?),
    })
}

impl Operator for CoordinatedSketchOp {
    fn next_pass(&self) -> Option<PassKind> {
        (!self.done).then_some(PassKind::AnyOrder)
    }

    fn begin_pass(&mut self, _info: &PassInfo) -> Result<()> {
        match &mut self.reader {
            Reader::Dense(r) => r.restart(),
            Reader::Sparse(r) => r.restart(),
        }
        Ok(())
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let first_row = self.rows_read();
        let keys = Keys::read(batch.column(self.key_index), self.key_type)?;
        if let Some(i) = (0..batch.num_rows()).find(|&i| keys.is_null(i)) {
            return Err(Error::Input(format!(
                "column `{}`: row {} has a null key (every row needs one)",
                self.p.key,
                first_row + i as u64
            )));
        }
        let feed = |core: &mut Core, i: usize, row: RowRef<'_>| {
            let key = keys.get(i);
            match core {
                Core::Priority(s) => s.update(key, row),
                Core::Exact(s) => s.update(key, row),
                Core::Linear(s) => s.update(key, row),
                Core::Threshold(s) => s.update(key, row),
            }
        };
        // A corpus's table names and repeats, checked before any row is sketched.
        let tables = match &self.corpus {
            Some(c) => Some(c.batch(batch, first_row)?),
            None => None,
        };
        let (p, corpus, single) = (&self.p, &mut self.corpus, &mut self.core);
        let tables = tables.as_ref();
        match &mut self.reader {
            Reader::Dense(reader) => {
                let rows = reader.read(batch)?;
                let (d, n) = (rows.dim, rows.rows);
                if n == 0 {
                    return Ok(());
                }
                for (i, row) in rows.values.chunks_exact(d).enumerate().take(n) {
                    feed(
                        route(corpus, single, tables, p, i, d)?,
                        i,
                        RowRef::Dense(row),
                    );
                }
            }
            Reader::Sparse(reader) => {
                let d = reader.dim();
                let rows = reader.read(batch)?;
                for i in 0..rows.rows() {
                    let (indices, values) = rows.row(i);
                    let core = route(corpus, single, tables, p, i, d)?;
                    feed(core, i, RowRef::Sparse { indices, values });
                }
            }
        }
        Ok(())
    }

    fn end_pass(&mut self) -> Result<()> {
        self.done = true;
        Ok(())
    }

    fn rows_read(&self) -> u64 {
        match &self.reader {
            Reader::Dense(r) => r.rows_seen(),
            Reader::Sparse(r) => r.rows_seen(),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<OutputTable>> {
        if let Some(corpus) = self.corpus.take() {
            let header = Header {
                key_type: self.key_type,
                columns: self.p.columns.clone(),
            };
            return corpus.finish(&header, finish_core);
        }
        match self.finished()? {
            Some((stored, header)) => output_tables(&stored, &header),
            None => Err(Error::Input(
                "the input has no rows: nothing to sketch".into(),
            )),
        }
    }
}

/// What a sketch's stats say about it: the `stats` table's row, and a catalog's per-table
/// columns.
pub(crate) struct SketchStats {
    pub method: Method,
    /// `norm` or `uniform` for a sample; `None` for a linear sketch.
    pub weights: Option<&'static str>,
    pub rows: u64,
    pub size: u64,
    pub words: f64,
    pub kept: u64,
    pub frob: f64,
    /// `τ` or `λ`; `None` when infinite (nothing cut) or for a linear sketch.
    pub level: Option<f64>,
    pub seed: u64,
}

impl SketchStats {
    pub(crate) fn of(stored: &StoredSketch) -> Self {
        match stored {
            StoredSketch::Sample(s) => SketchStats {
                method: s.method,
                weights: Some(s.weights.as_str()),
                rows: s.rows_seen,
                size: s.size as u64,
                words: s.stored_words(),
                kept: s.rows.len() as u64,
                frob: s.frobenius_sq,
                level: Some(s.level).filter(|l| l.is_finite()),
                seed: s.seed,
            },
            StoredSketch::Linear(s) => SketchStats {
                method: s.method,
                weights: None,
                rows: s.rows_seen,
                size: s.t as u64,
                words: s.stored_words(),
                kept: s.t as u64,
                frob: s.frobenius_sq,
                level: None,
                seed: s.seed,
            },
        }
    }
}

/// The `sketch` and `stats` tables of a sketch (built here or merged).
pub fn output_tables(stored: &StoredSketch, header: &Header) -> Result<Vec<OutputTable>> {
    let dim = stored.dim();
    let (sketch, metadata) = table::write(stored, header)?;
    let SketchStats {
        method,
        rows,
        size,
        words,
        kept,
        frob,
        level,
        seed,
        ..
    } = SketchStats::of(stored);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![method.as_str()])),
        Arc::new(UInt64Array::from(vec![rows])),
        Arc::new(UInt32Array::from(vec![dim as u32])),
        Arc::new(UInt64Array::from(vec![size])),
        Arc::new(Float64Array::from(vec![words])),
        Arc::new(UInt64Array::from(vec![kept])),
        Arc::new(Float64Array::from(vec![frob])),
        Arc::new(Float64Array::from(vec![level])),
        Arc::new(UInt64Array::from(vec![seed])),
        Arc::new(StringArray::from(vec![HASH_VERSION])),
    ];
    let stats = RecordBatch::try_new(stats_schema(), columns)?;
    let mut sketch = OutputTable::new("sketch", sketch);
    sketch.metadata = metadata;
    Ok(vec![sketch, OutputTable::new("stats", stats)])
}
