//! Sparse rows: a `List<Struct<index, value>>` column of a declared width, each entry
//! checked and each row's entries sorted by index, read into reused buffers.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Schema};

use crate::{Error, Result};

/// Sparse rows of one batch: row `i` has `indices[offsets[i]..offsets[i + 1]]` and the same
/// range of `values`, indices strictly increasing.
#[derive(Debug, Clone, Copy)]
pub struct SparseRows<'a> {
    pub offsets: &'a [usize],
    pub indices: &'a [u32],
    pub values: &'a [f64],
}

impl SparseRows<'_> {
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Row `i` as `(indices, values)`.
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let r = self.offsets[i]..self.offsets[i + 1];
        (&self.indices[r.clone()], &self.values[r])
    }
}

/// Reads a sparse column, `List<Struct<index: integer, value: float>>`, whose rows have a
/// declared width `dim`: every entry checked (no nulls, `0 ≤ index < dim`, finite values, no
/// index twice in a row), each row's entries sorted by index. Errors name the column and row.
#[derive(Debug)]
pub struct SparseRowReader {
    index: usize,
    name: String,
    dim: usize,
    rows_seen: u64,
    offsets: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f64>,
    order: Vec<usize>,
}

/// Whether `t` is a sparse-row column type.
pub fn is_sparse_list(t: &DataType) -> bool {
    let DataType::List(item) = t else {
        return false;
    };
    let DataType::Struct(fields) = item.data_type() else {
        return false;
    };
    let field = |n: &str| fields.iter().find(|f| f.name() == n).map(|f| f.data_type());
    matches!(field("index"), Some(t) if t.is_integer())
        && matches!(field("value"), Some(t) if t.is_numeric())
}

impl SparseRowReader {
    pub fn new(schema: &Schema, column: &str, dim: usize) -> Result<Self> {
        let index = schema
            .index_of(column)
            .map_err(|_| Error::Config(format!("unknown column `{column}`")))?;
        let t = schema.field(index).data_type();
        if !is_sparse_list(t) {
            return Err(Error::Config(format!(
                "column `{column}` is {t}; a sparse column is List<Struct<index: integer, value: float>>"
            )));
        }
        if dim == 0 {
            return Err(Error::Config("key `dim`: must be at least 1".into()));
        }
        Ok(SparseRowReader {
            index,
            name: column.to_string(),
            dim,
            rows_seen: 0,
            offsets: Vec::new(),
            indices: Vec::new(),
            values: Vec::new(),
            order: Vec::new(),
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn rows_seen(&self) -> u64 {
        self.rows_seen
    }

    pub fn restart(&mut self) {
        self.rows_seen = 0;
    }

    /// Converts one batch; the returned view is valid until the next call.
    pub fn read(&mut self, batch: &RecordBatch) -> Result<SparseRows<'_>> {
        let list = batch.column(self.index).as_list::<i32>();
        let entries = list.values().as_struct();
        let idx = cast(
            entries.column_by_name("index").expect("checked"),
            &DataType::Int64,
        )?;
        let val = cast(
            entries.column_by_name("value").expect("checked"),
            &DataType::Float64,
        )?;
        let (idx, val) = (
            idx.as_primitive::<datafusion::arrow::datatypes::Int64Type>(),
            val.as_primitive::<Float64Type>(),
        );
        let first = self.rows_seen;
        let fail = |i: usize, what: String| {
            Error::Input(format!(
                "column `{}`, row {}: {what}",
                self.name,
                first + i as u64
            ))
        };
        self.offsets.clear();
        self.indices.clear();
        self.values.clear();
        self.offsets.push(0);
        let offsets = list.value_offsets();
        for i in 0..list.len() {
            if list.is_null(i) {
                return Err(fail(i, "the list is null".into()));
            }
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let mark = self.indices.len();
            for k in start..end {
                if entries.is_null(k) || idx.is_null(k) || val.is_null(k) {
                    return Err(fail(i, format!("entry {} is null", k - start)));
                }
                let (j, v) = (idx.value(k), val.value(k));
                if j < 0 || j as u64 >= self.dim as u64 {
                    return Err(fail(
                        i,
                        format!("index {j} is outside [0, {}) (dim)", self.dim),
                    ));
                }
                if !v.is_finite() {
                    return Err(fail(i, format!("value {v} at index {j}")));
                }
                self.indices.push(j as u32);
                self.values.push(v);
            }
            let row = mark..self.indices.len();
            if self.indices[row.clone()].windows(2).any(|w| w[0] >= w[1]) {
                // Sort the row's entries by index, then refuse repeats.
                self.order.clear();
                self.order.extend(row.clone());
                self.order.sort_by_key(|&k| self.indices[k]);
                let sorted: Vec<(u32, f64)> = self
                    .order
                    .iter()
                    .map(|&k| (self.indices[k], self.values[k]))
                    .collect();
                for (k, (j, v)) in row.clone().zip(sorted) {
                    self.indices[k] = j;
                    self.values[k] = v;
                }
                if let Some(w) = self.indices[row].windows(2).find(|w| w[0] == w[1]) {
                    return Err(fail(i, format!("index {} appears twice", w[0])));
                }
            }
            self.offsets.push(self.indices.len());
        }
        self.rows_seen += list.len() as u64;
        Ok(SparseRows {
            offsets: &self.offsets,
            indices: &self.indices,
            values: &self.values,
        })
    }
}
