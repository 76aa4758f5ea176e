//! The `sketch` table: a sketch written so that it can be rebuilt exactly, on another day or
//! machine, by `sketch_product` / `sketch_merge`.
//!
//! Columns (format 1):
//! * sampling methods (`priority`, `threshold`, `exact`) — one row per kept row: `key` (the
//!   input's key as `Int64`, `UInt64` or `Utf8`), `u Float64` (= `u(key)`), `weight Float64`
//!   (`‖a‖²`), `indices List<UInt32>` and `values List<Float64>` (the row's non-zeros); `row`
//!   is null;
//! * linear methods (`jl`, `countsketch`) — one row per sketch row `r = 0 … t−1`: `row UInt32`
//!   and `values List<Float64>` (all `d` values); the other columns are null.
//!
//! Header, in the file's Parquet key-value metadata under `sketchpipe.sketch.`: `format`
//! (`1`), `method`, `seed`, `hash` ([`crate::hash::HASH_VERSION`]), `key_type` (`int`, `uint`,
//! `string`), `size` (`k` or `t`), `level` (`τ` for priority, `λ` for threshold, `inf` for
//! exact; Rust's shortest round-trip decimal), `dim`, `columns` (a TOML array of the value
//! column names), `frobenius_sq`, `rows_seen`; for sampling methods also `weights` (`norm` or
//! `uniform`; a sketch without it was weighted by `norm`) and `zero_weight_rows` (rows of
//! weight 0, never kept; absent from sketches made before it was recorded).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    UInt32Array, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, UInt32Type, UInt64Type,
};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::hash::HASH_VERSION;
use crate::rows::is_string;
use crate::sketch::linear::LinearSketch;
use crate::sketch::stored::{Header, KeyType, StoredSketch};
use crate::sketch::{KeyValue, Method, Sample, SampledRow, SparseRow, Weights};
use crate::{Error, Result};

/// The format version written in every header.
pub const FORMAT: &str = "1";
const PREFIX: &str = "sketchpipe.sketch.";

/// The key type of an input column type, if it can be a key.
pub fn key_type_of(t: &DataType) -> Option<KeyType> {
    if t.is_signed_integer() {
        Some(KeyType::Int)
    } else if t.is_unsigned_integer() {
        Some(KeyType::UInt)
    } else if is_string(t) {
        Some(KeyType::Str)
    } else {
        None
    }
}

/// The Arrow type keys of `key` are stored as.
fn key_data_type(key: KeyType) -> DataType {
    match key {
        KeyType::Int => DataType::Int64,
        KeyType::UInt => DataType::UInt64,
        KeyType::Str => DataType::Utf8,
    }
}

/// The `sketch` table's schema for keys of `key`.
pub fn sketch_schema(key: KeyType) -> SchemaRef {
    let item = |t: DataType| DataType::List(Arc::new(Field::new("item", t, false)));
    Arc::new(Schema::new(vec![
        Field::new("key", key_data_type(key), true),
        Field::new("u", DataType::Float64, true),
        Field::new("weight", DataType::Float64, true),
        Field::new("row", DataType::UInt32, true),
        Field::new("indices", item(DataType::UInt32), true),
        Field::new("values", item(DataType::Float64), false),
    ]))
}

fn list(lengths: Vec<usize>, values: ArrayRef) -> ArrayRef {
    let item = Arc::new(Field::new("item", values.data_type().clone(), false));
    Arc::new(ListArray::new(
        item,
        OffsetBuffer::from_lengths(lengths),
        values,
        None,
    ))
}

