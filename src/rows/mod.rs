//! The bridge from Arrow: a record batch plus a column spec → contiguous dense rows.
//!
//! Every operator reads its numbers through [`DenseRowReader`], so input validation lives here
//! once: column types are checked against the schema before any data is read, and nulls,
//! NaN/∞ and ragged list lengths are caught per row with the row number and column — either as
//! an error or, with [`OnInvalid::Skip`], dropped and counted.
//!
//! Two layouts are accepted:
//! * one `List`, `LargeList` or `FixedSizeList` column of `Float32`/`Float64` (an embedding);
//! * one or more numeric columns (integers or floats), one value per row each.
//!
//! Values are read straight from the Arrow buffers (`&[f32]`/`&[f64]` slices) into one reused
//! row-major `Vec<f64>`; nothing is allocated per row. A valid `Float64` list batch is not
//! copied at all: its child buffer is already the row-major view.

mod lists;
mod sparse;

pub use lists::{Floats, ListView};
pub use sparse::{is_sparse_list, SparseRowReader, SparseRows};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Schema};

use crate::{Error, Result};

/// What to do with a row that has a null, a NaN/∞ or the wrong length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInvalid {
    /// Stop with an error naming the column and the row (the default: no silent data loss).
    #[default]
    Error,
    /// Drop the row and count it; the count is reported in the stage's `stats` table.
    Skip,
}

impl OnInvalid {
    /// Parses the pipeline-file spelling (`"error"` or `"skip"`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "error" => Some(OnInvalid::Error),
            "skip" => Some(OnInvalid::Skip),
            _ => None,
        }
    }

    /// The pipeline-file spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            OnInvalid::Error => "error",
            OnInvalid::Skip => "skip",
        }
    }
}

/// A view of the valid rows of one batch: `rows × dim` values, row-major.
#[derive(Debug, Clone, Copy)]
pub struct DenseRows<'a> {
    pub values: &'a [f64],
    pub dim: usize,
    pub rows: usize,
}

/// Where a batch's valid rows ended up.
enum Rows<'a> {
    /// This many rows, copied into the reader's buffer.
    Copied(usize),
    /// Every row of the batch, borrowed from its Arrow buffer.
    Borrowed(&'a [f64]),
}

/// Turns record batches into dense rows, validating as it goes.
#[derive(Debug)]
pub struct DenseRowReader {
    layout: Layout,
    dim: Option<usize>,
    on_invalid: OnInvalid,
    rows_seen: u64,
    skipped: u64,
    buf: Vec<f64>,
}

#[derive(Debug)]
enum Layout {
    List { index: usize, name: String },
    Columns { columns: Vec<(usize, String)> },
}

impl DenseRowReader {
    /// Resolves `columns` against `schema` and checks their types, before any data is read.
    pub fn new(schema: &Schema, columns: &[String], on_invalid: OnInvalid) -> Result<Self> {
        if columns.is_empty() {
            return Err(Error::Config(
                "no columns given: name one list column or one or more numeric columns".into(),
            ));
        }
        let mut resolved = Vec::with_capacity(columns.len());
        for name in columns {
            let index = schema.index_of(name).map_err(|_| {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                Error::Config(format!(
                    "unknown column `{name}` (the input has: {})",
                    have.join(", ")
                ))
            })?;
            resolved.push((index, name.clone(), schema.field(index).data_type().clone()));
        }
        let list_columns: Vec<&(usize, String, DataType)> =
            resolved.iter().filter(|(_, _, t)| is_list(t)).collect();
        if let Some((index, name, dtype)) = list_columns.first() {
            if resolved.len() > 1 {
                return Err(Error::Config(format!(
                    "list column `{name}` cannot be combined with other columns: give either one \
                     list column or several numeric columns"
                )));
            }
            let (element, fixed) = match dtype {
                DataType::List(f) | DataType::LargeList(f) => (f.data_type(), None),
                DataType::FixedSizeList(f, n) => (f.data_type(), Some(*n as usize)),
                _ => unreachable!("is_list checked"),
            };
            if !matches!(element, DataType::Float32 | DataType::Float64) {
                return Err(Error::Config(format!(
                    "column `{name}` has type {dtype}; a list column must hold Float32 or \
                     Float64 values (cast it in a `sql` source, e.g. CAST(x AS DOUBLE[]))"
                )));
            }
            if fixed == Some(0) {
                return Err(Error::Config(format!(
                    "column `{name}` is a list of size 0"
                )));
            }
            return Ok(DenseRowReader {
                layout: Layout::List {
                    index: *index,
                    name: name.clone(),
                },
                dim: fixed,
                on_invalid,
                rows_seen: 0,
                skipped: 0,
                buf: Vec::new(),
            });
        }
        for (_, name, dtype) in &resolved {
            if !is_plain_number(dtype) {
                return Err(Error::Config(format!(
                    "column `{name}` has type {dtype}; expected numbers (integer or float \
                     columns, or one list of Float32/Float64)"
                )));
            }
        }
        Ok(DenseRowReader {
            dim: Some(resolved.len()),
            layout: Layout::Columns {
                columns: resolved.into_iter().map(|(i, n, _)| (i, n)).collect(),
            },
            on_invalid,
            rows_seen: 0,
            skipped: 0,
            buf: Vec::new(),
        })
    }

