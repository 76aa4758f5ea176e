//! The `pca` op's SQL functions, over the same cores as the stage ([`crate::eigen::pca`]):
//!
//! * `pca(rows, k [, algorithm [, center [, scale]]])` — aggregate: the basis, a struct
//!   `{components: List<List<Float64>> (k rows of d), eigenvalues: List<Float64>,
//!   mean: List<Float64>, scale: List<Float64> (null without scaling), rows: UInt64}`;
//! * `pca_state(rows [, algorithm [, center [, ell]]])` — aggregate: the mergeable state
//!   itself (the layout of [`crate::operators::pca::state`]), which a `run --cluster` stage
//!   finishes exactly as a local one;
//! * `pca_project(row, basis)` — scalar: `(row − mean) / scale · Vᵀ`, `k` scores in `pc` order;
//! * `subspace_alignment(a, b)` — scalar: the cosines of the principal angles between two
//!   bases' spans, descending (`min(k_a, k_b)` values; all 1 when the spans agree).
//!
//! Only the mergeable algorithms run as aggregates (`exact`, the default, and
//! `frequent-directions`): DataFusion runs aggregates partition-parallel and merges. NULL rows
//! are ignored as every SQL aggregate ignores them; no rows gives NULL.

use crate::blocks::Blocks;
use std::sync::Arc;

use datafusion::arrow::array::{make_comparator, DynComparator};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, ListArray, ListBuilder, StructArray, UInt64Array,
};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use faer::Mat;

use super::args::{
    as_bool, as_u64, call_result, call_rows, constant, df_err, sql_algorithm, state_scalars,
    FloatLists, RowsArg,
};
use crate::eigen::{dot, Pca};
use crate::operators::op::Functions;
use crate::operators::pca::state::{self, MergeablePca};
use crate::operators::top_eigenvector::DEFAULT_ELL;
use crate::operators::Algorithm;
use crate::rows::is_number_list;

/// The `pca` op's SQL functions.
pub fn functions() -> Functions {
    Functions {
        scalar: vec![
            ScalarUDF::from(Project::new()),
            ScalarUDF::from(Alignment::new()),
        ],
        aggregate: vec![
            AggregateUDF::from(PcaAggregate::new(Output::Basis)),
            AggregateUDF::from(PcaAggregate::new(Output::State)),
        ],
    }
}

fn f64_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
}

/// The fields of the basis struct `pca` returns and `pca_project` reads.
pub fn basis_fields() -> Fields {
    Fields::from(vec![
        Field::new(
            "components",
            DataType::List(Arc::new(Field::new("item", f64_list(), true))),
            false,
        ),
        Field::new("eigenvalues", f64_list(), false),
        Field::new("mean", f64_list(), false),
        Field::new("scale", f64_list(), true),
        Field::new("rows", DataType::UInt64, false),
    ])
}

/// The basis struct of one PCA, as a one-row array.
pub fn basis_array(pca: &Pca) -> DfResult<StructArray> {
    let mut components = ListBuilder::new(ListBuilder::new(Float64Builder::new()));
    for v in &pca.components {
        components.values().values().append_slice(v);
        components.values().append(true);
    }
    components.append(true);
    let list = |v: Option<&[f64]>| -> ListArray {
        let mut b = ListBuilder::new(Float64Builder::new());
        match v {
            Some(v) => {
                b.values().append_slice(v);
                b.append(true);
            }
            None => b.append(false),
        }
        b.finish()
    };
    Ok(StructArray::try_new(
        basis_fields(),
        vec![
            Arc::new(components.finish()) as ArrayRef,
            Arc::new(list(Some(&pca.eigenvalues))),
            Arc::new(list(Some(&pca.mean))),
            Arc::new(list(pca.scale.as_deref())),
            Arc::new(UInt64Array::from(vec![pca.rows])),
        ],
        None,
    )?)
}