/// The `sketch` batch and its header metadata.
pub fn write(s: &StoredSketch, h: &Header) -> Result<(RecordBatch, Vec<(String, String)>)> {
    let schema = sketch_schema(h.key_type);
    let (columns, size, level, frob, rows_seen): (Vec<ArrayRef>, usize, f64, f64, u64) = match s {
        StoredSketch::Sample(s) => {
            let n = s.rows.len();
            let key: ArrayRef = match h.key_type {
                KeyType::Int => {
                    Arc::new(Int64Array::from_iter(s.rows.iter().map(|r| match r.key {
                        KeyValue::Int(v) => Some(v),
                        _ => None,
                    })))
                }
                KeyType::UInt => {
                    Arc::new(UInt64Array::from_iter(s.rows.iter().map(|r| match r.key {
                        KeyValue::UInt(v) => Some(v),
                        _ => None,
                    })))
                }
                KeyType::Str => Arc::new(StringArray::from_iter(s.rows.iter().map(
                    |r| match &r.key {
                        KeyValue::Str(v) => Some(v.as_str()),
                        _ => None,
                    },
                ))),
            };
            let lengths: Vec<usize> = s.rows.iter().map(|r| r.row.values.len()).collect();
            let indices: Vec<u32> = s
                .rows
                .iter()
                .flat_map(|r| r.row.indices.iter().copied())
                .collect();
            let values: Vec<f64> = s
                .rows
                .iter()
                .flat_map(|r| r.row.values.iter().copied())
                .collect();
            (
                vec![
                    key,
                    Arc::new(Float64Array::from_iter_values(s.rows.iter().map(|r| r.u))),
                    Arc::new(Float64Array::from_iter_values(
                        s.rows.iter().map(|r| r.weight),
                    )),
                    Arc::new(UInt32Array::new_null(n)),
                    list(lengths.clone(), Arc::new(UInt32Array::from(indices))),
                    list(lengths, Arc::new(Float64Array::from(values))),
                ],
                s.size,
                s.level,
                s.frobenius_sq,
                s.rows_seen,
            )
        }
        StoredSketch::Linear(s) => {
            let t = s.t;
            (
                vec![
                    datafusion::arrow::array::new_null_array(&key_data_type(h.key_type), t),
                    Arc::new(Float64Array::new_null(t)),
                    Arc::new(Float64Array::new_null(t)),
                    Arc::new(UInt32Array::from_iter_values(0..t as u32)),
                    datafusion::arrow::array::new_null_array(schema.field(4).data_type(), t),
                    list(vec![s.dim; t], Arc::new(Float64Array::from(s.s.clone()))),
                ],
                t,
                f64::INFINITY,
                s.frobenius_sq,
                s.rows_seen,
            )
        }
    };
    let batch = RecordBatch::try_new(schema, columns)?;
    let columns_toml = toml::Value::Array(
        h.columns
            .iter()
            .map(|c| toml::Value::String(c.clone()))
            .collect(),
    )
    .to_string();
    let mut sampling = Vec::new();
    if let StoredSketch::Sample(s) = s {
        sampling.push(("weights", s.weights.as_str().to_string()));
        if let Some(z) = s.zero_weight_rows {
            sampling.push(("zero_weight_rows", z.to_string()));
        }
    }
    let meta = [
        ("format", FORMAT.to_string()),
        ("method", s.method().as_str().to_string()),
        ("seed", s.seed().to_string()),
        ("hash", HASH_VERSION.to_string()),
        ("key_type", h.key_type.as_str().to_string()),
        ("size", size.to_string()),
        ("level", level.to_string()),
        ("dim", s.dim().to_string()),
        ("columns", columns_toml),
        ("frobenius_sq", frob.to_string()),
        ("rows_seen", rows_seen.to_string()),
    ]
    .into_iter()
    .chain(sampling)
    .map(|(k, v)| (format!("{PREFIX}{k}"), v))
    .collect();
    Ok((batch, meta))
}

