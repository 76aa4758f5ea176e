//! A column of number lists read in place: the child buffer as `&[f32]` or `&[f64]`, where
//! each row's values are in it, and which rows and values are null — for every list layout
//! (`List`, `LargeList`, `FixedSizeList`). The operators' [`super::DenseRowReader`] and the SQL
//! functions read list columns through this one view.

use std::ops::Range;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};

/// A list column's values, as stored.
#[derive(Debug, Clone, Copy)]
pub enum Floats<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

#[derive(Debug, Clone, Copy)]
enum Offsets<'a> {
    Small(&'a [i32]),
    Large(&'a [i64]),
    /// Row `i` is `(first + i) * size ..` of the child buffer.
    Fixed {
        first: usize,
        size: usize,
    },
}

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct ListView<'a> {
    values: Floats<'a>,
    offsets: Offsets<'a>,
    len: usize,
    /// Only when some row is null.
    row_nulls: Option<&'a NullBuffer>,
    /// Only when some value is null.
    value_nulls: Option<&'a NullBuffer>,
}

impl<'a> ListView<'a> {
    /// The view of `array`, or `None` when it is not a list of `Float32` / `Float64`.
    pub fn of(array: &'a dyn Array) -> Option<Self> {
        let (offsets, values) = match array.data_type() {
            DataType::List(_) => {
                let l = array.as_list::<i32>();
                (Offsets::Small(l.value_offsets()), l.values())
            }
            DataType::LargeList(_) => {
                let l = array.as_list::<i64>();
                (Offsets::Large(l.value_offsets()), l.values())
            }
            DataType::FixedSizeList(_, size) => {
                let l = array.as_fixed_size_list();
                let (first, size) = (l.offset(), *size as usize);
                (Offsets::Fixed { first, size }, l.values())
            }
            _ => return None,
        };
        let floats = match values.data_type() {
            DataType::Float32 => Floats::F32(values.as_primitive::<Float32Type>().values()),
            DataType::Float64 => Floats::F64(values.as_primitive::<Float64Type>().values()),
            _ => return None,
        };
        let some_null = |nb: Option<&'a NullBuffer>| nb.filter(|nb| nb.null_count() > 0);
        Some(ListView {
            values: floats,
            offsets,
            len: array.len(),
            row_nulls: some_null(array.nulls()),
            value_nulls: some_null(values.nulls()),
        })
    }

    /// The whole child buffer (rows index into it with [`ListView::range`]).
    pub fn values(&self) -> Floats<'a> {
        self.values
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether row `row` is null.
    pub fn is_null(&self, row: usize) -> bool {
        self.row_nulls.is_some_and(|nb| nb.is_null(row))
    }

    /// Where row `row`'s values are in the child buffer.
    pub fn range(&self, row: usize) -> Range<usize> {
        match self.offsets {
            Offsets::Small(o) => o[row] as usize..o[row + 1] as usize,
            Offsets::Large(o) => o[row] as usize..o[row + 1] as usize,
            Offsets::Fixed { first, size } => (first + row) * size..(first + row + 1) * size,
        }
    }

    /// The position in the row of its first null value, if it has one.
    pub fn null_value(&self, row: usize) -> Option<usize> {
        let nulls = self.value_nulls?;
        let r = self.range(row);
        let start = r.start;
        r.into_iter().find(|&k| nulls.is_null(k)).map(|k| k - start)
    }

    /// Row `row`'s values as `f64` into `out` (meaningful where [`ListView::null_value`] is
    /// `None`).
    pub fn row_into(&self, row: usize, out: &mut Vec<f64>) {
        out.clear();
        let range = self.range(row);
        match self.values {
            Floats::F32(v) => out.extend(v[range].iter().map(|x| *x as f64)),
            Floats::F64(v) => out.extend_from_slice(&v[range]),
        }
    }

    /// Whether value `k` of the child buffer (an index from [`ListView::range`]) is present.
    pub fn is_valid_value(&self, k: usize) -> bool {
        self.value_nulls.is_none_or(|nb| nb.is_valid(k))
    }

    /// Whether no row and no value is null.
    pub fn no_nulls(&self) -> bool {
        self.row_nulls.is_none() && self.value_nulls.is_none()
    }

    /// Every row's values as one row-major slice of the child buffer, with their width — when
    /// no row or value is null and every row has the one width (`width`, or the first row's
    /// when `None`; never 0). `None` otherwise: read row by row then.
    pub fn uniform(&self, width: Option<usize>) -> Option<(Floats<'a>, usize)> {
        let n = self.len;
        if n == 0 || !self.no_nulls() {
            return None;
        }
        let first = self.range(0);
        let d = width.unwrap_or(first.len());
        // List rows are contiguous (row i ends where row i + 1 starts), so equal widths
        // everywhere is the same as every row ending where the width says it should.
        if d == 0 || (1..=n).any(|i| self.range(i - 1).end != first.start + i * d) {
            return None;
        }
        let all = first.start..first.start + n * d;
        Some((
            match self.values {
                Floats::F32(v) => Floats::F32(&v[all]),
                Floats::F64(v) => Floats::F64(&v[all]),
            },
            d,
        ))
    }
}