/// A basis read back from its struct: what projecting needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Basis {
    /// `k × d`, row-major.
    pub components: Vec<f64>,
    pub k: usize,
    pub mean: Vec<f64>,
    /// `1 / σ_j` (with scaling).
    pub inv_scale: Option<Vec<f64>>,
}

impl Basis {
    /// Row `i` of a basis struct array (`None` for a null basis); `what` names the argument.
    pub fn read(array: &ArrayRef, i: usize, what: &str) -> crate::Result<Option<Basis>> {
        let bad = || {
            crate::Error::Input(format!(
                "{what} is not a PCA basis (the struct the `pca` aggregate returns: components, \
                 eigenvalues, mean, scale, rows); got {}",
                array.data_type()
            ))
        };
        let s = array.as_struct_opt().ok_or_else(bad)?;
        if s.is_null(i) {
            return Ok(None);
        }
        let field = |name: &str| s.column_by_name(name).ok_or_else(bad);
        let floats = |a: &ArrayRef, i: usize| -> crate::Result<Option<Vec<f64>>> {
            let l = a.as_list_opt::<i32>().ok_or_else(bad)?;
            if l.is_null(i) {
                return Ok(None);
            }
            let v = l.value(i);
            let v = v.as_primitive_opt::<Float64Type>().ok_or_else(bad)?;
            Ok(Some(v.values().to_vec()))
        };
        let comps = field("components")?.as_list_opt::<i32>().ok_or_else(bad)?;
        let rows = comps.value(i);
        let rows: &ListArray = rows.as_list_opt::<i32>().ok_or_else(bad)?;
        let mean = floats(field("mean")?, i)?.ok_or_else(bad)?;
        let d = mean.len();
        let mut components = Vec::with_capacity(rows.len() * d);
        for p in 0..rows.len() {
            let v = rows.value(p);
            let v = v.as_primitive_opt::<Float64Type>().ok_or_else(bad)?;
            if v.len() != d {
                return Err(crate::Error::Input(format!(
                    "{what}: component {p} has {} values and the mean {d}",
                    v.len()
                )));
            }
            components.extend_from_slice(v.values());
        }
        let inv_scale = floats(field("scale")?, i)?.map(|s| s.iter().map(|x| 1.0 / x).collect());
        Ok(Some(Basis {
            components,
            k: rows.len(),
            mean,
            inv_scale,
        }))
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The scores of `row` into `out` (`k` values); `tmp` is a reused buffer.
    pub fn project(&self, row: &[f64], tmp: &mut Vec<f64>, out: &mut Vec<f64>) {
        tmp.clear();
        match &self.inv_scale {
            Some(inv) => tmp.extend(
                row.iter()
                    .zip(&self.mean)
                    .zip(inv)
                    .map(|((x, m), s)| (x - m) * s),
            ),
            None => tmp.extend(row.iter().zip(&self.mean).map(|(x, m)| x - m)),
        }
        let d = self.dim();
        out.extend(self.components.chunks_exact(d).map(|v| dot(tmp, v)));
    }
}

/// What a PCA aggregate returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    /// `pca`: the basis.
    Basis,
    /// `pca_state`: the mergeable state.
    State,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PcaAggregate {
    output: Output,
    signature: Signature,
}

impl PcaAggregate {
    fn new(output: Output) -> Self {
        PcaAggregate {
            output,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    fn usage(&self) -> &'static str {
        match self.output {
            Output::Basis => {
                "expected (rows LIST, k INT [, algorithm 'exact' | 'frequent-directions' [, center \
                 BOOLEAN [, scale BOOLEAN]]])"
            }
            Output::State => {
                "expected (rows LIST [, algorithm 'exact' | 'frequent-directions' [, center \
                 BOOLEAN [, ell INT]]])"
            }
        }
    }

    fn output_type(&self) -> DataType {
        match self.output {
            Output::Basis => DataType::Struct(basis_fields()),
            Output::State => DataType::Struct(Fields::from(state::state_fields(""))),
        }
    }
}

impl AggregateUDFImpl for PcaAggregate {
    fn name(&self) -> &str {
        match self.output {
            Output::Basis => "pca",
            Output::State => "pca_state",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        let most = match self.output {
            Output::Basis => 5,
            Output::State => 4,
        };
        let least = if self.output == Output::Basis { 2 } else { 1 };
        if args.len() < least || args.len() > most {
            return plan_err!(
                "{}: {} arguments; {}",
                self.name(),
                args.len(),
                self.usage()
            );
        }
        if !is_number_list(&args[0]) && !args[0].is_numeric() {
            return plan_err!("{}: rows are {}; {}", self.name(), args[0], self.usage());
        }
        Ok(self.output_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(state::state_fields(&format!("{}_", args.name))
            .into_iter()
            .map(Arc::new)
            .collect())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let name = self.name();
        let (k, at) = match self.output {
            Output::Basis => {
                let k = constant(&args, 1, name, "a positive integer", as_u64)?;
                match k {
                    Some(k) if k >= 1 => (k as usize, 2),
                    _ => return plan_err!("{name}: k must be a constant of at least 1"),
                }
            }
            Output::State => (1, 1),
        };
        let algorithm = sql_algorithm(&args, at, name, "pca")?;
        let center = constant(&args, at + 1, name, "a boolean", as_bool)?.unwrap_or(true);
        let (scale, ell) = match self.output {
            Output::Basis => (
                constant(&args, at + 2, name, "a boolean", as_bool)?.unwrap_or(false),
                DEFAULT_ELL,
            ),
            Output::State => (
                false,
                constant(&args, at + 2, name, "a positive integer", as_u64)?
                    .map_or(DEFAULT_ELL, |e| e as usize),
            ),
        };
        if scale && !center {
            return plan_err!(
                "{name}: scale needs center (the standard deviation is about the mean)"
            );
        }
        if algorithm == Algorithm::FrequentDirections && (ell < 2 || k >= ell) {
            return plan_err!(
                "{name}: frequent-directions needs ell ≥ 2 and ell > k (k = {k}, ell = {ell})"
            );
        }
        let rows = RowsArg::new(&args, name)?;
        Ok(Box::new(PcaAccumulator {
            name: name.to_string(),
            output: self.output,
            return_type: self.output_type(),
            k,
            ell: (algorithm == Algorithm::FrequentDirections).then_some(ell),
            center,
            scale,
            rows,
            core: None,
            blocks: Blocks::new(),
        }))
    }
}

#[derive(Debug)]
struct PcaAccumulator {
    name: String,
    output: Output,
    return_type: DataType,
    k: usize,
    ell: Option<usize>,
    center: bool,
    scale: bool,
    rows: RowsArg,
    core: Option<MergeablePca>,
    /// The rows in fixed blocks, as the stage feeds them.
    blocks: Blocks,
}

impl PcaAccumulator {
    /// Feeds the rows kept back for a whole block.
    fn settle(&mut self) -> DfResult<()> {
        if let Some(core) = &mut self.core {
            self.blocks.flush(|b| core.update(b).map_err(df_err))?;
        }
        Ok(())
    }

    fn fold(&mut self, part: MergeablePca) -> DfResult<()> {
        match &mut self.core {
            None => self.core = Some(part),
            Some(core) => core
                .merge(&part)
                .map_err(|e| df_err(e.context(&self.name)))?,
        }
        Ok(())
    }
}

impl Accumulator for PcaAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let (name, slot, blocks) = (&self.name, &mut self.core, &mut self.blocks);
        let (ell, center) = (self.ell, self.center);
        self.rows.with_rows(values, name, |rows| {
            let core = match slot {
                Some(core) if core.dim() != rows.dim => {
                    return Err(df_err(crate::Error::Input(format!(
                        "{name}: rows of dimension {} and {} in one aggregate",
                        core.dim(),
                        rows.dim
                    ))))
                }
                Some(core) => core,
                None => slot.insert(MergeablePca::new(rows.dim, ell, center).map_err(df_err)?),
            };
            blocks.push(rows.values, rows.dim, |b| core.update(b).map_err(df_err))
        })
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.settle()?;
        let columns = self.core.as_ref().map(MergeablePca::to_columns);
        state_scalars(&state::state_fields(""), columns)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.settle()?;
        for i in 0..states[0].len() {
            if let Some(part) = MergeablePca::from_columns(states, i, self.ell).map_err(df_err)? {
                self.fold(part)?;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.settle()?;
        let Some(core) = &self.core else {
            return ScalarValue::try_from(&self.return_type);
        };
        let array = match self.output {
            Output::State => {
                let DataType::Struct(fields) = &self.return_type else {
                    unreachable!("a struct")
                };
                StructArray::try_new(fields.clone(), core.to_columns(), None)?
            }
            Output::Basis => {
                if self.scale {
                    if let Some(j) = core.constant_column() {
                        return Err(df_err(crate::Error::Input(format!(
                            "{}: coordinate {j} of the rows is constant: scale cannot divide by \
                             its standard deviation 0",
                            self.name
                        ))));
                    }
                }
                let pca = core
                    .finish(self.k, self.scale)
                    .map_err(|e| df_err(e.context(&self.name)))?;
                basis_array(&pca)?
            }
        };
        Ok(ScalarValue::Struct(Arc::new(array)))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.core.as_ref().map_or(0, |c| c.state_bytes() as usize)
    }
}

/// A basis argument of a scalar function, read once when it is a constant and otherwise
/// re-read only when a row's basis differs from the last one (a cross join repeats one basis
/// on every row).
struct Bases<'a> {
    array: ArrayRef,
    constant: bool,
    /// Compares two rows of `array` in place (no allocation per row).
    same: DynComparator,
    what: &'a str,
    last: Option<(usize, Option<Basis>)>,
}

impl<'a> Bases<'a> {
    fn new(arg: &ColumnarValue, n: usize, what: &'a str) -> DfResult<Self> {
        let constant = matches!(arg, ColumnarValue::Scalar(_));
        let array = arg.to_array(if constant { 1 } else { n })?;
        let same = make_comparator(&array, &array, SortOptions::default())?;
        Ok(Bases {
            array,
            constant,
            same,
            what,
            last: None,
        })
    }