/// Reads a `sketch.parquet` written by [`write()`] (directly or by an earlier run), checking its
/// header; errors name the file.
pub fn read(path: &Path) -> Result<(StoredSketch, Header)> {
    let what = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(format!("cannot open sketch {what}"), e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let kv: Vec<(String, String)> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build()?.collect::<std::result::Result<_, _>>()?;
    decode(&kv, &concat_batches(&schema, &batches)?, &what)
}

/// A sketch as one value (the `priority_sketch` SQL aggregate's result and state): the
/// `sketch` table of [`write()`] as an Arrow IPC stream, its header in the schema metadata —
/// the same format as the file, in memory.
pub fn to_bytes(s: &StoredSketch, h: &Header) -> Result<Vec<u8>> {
    let (batch, kv) = write(s, h)?;
    let schema =
        Schema::new_with_metadata(batch.schema().fields().clone(), kv.into_iter().collect());
    let batch = batch.with_schema(Arc::new(schema))?;
    let mut out = Vec::new();
    let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())?;
    w.write(&batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// The sketch [`to_bytes`] made; `what` names it in errors.
pub fn from_bytes(bytes: &[u8], what: &str) -> Result<(StoredSketch, Header)> {
    let not_one = |e: &dyn std::fmt::Display| {
        Error::Input(format!("{what} is not a sketchpipe sketch value ({e})"))
    };
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(bytes, None)
        .map_err(|e| not_one(&e))?;
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| not_one(&e))?;
    let kv: Vec<(String, String)> = schema
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    decode(&kv, &concat_batches(&schema, &batches)?, what)
}

/// The sketch of a `sketch` table `b` of [`write()`] and its key-value metadata `kv` (others
/// ignored), e.g. a stage's table held in memory; `what` names it in errors.
pub fn from_table(
    kv: &[(String, String)],
    b: &RecordBatch,
    what: &str,
) -> Result<(StoredSketch, Header)> {
    decode(kv, b, what)
}

/// A sketch from its table `b` and header key-values `kv` (others ignored).
fn decode(kv: &[(String, String)], b: &RecordBatch, what: &str) -> Result<(StoredSketch, Header)> {
    let kv: Vec<(&str, &str)> = kv
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|k| (k, v.as_str())))
        .collect();
    let what = || what.to_string();
    let get = |k: &str| -> Result<&str> {
        kv.iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                Error::Input(format!(
                    "{} is not a sketchpipe sketch (no `{PREFIX}{k}` in its metadata)",
                    what()
                ))
            })
    };
    let bad = |k: &str, v: &str| Error::Input(format!("{}: bad sketch header {k} = {v:?}", what()));
    let format = get("format")?;
    if format != FORMAT {
        return Err(Error::Input(format!(
            "{}: sketch format {format} is not one this version reads (it reads {FORMAT})",
            what()
        )));
    }
    let hash = get("hash")?;
    if hash != HASH_VERSION {
        return Err(Error::Input(format!(
            "{}: made with hash `{hash}`, this version uses `{HASH_VERSION}`",
            what()
        )));
    }
    let parse_u64 = |k: &str| -> Result<u64> {
        let v = get(k)?;
        v.parse().map_err(|_| bad(k, v))
    };
    let parse_f64 = |k: &str| -> Result<f64> {
        let v = get(k)?;
        v.parse().map_err(|_| bad(k, v))
    };
    let method =
        Method::parse(get("method")?).ok_or_else(|| bad("method", get("method").unwrap_or("")))?;
    let key_type = KeyType::parse(get("key_type")?)
        .ok_or_else(|| bad("key_type", get("key_type").unwrap_or("")))?;
    let columns: Vec<String> = toml::from_str::<toml::Table>(&format!("c = {}", get("columns")?))
        .ok()
        .and_then(|t| t.get("c").cloned())
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| bad("columns", get("columns").unwrap_or("")))?;
    let (seed, size, dim) = (
        parse_u64("seed")?,
        parse_u64("size")? as usize,
        parse_u64("dim")? as usize,
    );
    let (level, frob, rows_seen) = (
        parse_f64("level")?,
        parse_f64("frobenius_sq")?,
        parse_u64("rows_seen")?,
    );
    let col = |name: &str| {
        b.column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::Input(format!("{}: the sketch has no `{name}` column", what())))
    };
    let values = col("values")?;
    let values = values.as_list::<i32>();
    let row_values = |i: usize| -> Vec<f64> {
        values
            .value(i)
            .as_primitive::<Float64Type>()
            .values()
            .to_vec()
    };
    let header = Header { key_type, columns };
    if method.is_sampling() {
        let (key, u, weight, indices) = (col("key")?, col("u")?, col("weight")?, col("indices")?);
        let (u, weight, indices) = (
            u.as_primitive::<Float64Type>(),
            weight.as_primitive::<Float64Type>(),
            indices.as_list::<i32>(),
        );
        let mut rows = Vec::with_capacity(b.num_rows());
        for i in 0..b.num_rows() {
            let key = match key_type {
                KeyType::Int => KeyValue::Int(key.as_primitive::<Int64Type>().value(i)),
                KeyType::UInt => KeyValue::UInt(key.as_primitive::<UInt64Type>().value(i)),
                KeyType::Str => KeyValue::Str(key.as_string::<i32>().value(i).to_string()),
            };
            rows.push(SampledRow {
                key,
                u: u.value(i),
                weight: weight.value(i),
                row: SparseRow {
                    indices: indices
                        .value(i)
                        .as_primitive::<UInt32Type>()
                        .values()
                        .to_vec(),
                    values: row_values(i),
                },
            });
        }
        let find = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let weights = match find("weights") {
            None => Weights::Norm,
            Some(w) => Weights::parse(w).ok_or_else(|| bad("weights", w))?,
        };
        let zero_weight_rows = match find("zero_weight_rows") {
            None => None,
            Some(z) => Some(z.parse().map_err(|_| bad("zero_weight_rows", z))?),
        };
        let sample = Sample {
            weights,
            zero_weight_rows,
            method,
            seed,
            dim,
            level,
            size,
            rows,
            frobenius_sq: frob,
            rows_seen,
        };
        Ok((StoredSketch::Sample(sample), header))
    } else {
        let s: Vec<f64> = (0..b.num_rows()).flat_map(row_values).collect();
        let linear = LinearSketch::from_parts(method, seed, size, dim, s, frob, rows_seen)?;
        Ok((StoredSketch::Linear(linear), header))
    }
}