    /// The row dimension, once known (fixed-size lists and numeric columns know it up front;
    /// variable lists learn it from the first valid row).
    pub fn dim(&self) -> Option<usize> {
        self.dim
    }

    /// Rows read so far, valid or not.
    pub fn rows_seen(&self) -> u64 {
        self.rows_seen
    }

    /// Rows dropped under [`OnInvalid::Skip`].
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The error of a pass that found no valid row: no rows at all, or every one skipped.
    pub fn no_rows_error(&self) -> Error {
        Error::Input(match self.rows_seen {
            0 => "the input has no rows".to_string(),
            n => format!("all {n} input rows were invalid and skipped; nothing to compute"),
        })
    }

    /// Starts counting afresh for another pass over the same input.
    pub fn restart(&mut self) {
        self.rows_seen = 0;
        self.skipped = 0;
    }

    /// Converts one batch; the returned view is valid until the next call.
    ///
    /// A `Float64` list column whose rows are all present, finite and of the one width is
    /// already row-major in its Arrow buffer: the view then borrows that buffer instead of
    /// copying it (every other case is copied into the reused buffer, row by row, with the
    /// checks that name the bad row).
    pub fn read<'a>(&'a mut self, batch: &'a RecordBatch) -> Result<DenseRows<'a>> {
        let view = self.convert(batch)?;
        let dim = self.dim.unwrap_or(0);
        Ok(match view {
            Rows::Copied(rows) => DenseRows {
                values: &self.buf,
                dim,
                rows,
            },
            Rows::Borrowed(values) => DenseRows {
                values,
                dim,
                rows: batch.num_rows(),
            },
        })
    }

    /// As [`Self::read`], but the rows always in the reader's own buffer, handed out mutably:
    /// for a caller that transforms them in place (centring them, say) instead of copying
    /// them once more. Returns `(values, dim, rows)`.
    pub fn read_mut(&mut self, batch: &RecordBatch) -> Result<(&mut [f64], usize, usize)> {
        let rows = match self.convert(batch)? {
            Rows::Copied(rows) => rows,
            Rows::Borrowed(values) => {
                self.buf.extend_from_slice(values);
                batch.num_rows()
            }
        };
        let dim = self.dim.unwrap_or(0);
        Ok((&mut self.buf, dim, rows))
    }