    fn at(&mut self, i: usize) -> DfResult<Option<&Basis>> {
        let i = if self.constant { 0 } else { i };
        let reuse = match &self.last {
            Some((j, _)) => *j == i || (self.same)(i, *j) == std::cmp::Ordering::Equal,
            None => false,
        };
        if !reuse {
            let b = Basis::read(&self.array, i, self.what).map_err(df_err)?;
            self.last = Some((i, b));
        }
        Ok(self.last.as_ref().and_then(|(_, b)| b.as_ref()))
    }
}

/// `pca_project(row, basis)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Project {
    signature: Signature,
}

impl Project {
    fn new() -> Self {
        Project {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Project {
    fn name(&self) -> &str {
        "pca_project"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if !is_number_list(&args[0]) || !matches!(args[1], DataType::Struct(_)) {
            return plan_err!(
                "pca_project: got ({}, {}); expected (row LIST of numbers, basis STRUCT as the \
                 pca aggregate returns)",
                args[0],
                args[1]
            );
        }
        Ok(f64_list())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (n, scalar) = call_rows(&args);
        let rows = args.args[0].to_array(n)?;
        let lists = FloatLists::new(&rows)?;
        let view = lists.view();
        let mut bases = Bases::new(&args.args[1], n, "pca_project's basis")?;
        let mut out = ListBuilder::new(Float64Builder::new());
        let (mut row, mut tmp, mut scores) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let basis = bases.at(i)?;
            let (Some(basis), false) = (basis, view.is_null(i)) else {
                out.append(false);
                continue;
            };
            view.row_into(i, &mut row);
            if row.len() != basis.dim() {
                return Err(df_err(crate::Error::Input(format!(
                    "pca_project: row {i} has {} values and the basis dimension {}",
                    row.len(),
                    basis.dim()
                ))));
            }
            if let Some(j) = view.null_value(i) {
                return Err(df_err(crate::Error::Input(format!(
                    "pca_project: row {i} has a null at coordinate {j}"
                ))));
            }
            scores.clear();
            basis.project(&row, &mut tmp, &mut scores);
            out.values().append_slice(&scores);
            out.append(true);
        }
        call_result(Arc::new(out.finish()), scalar)
    }
}

/// The cosines of the principal angles between the spans of two bases (`k_a × d`, `k_b × d`,
/// orthonormal rows): the singular values of `V_a V_bᵀ`, descending, clamped to `[0, 1]`.
pub fn principal_cosines(a: &Basis, b: &Basis) -> crate::Result<Vec<f64>> {
    let d = a.dim();
    if b.dim() != d {
        return Err(crate::Error::Input(format!(
            "subspace_alignment: bases of dimension {d} and {}",
            b.dim()
        )));
    }
    let m = Mat::<f64>::from_fn(a.k, b.k, |i, j| {
        dot(
            &a.components[i * d..(i + 1) * d],
            &b.components[j * d..(j + 1) * d],
        )
    });
    let s = m
        .singular_values()
        .map_err(|e| crate::Error::Numeric(format!("subspace_alignment: SVD failed: {e:?}")))?;
    let mut s: Vec<f64> = s.into_iter().map(|x| x.clamp(0.0, 1.0)).collect();
    s.sort_by(|x, y| y.total_cmp(x));
    Ok(s)
}

/// `subspace_alignment(a, b)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Alignment {
    signature: Signature,
}

impl Alignment {
    fn new() -> Self {
        Alignment {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Alignment {
    fn name(&self) -> &str {
        "subspace_alignment"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if !args.iter().all(|t| matches!(t, DataType::Struct(_))) {
            return plan_err!(
                "subspace_alignment: got ({}, {}); expected two bases (the struct the pca \
                 aggregate returns)",
                args[0],
                args[1]
            );
        }
        Ok(f64_list())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (n, scalar) = call_rows(&args);
        let mut left = Bases::new(&args.args[0], n, "subspace_alignment's first basis")?;
        let mut right = Bases::new(&args.args[1], n, "subspace_alignment's second basis")?;
        let mut out = ListBuilder::new(Float64Builder::new());
        for i in 0..n {
            match (left.at(i)?, right.at(i)?) {
                (Some(a), Some(b)) => {
                    let s = principal_cosines(a, b).map_err(df_err)?;
                    out.values().append_slice(&s);
                    out.append(true);
                }
                _ => out.append(false),
            }
        }
        call_result(Arc::new(out.finish()), scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_basis_survives_its_struct() {
        let pca = Pca {
            components: vec![vec![0.6, 0.8, 0.0], vec![0.0, 0.0, 1.0]],
            eigenvalues: vec![3.0, 1.0],
            total: 4.5,
            mean: vec![1.0, 2.0, 3.0],
            scale: Some(vec![2.0, 4.0, 1.0]),
            rows: 10,
            error_bound: Some(0.0),
            state_bytes: 0,
        };
        let array: ArrayRef = Arc::new(basis_array(&pca).unwrap());
        let b = Basis::read(&array, 0, "b").unwrap().unwrap();
        assert_eq!(b.k, 2);
        let (mut tmp, mut out) = (Vec::new(), Vec::new());
        b.project(&[3.0, 6.0, 5.0], &mut tmp, &mut out);
        // (x − μ)/σ = (1, 1, 2): scores 0.6 + 0.8 = 1.4 and 2.
        assert!((out[0] - 1.4).abs() < 1e-15 && (out[1] - 2.0).abs() < 1e-15);
        let same = principal_cosines(&b, &b).unwrap();
        assert!(same.iter().all(|c| (c - 1.0).abs() < 1e-12), "{same:?}");
    }
}