    /// Validates and converts one batch: copied into `buf`, or borrowed from the batch.
    fn convert<'a>(&mut self, batch: &'a RecordBatch) -> Result<Rows<'a>> {
        self.buf.clear();
        let n = batch.num_rows();
        let view = match &self.layout {
            Layout::List { index, name } => {
                let name = name.clone();
                self.read_list(batch.column(*index), &name)?
            }
            Layout::Columns { columns } => {
                let arrays = columns
                    .iter()
                    .map(|(i, name)| {
                        cast(batch.column(*i), &DataType::Float64)
                            .map(|a| (a, name.clone()))
                            .map_err(Error::from)
                    })
                    .collect::<Result<Vec<(ArrayRef, String)>>>()?;
                Rows::Copied(if n > 0 {
                    self.read_columns(&arrays, n)?
                } else {
                    0
                })
            }
        };
        self.rows_seen += n as u64;
        Ok(view)
    }

    fn read_list<'a>(&mut self, array: &'a ArrayRef, name: &str) -> Result<Rows<'a>> {
        let Some(view) = ListView::of(array.as_ref()) else {
            return Err(Error::Input(format!(
                "column `{name}` changed type mid-stream to {}; expected a list of Float32 or \
                 Float64",
                array.data_type()
            )));
        };
        match view.values() {
            Floats::F32(values) => self.fill_rows(name, &view, values).map(Rows::Copied),
            Floats::F64(values) => {
                if let Some(rows) = self.borrow_rows(&view) {
                    return Ok(Rows::Borrowed(rows));
                }
                self.fill_rows(name, &view, values).map(Rows::Copied)
            }
        }
    }

    /// The batch's rows as one slice of the child buffer, when every row is valid: none null,
    /// all of the one width (learning it from the first row if need be), every value finite.
    /// `None` sends the batch down the copying path, which names the first bad row.
    fn borrow_rows<'a>(&mut self, view: &ListView<'a>) -> Option<&'a [f64]> {
        let (Floats::F64(rows), d) = view.uniform(self.dim)? else {
            return None;
        };
        let finite = rows
            .chunks(4096)
            .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()));
        if !finite {
            return None;
        }
        self.dim = Some(d);
        Some(rows)
    }

    /// The one loop every list layout goes through: copy each valid row's slice of the child
    /// buffer into `buf`, converting to `f64` on the way.
    fn fill_rows<T: Copy + Into<f64>>(
        &mut self,
        name: &str,
        view: &ListView<'_>,
        values: &[T],
    ) -> Result<usize> {
        let n = view.len();
        self.buf.reserve(n * self.dim.unwrap_or(0));
        let mut valid = 0;
        for i in 0..n {
            if view.is_null(i) {
                self.invalid(name, i, "the list is null".into())?;
                continue;
            }
            let range = view.range(i);
            let len = range.len();
            match self.dim {
                None if len == 0 => {
                    self.invalid(name, i, "the list is empty".into())?;
                    continue;
                }
                None => self.dim = Some(len),
                Some(d) if d != len => {
                    self.invalid(
                        name,
                        i,
                        format!(
                            "ragged list: it has {len} values but earlier rows have {d} \
                             (every row must have the same length)"
                        ),
                    )?;
                    continue;
                }
                Some(_) => {}
            }
            if let Some(k) = view.null_value(i) {
                self.invalid(name, i, format!("null value at position {k}"))?;
                continue;
            }
            let mark = self.buf.len();
            self.buf
                .extend(values[range].iter().map(|&x| Into::<f64>::into(x)));
            if let Some(k) = self.buf[mark..].iter().position(|v| !v.is_finite()) {
                let bad = self.buf[mark + k];
                self.buf.truncate(mark);
                self.invalid(name, i, format!("{bad} at position {k}"))?;
                continue;
            }
            valid += 1;
        }
        Ok(valid)
    }

    fn read_columns(&mut self, arrays: &[(ArrayRef, String)], n: usize) -> Result<usize> {
        let d = arrays.len();
        let slices: Vec<(&[f64], Option<&NullBuffer>, &str)> = arrays
            .iter()
            .map(|(a, name)| {
                let p = a.as_primitive::<Float64Type>();
                (
                    p.values().as_ref(),
                    p.nulls().filter(|nb| nb.null_count() > 0),
                    name.as_str(),
                )
            })
            .collect();
        let mut buf = std::mem::take(&mut self.buf);
        buf.reserve(n * d);
        let mut valid = 0;
        let mut failure = Ok(());
        'rows: for i in 0..n {
            for (values, nulls, name) in &slices {
                let problem = if nulls.is_some_and(|nb| nb.is_null(i)) {
                    Some("null value".to_string())
                } else if !values[i].is_finite() {
                    Some(format!("value {}", values[i]))
                } else {
                    None
                };
                if let Some(what) = problem {
                    if let Err(e) = self.invalid(name, i, what) {
                        failure = Err(e);
                        break 'rows;
                    }
                    continue 'rows;
                }
            }
            buf.extend(slices.iter().map(|(values, _, _)| values[i]));
            valid += 1;
        }
        self.buf = buf;
        failure.map(|_| valid)
    }

    /// Reports an invalid row: an error under [`OnInvalid::Error`], a count under `Skip`.
    fn invalid(&mut self, column: &str, row_in_batch: usize, what: String) -> Result<()> {
        match self.on_invalid {
            OnInvalid::Skip => {
                self.skipped += 1;
                Ok(())
            }
            OnInvalid::Error => Err(Error::Input(format!(
                "column `{column}`, row {} (0-based, in scan order): {what}. Fix the input, or \
                 set on_invalid = \"skip\" to drop such rows and count them in the stats table",
                self.rows_seen + row_in_batch as u64
            ))),
        }
    }
}

/// A list (any layout) of integers or floats: an embedding, logits, a soft label.
pub fn is_number_list(t: &DataType) -> bool {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            is_plain_number(f.data_type())
        }
        _ => false,
    }
}

/// A string column (any layout): ids and keys may be strings.
pub fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Any list layout.
pub fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
    )
}

fn is_plain_number(t: &DataType) -> bool {
    t.is_integer() || t.is_floating()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        FixedSizeListArray, Float32Array, Float64Array, Int32Array, ListArray, StringArray,
    };
    use datafusion::arrow::datatypes::{Field, Float32Type};
    use std::sync::Arc;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn list_f32(rows: Vec<Option<Vec<Option<f32>>>>) -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(rows))
    }

    fn read_all(
        columns: &[&str],
        b: &RecordBatch,
        mode: OnInvalid,
    ) -> Result<(Vec<f64>, usize, u64)> {
        let cols: Vec<String> = columns.iter().map(|s| s.to_string()).collect();
        let mut r = DenseRowReader::new(&b.schema(), &cols, mode)?;
        let rows = r.read(b)?;
        let (values, dim) = (rows.values.to_vec(), rows.dim);
        Ok((values, dim, r.skipped()))
    }

    #[test]
    fn reads_a_float32_list_column() {
        let b = batch(vec![(
            "emb",
            list_f32(vec![
                Some(vec![Some(1.0), Some(2.0)]),
                Some(vec![Some(3.0), Some(4.5)]),
            ]),
        )]);
        let (v, d, _) = read_all(&["emb"], &b, OnInvalid::Error).unwrap();
        assert_eq!((v, d), (vec![1.0, 2.0, 3.0, 4.5], 2));
    }

    #[test]
    fn reads_a_sliced_fixed_size_list() {
        let values = Float64Array::from((0..12).map(|x| x as f64).collect::<Vec<_>>());
        let field = Arc::new(Field::new("item", DataType::Float64, true));
        let fsl = FixedSizeListArray::new(field, 3, Arc::new(values), None);
        let sliced: ArrayRef = Arc::new(fsl.slice(1, 2));
        let b = batch(vec![("emb", sliced)]);
        let (v, d, _) = read_all(&["emb"], &b, OnInvalid::Error).unwrap();
        assert_eq!((v, d), (vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 3));
    }

    /// Float64 lists are borrowed from the Arrow buffer when every row is valid and copied
    /// otherwise; either way the view is the valid rows, in order — including a slice of a
    /// larger array (its first offset is not 0) and a width learned from the first row.
    #[test]
    fn float64_lists_read_the_same_borrowed_or_copied() {
        let list_f64 = |rows: Vec<Option<Vec<Option<f64>>>>| {
            ListArray::from_iter_primitive::<Float64Type, _, _>(rows)
        };
        let row = |a: f64, b: f64| Some(vec![Some(a), Some(b)]);
        let whole = list_f64(vec![
            row(9.0, 9.0),
            row(1.0, 2.0),
            row(3.0, 4.0),
            row(5.0, 6.0),
        ]);
        let sliced: ArrayRef = Arc::new(whole.slice(1, 3));
        let b = batch(vec![("e", Arc::clone(&sliced))]);
        let (v, d, skipped) = read_all(&["e"], &b, OnInvalid::Error).unwrap();
        assert_eq!((v, d, skipped), (vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 0));
        // The valid batch is a view of the Arrow buffer itself (row 1's values onwards).
        let child = sliced
            .as_list::<i32>()
            .values()
            .as_primitive::<Float64Type>()
            .clone();
        let mut r = DenseRowReader::new(&b.schema(), &["e".to_string()], OnInvalid::Error).unwrap();
        let view = r.read(&b).unwrap();
        assert_eq!(view.values.as_ptr(), child.values()[2..].as_ptr());

        type Rows = Vec<Option<Vec<Option<f64>>>>;
        // (rows, the valid rows' values, how many are skipped)
        let cases: Vec<(Rows, Vec<f64>, u64)> = vec![
            (
                vec![row(1.0, 2.0), row(f64::NAN, 0.0), row(3.0, 4.0)],
                vec![1.0, 2.0, 3.0, 4.0],
                1,
            ),
            (
                vec![row(1.0, 2.0), Some(vec![Some(7.0)]), row(3.0, 4.0)],
                vec![1.0, 2.0, 3.0, 4.0],
                1,
            ),
            (vec![None, row(1.0, 2.0)], vec![1.0, 2.0], 1),
            (
                vec![row(1.0, 2.0), Some(vec![Some(1.0), None])],
                vec![1.0, 2.0],
                1,
            ),
            (
                vec![row(1.0, 2.0), row(-0.0, 8.0)],
                vec![1.0, 2.0, -0.0, 8.0],
                0,
            ),
        ];
        for (rows, want, want_skipped) in cases {
            let b = batch(vec![("e", Arc::new(list_f64(rows)) as ArrayRef)]);
            let (v, d, skipped) = read_all(&["e"], &b, OnInvalid::Skip).unwrap();
            assert_eq!((v, d, skipped), (want, 2, want_skipped));
        }

        // Once the width is known, a batch of other-width rows is not borrowed as valid.
        let cols = vec!["e".to_string()];
        let first = batch(vec![(
            "e",
            Arc::new(list_f64(vec![row(1.0, 2.0)])) as ArrayRef,
        )]);
        let narrow = list_f64(vec![Some(vec![Some(1.0)]), Some(vec![Some(2.0)])]);
        let second = batch(vec![("e", Arc::new(narrow) as ArrayRef)]);
        let mut r = DenseRowReader::new(&first.schema(), &cols, OnInvalid::Error).unwrap();
        r.read(&first).unwrap();
        let e = r.read(&second).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("ragged"), "{e}");
    }

    #[test]
    fn reads_mixed_numeric_columns_row_major() {
        let b = batch(vec![
            ("a", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
            (
                "b",
                Arc::new(Float32Array::from(vec![0.5, 1.5])) as ArrayRef,
            ),
        ]);
        let (v, d, _) = read_all(&["a", "b"], &b, OnInvalid::Error).unwrap();
        assert_eq!((v, d), (vec![1.0, 0.5, 2.0, 1.5], 2));
    }

    #[test]
    fn rejects_bad_rows_with_column_and_row() {
        let ragged = batch(vec![(
            "emb",
            list_f32(vec![
                Some(vec![Some(1.0), Some(2.0)]),
                Some(vec![Some(3.0)]),
            ]),
        )]);
        let e = read_all(&["emb"], &ragged, OnInvalid::Error)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`emb`") && e.contains("row 1") && e.contains("ragged"),
            "{e}"
        );

        let nan = batch(vec![(
            "x",
            Arc::new(Float64Array::from(vec![1.0, f64::NAN])) as ArrayRef,
        )]);
        let e = read_all(&["x"], &nan, OnInvalid::Error)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`x`") && e.contains("row 1") && e.contains("NaN"),
            "{e}"
        );

        let null = batch(vec![("emb", list_f32(vec![None, Some(vec![Some(1.0)])]))]);
        let e = read_all(&["emb"], &null, OnInvalid::Error)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 0") && e.contains("null"), "{e}");

        let inner_null = batch(vec![("emb", list_f32(vec![Some(vec![Some(1.0), None])]))]);
        let e = read_all(&["emb"], &inner_null, OnInvalid::Error)
            .unwrap_err()
            .to_string();
        assert!(e.contains("null value at position 1"), "{e}");
    }

    #[test]
    fn skip_mode_drops_and_counts_bad_rows() {
        let b = batch(vec![(
            "emb",
            list_f32(vec![
                Some(vec![Some(1.0), Some(2.0)]),
                Some(vec![Some(f32::INFINITY), Some(0.0)]),
                None,
                Some(vec![Some(1.0)]),
                Some(vec![Some(5.0), Some(6.0)]),
            ]),
        )]);
        let (v, d, skipped) = read_all(&["emb"], &b, OnInvalid::Skip).unwrap();
        assert_eq!((v, d, skipped), (vec![1.0, 2.0, 5.0, 6.0], 2, 3));
    }

    #[test]
    fn rejects_wrong_types_and_unknown_columns_before_reading() {
        let b = batch(vec![
            ("s", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
            ("x", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef),
        ]);
        let e = DenseRowReader::new(&b.schema(), &["s".into()], OnInvalid::Error).unwrap_err();
        assert!(e.to_string().contains("`s` has type Utf8"), "{e}");
        let e = DenseRowReader::new(&b.schema(), &["nope".into()], OnInvalid::Error).unwrap_err();
        assert!(e.to_string().contains("unknown column `nope`") && e.to_string().contains("s, x"));
    }

    #[test]
    fn row_numbers_continue_across_batches() {
        let cols = vec!["x".to_string()];
        let first = batch(vec![(
            "x",
            Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef,
        )]);
        let second = batch(vec![(
            "x",
            Arc::new(Float64Array::from(vec![3.0, f64::NAN])) as ArrayRef,
        )]);
        let mut r = DenseRowReader::new(&first.schema(), &cols, OnInvalid::Error).unwrap();
        r.read(&first).unwrap();
        let e = r.read(&second).unwrap_err().to_string();
        assert!(e.contains("row 3"), "{e}");
    }
}
