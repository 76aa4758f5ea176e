//! `op = "top_eigenvector"`: the top eigenvector of `AᵀA` for the rows of one input.
//!
//! Output tables (the contract in `docs/reference.md`):
//! * `vector` — `component UInt32`, `value Float64`: the unit-norm eigenvector;
//! * `stats` — one row: algorithm, rows, dim, eigenvalue (estimate of `σ_1²`), heavy_rows,
//!   state_bytes, seed, plus second_eigenvalue, frobenius_sq, error_bound (a guaranteed bound
//!   on `‖AᵀA − BᵀB‖₂` for sketches, 0 for `exact`, null where no bound is known),
//!   skipped_rows, passes (scans of the input up to this stage's last pass),
//!   order_randomised (the rows were shuffled), and with `verify = true` the Rayleigh
//!   quotient `ρ = ‖Av‖²` and residual `‖AᵀAv − ρv‖₂` measured in one more pass.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

pub mod stage;

use super::eigen_state::{self, MergeableEigen};
use super::{Operator, OutputTable, PassInfo, PassKind, TableDecl};
use crate::blocks::Blocks;
use crate::eigen::{
    dot, FrequentDirections, Gram, Oja, RandomOrder, RandomOrderParams, StreamScale, TopEigen,
};
use crate::rows::{DenseRowReader, OnInvalid};
use crate::{Error, Result};

/// Which top-eigenvector algorithm a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Kacham–Woodruff heavy rows + block power method (arXiv:2412.11963).
    RandomOrder,
    /// Price–Xun fixed-η Oja over a grid of η (arXiv:2408.10332).
    Oja,
    /// Gram matrix + symmetric eigensolver: the exact baseline.
    Exact,
    /// Frequent Directions (arXiv:1501.01711): deterministic, any order, mergeable.
    FrequentDirections,
}

impl Algorithm {
    /// Every spelling the pipeline file accepts.
    pub const NAMES: [&'static str; 4] = ["random-order", "oja", "exact", "frequent-directions"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "random-order" => Some(Algorithm::RandomOrder),
            "oja" => Some(Algorithm::Oja),
            "exact" => Some(Algorithm::Exact),
            "frequent-directions" => Some(Algorithm::FrequentDirections),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::RandomOrder => "random-order",
            Algorithm::Oja => "oja",
            Algorithm::Exact => "exact",
            Algorithm::FrequentDirections => "frequent-directions",
        }
    }

    /// Whether the answer depends on the row order (and the guarantee needs a random one).
    pub fn is_order_sensitive(&self) -> bool {
        matches!(self, Algorithm::RandomOrder | Algorithm::Oja)
    }

    /// Whether partial states of disjoint row sets merge into the state of all of them
    /// (partition-parallel, incremental, on a cluster).
    pub fn is_mergeable(&self) -> bool {
        matches!(self, Algorithm::Exact | Algorithm::FrequentDirections)
    }
}

/// How `random-order` and `oja` learn `‖A‖_F²` before their pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frobenius {
    /// `(n/m) Σ_{i≤m} ‖a_i‖²` over the first `m = prefix_rows` rows (buffered, then replayed):
    /// unbiased in a random-order stream, no extra pass.
    Prefix,
    /// An exact first pass (free with `shuffle = true`: it rides on the spill pass).
    Exact,
}

/// Validated parameters of a `top_eigenvector` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct TopEigenvectorParams {
    /// One list column, or several numeric columns.
    pub columns: Vec<String>,
    pub algorithm: Algorithm,
    pub seed: u64,
    /// Exact uniform out-of-core shuffle before the pass.
    pub shuffle: bool,
    /// Memory budget of the shuffle (bytes held in memory at once while reading it back).
    pub shuffle_memory: u64,
    pub on_invalid: OnInvalid,
    /// Sketch size `ℓ` of `frequent-directions`.
    pub ell: usize,
    /// `random-order` / `oja`: how `‖A‖_F²` is obtained.
    pub frobenius: Frobenius,
    /// Rows of the prefix under [`Frobenius::Prefix`].
    pub prefix_rows: u64,
    /// `random-order` knobs.
    pub random_order: RandomOrderParams,
    /// One more pass computing the Rayleigh quotient `‖Av‖²` and the residual
    /// `‖AᵀAv − ρv‖` of the answer.
    pub verify: bool,
    /// Resume from the previous run's `state` table and read only new files (exact and
    /// frequent-directions only).
    pub incremental: bool,
}

impl TopEigenvectorParams {
    /// Defaults for everything but the columns.
    pub fn new(columns: Vec<String>, algorithm: Algorithm) -> Self {
        TopEigenvectorParams {
            columns,
            algorithm,
            seed: 42,
            shuffle: false,
            shuffle_memory: DEFAULT_SHUFFLE_MEMORY,
            on_invalid: OnInvalid::default(),
            ell: DEFAULT_ELL,
            frobenius: Frobenius::Prefix,
            prefix_rows: DEFAULT_PREFIX_ROWS,
            random_order: RandomOrderParams::default(),
            verify: false,
            incremental: false,
        }
    }
}

/// Default `ℓ` for `frequent-directions`.
pub const DEFAULT_ELL: usize = 32;
/// Default prefix length for estimating `‖A‖_F²`.
pub const DEFAULT_PREFIX_ROWS: u64 = 4096;
/// Default `shuffle_memory`: 512 MiB.
pub const DEFAULT_SHUFFLE_MEMORY: u64 = 512 << 20;

/// The core an operator runs, created when the first valid row tells the dimension.
enum Core {
    Exact(Gram),
    FrequentDirections(FrequentDirections),
    RandomOrder(Box<RandomOrder>),
    Oja(Oja),
    /// `random-order` / `oja` buffering the prefix that estimates `‖A‖_F²`.
    Prefix {
        d: usize,
        buf: Vec<f64>,
        sq: f64,
    },
}

impl Core {
    /// The core for dimension `d`; `scale` is `None` for the order-free algorithms and for a
    /// stream-order algorithm that must estimate it first (then a prefix buffer).
    fn new(params: &TopEigenvectorParams, d: usize, scale: Option<StreamScale>) -> Result<Self> {
        Ok(match (params.algorithm, scale) {
            (Algorithm::Exact, _) => Core::Exact(Gram::new(d)?),
            (Algorithm::FrequentDirections, _) => {
                Core::FrequentDirections(FrequentDirections::new(d, params.ell)?)
            }
            (Algorithm::RandomOrder, Some(scale)) => Core::RandomOrder(Box::new(RandomOrder::new(
                d,
                scale,
                params.random_order,
                params.seed,
            )?)),
            (Algorithm::Oja, Some(scale)) => Core::Oja(Oja::new(d, scale, params.seed)?),
            (_, None) => Core::Prefix {
                d,
                buf: Vec::new(),
                sq: 0.0,
            },
        })
    }

    fn update(&mut self, rows: &[f64]) -> Result<()> {
        match self {
            Core::Exact(g) => g.update(rows),
            Core::FrequentDirections(fd) => fd.update(rows)?,
            Core::RandomOrder(ro) => ro.update(rows)?,
            Core::Oja(oja) => oja.update(rows),
            Core::Prefix { buf, sq, .. } => {
                // One running sum and an exactly sized buffer: the same bits and the same
                // `state_bytes` however the prefix arrives in batches.
                for x in rows {
                    *sq += x * x;
                }
                buf.reserve_exact(rows.len());
                buf.extend_from_slice(rows);
            }
        }
        Ok(())
    }

    /// Rows buffered by a prefix core.
    fn buffered_rows(&self) -> Option<u64> {
        match self {
            Core::Prefix { d, buf, .. } => Some((buf.len() / d) as u64),
            _ => None,
        }
    }

    /// Ends the prefix: `‖A‖_F² ≈ (rows / rows_read) Σ ‖a‖²`, then replays the buffer.
    fn leave_prefix(
        &mut self,
        params: &TopEigenvectorParams,
        rows: u64,
        rows_read: u64,
    ) -> Result<u64> {
        let Core::Prefix { d, buf, sq } = self else {
            return Ok(0);
        };
        let frobenius_sq = *sq * rows as f64 / rows_read.max(1) as f64;
        let buf = std::mem::take(buf);
        let mut core = Core::new(params, *d, Some(StreamScale { rows, frobenius_sq }))?;
        core.update(&buf)?;
        *self = core;
        Ok((buf.capacity() * 8) as u64)
    }

    /// The answer and the bound on `‖AᵀA − BᵀB‖₂` (zero for the exact core, none known for
    /// the stream-order ones).
    fn finish(&self) -> Result<(TopEigen, Option<f64>)> {
        Ok(match self {
            Core::Exact(g) => (g.finish()?, Some(0.0)),
            Core::FrequentDirections(fd) => (fd.finish()?, Some(fd.error_bound())),
            Core::RandomOrder(ro) => (ro.finish()?, None),
            Core::Oja(oja) => (oja.finish()?, None),
            Core::Prefix { .. } => unreachable!("the prefix is left at the end of the pass"),
        })
    }
}

/// One pass of the operator's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Exact `‖A‖_F²` before a stream-order pass.
    Frobenius,
    /// The algorithm's own pass.
    Main,
    /// Rayleigh quotient and residual of the answer.
    Verify,
}

/// The answer of the main pass.
struct Answer {
    top: TopEigen,
    bound: Option<f64>,
    rows_read: u64,
    skipped: u64,
}

/// Accumulators of the verify pass: `ρ = Σ⟨a, v⟩²`, `AᵀAv = Σ ⟨a, v⟩ a`.
struct Verify {
    rayleigh: f64,
    atav: Vec<f64>,
}

/// The operator: rows adapter + one core, over the passes its parameters call for.
pub struct TopEigenvectorOp {
    params: TopEigenvectorParams,
    reader: DenseRowReader,
    plan: Vec<Pass>,
    /// Index in `plan` of the pass in progress or next.
    at: usize,
    info: Option<PassInfo>,
    frobenius_sq: Option<f64>,
    core: Option<Core>,
    /// Largest prefix buffer held (counted into `state_bytes`).
    prefix_bytes: u64,
    answer: Option<Answer>,
    verify: Option<Verify>,
    order_randomised: bool,
    /// Incremental: the previous run's state, until merged; then the merged state.
    previous: Option<MergeableEigen>,
    state: Option<MergeableEigen>,
    /// The exact and Frequent Directions cores' rows in fixed blocks, so their sums do not
    /// depend on batch sizes.
    blocks: Blocks,
}

static VECTOR_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("component", DataType::UInt32, false),
        Field::new("value", DataType::Float64, false),
    ]))
});

static STATS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("algorithm", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("dim", DataType::UInt32, false),
        Field::new("eigenvalue", DataType::Float64, false),
        Field::new("second_eigenvalue", DataType::Float64, true),
        Field::new("frobenius_sq", DataType::Float64, false),
        Field::new("error_bound", DataType::Float64, true),
        Field::new("heavy_rows", DataType::UInt64, false),
        Field::new("state_bytes", DataType::UInt64, false),
        Field::new("skipped_rows", DataType::UInt64, false),
        Field::new("passes", DataType::UInt32, false),
        Field::new("seed", DataType::UInt64, false),
        Field::new("order_randomised", DataType::Boolean, false),
        Field::new("rayleigh_quotient", DataType::Float64, true),
        Field::new("residual", DataType::Float64, true),
    ]))
});

impl TopEigenvectorOp {
    /// The tables this operator writes.
    /// The tables this operator writes (`state` too when incremental).
    pub fn tables(incremental: bool) -> Vec<TableDecl> {
        let mut tables = vec![
            TableDecl {
                name: "vector",
                schema: VECTOR_SCHEMA.clone(),
            },
            TableDecl {
                name: "stats",
                schema: STATS_SCHEMA.clone(),
            },
        ];
        if incremental {
            tables.push(TableDecl {
                name: "state",
                schema: eigen_state::state_schema(),
            });
        }
        tables
    }

    /// Continues from the `state` table of a previous incremental run in `dir`: the rows read
    /// now are merged into it.
    pub fn resume(&mut self, dir: &Path) -> Result<()> {
        let ell =
            (self.params.algorithm == Algorithm::FrequentDirections).then_some(self.params.ell);
        self.previous = super::read_state(dir, |c| MergeableEigen::from_columns(c, 0, ell))?;
        Ok(())
    }

    /// Finishes from a state computed elsewhere over the whole input (e.g. by the
    /// `top_eigenvector_state` aggregate on a cluster) instead of scanning: `info` describes
    /// that pass as if it had run here. The tables are the ones a local pass would write.
    pub fn finish_from_state(
        mut self,
        state: MergeableEigen,
        info: PassInfo,
    ) -> Result<Vec<OutputTable>> {
        let rows = state.rows();
        self.previous = Some(state);
        self.info = Some(info);
        self.order_randomised = info.order_randomised;
        self.answer = Some(self.merged_answer(None, rows)?);
        let answer = self.answer.as_ref().expect("just set");
        self.tables_from(answer)
    }

    /// The answer from the previous state merged with this run's rows (`core`, if any).
    fn merged_answer(&mut self, core: Option<Core>, rows_read: u64) -> Result<Answer> {
        let mine = match core {
            Some(Core::Exact(g)) => Some(MergeableEigen::Exact(g)),
            Some(Core::FrequentDirections(f)) => Some(MergeableEigen::FrequentDirections(f)),
            Some(_) => unreachable!("incremental stages are exact or frequent-directions"),
            None => None,
        };
        let Some(merged) = super::merge_into_previous(self.previous.take(), mine)? else {
            return Err(self.no_rows_error());
        };
        let answer = Answer {
            top: merged.finish()?,
            bound: Some(merged.error_bound()),
            rows_read,
            skipped: self.reader.skipped(),
        };
        self.state = Some(merged);
        Ok(answer)
    }

    /// Checks the input schema against the parameters; no data is read.
    pub fn new(params: TopEigenvectorParams, input: &Schema) -> Result<Self> {
        let reader = DenseRowReader::new(input, &params.columns, params.on_invalid)?;
        let mut plan = Vec::new();
        if params.algorithm.is_order_sensitive() && params.frobenius == Frobenius::Exact {
            plan.push(Pass::Frobenius);
        }
        plan.push(Pass::Main);
        if params.verify {
            plan.push(Pass::Verify);
        }
        Ok(TopEigenvectorOp {
            params,
            reader,
            plan,
            at: 0,
            info: None,
            frobenius_sq: None,
            core: None,
            prefix_bytes: 0,
            answer: None,
            verify: None,
            order_randomised: false,
            previous: None,
            state: None,
            blocks: Blocks::new(),
        })
    }

    fn tables_from(&self, answer: &Answer) -> Result<Vec<OutputTable>> {
        let top = &answer.top;
        let d = top.vector.len();
        let vector = RecordBatch::try_new(
            VECTOR_SCHEMA.clone(),
            vec![
                Arc::new(UInt32Array::from_iter_values(0..d as u32)) as ArrayRef,
                Arc::new(Float64Array::from(top.vector.clone())),
            ],
        )?;
        let (rayleigh, residual) = match &self.verify {
            Some(v) => {
                let rho = v.rayleigh;
                let r = v
                    .atav
                    .iter()
                    .zip(&top.vector)
                    .map(|(x, y)| (x - rho * y).powi(2))
                    .sum::<f64>()
                    .sqrt();
                (Some(rho), Some(r))
            }
            None => (None, None),
        };
        let stats = RecordBatch::try_new(
            STATS_SCHEMA.clone(),
            vec![
                Arc::new(StringArray::from(vec![self.params.algorithm.as_str()])) as ArrayRef,
                Arc::new(UInt64Array::from(vec![top.rows])),
                Arc::new(UInt32Array::from(vec![d as u32])),
                Arc::new(Float64Array::from(vec![top.eigenvalue])),
                Arc::new(Float64Array::from(vec![top.second_eigenvalue])),
                Arc::new(Float64Array::from(vec![top.frobenius_sq])),
                Arc::new(Float64Array::from(vec![answer.bound])),
                Arc::new(UInt64Array::from(vec![top.heavy_rows])),
                Arc::new(UInt64Array::from(vec![top
                    .state_bytes
                    .max(self.prefix_bytes)])),
                Arc::new(UInt64Array::from(vec![answer.skipped])),
                Arc::new(UInt32Array::from(vec![self.info.map_or(0, |i| i.scan)])),
                Arc::new(UInt64Array::from(vec![self.params.seed])),
                Arc::new(BooleanArray::from(vec![self.order_randomised])),
                Arc::new(Float64Array::from(vec![rayleigh])),
                Arc::new(Float64Array::from(vec![residual])),
            ],
        )?;
        Ok(vec![
            OutputTable::new("vector", vector),
            OutputTable::new("stats", stats),
        ])
    }

    fn no_rows_error(&self) -> Error {
        self.reader.no_rows_error()
    }

    fn main_update(&mut self, batch: &RecordBatch) -> Result<()> {
        // Rows seen, valid or not, once this batch is read.
        let seen = self.reader.rows_seen() + batch.num_rows() as u64;
        let rows = self.reader.read(batch)?;
        if rows.rows == 0 {
            return Ok(());
        }
        let params = &self.params;
        let scale = match (params.algorithm.is_order_sensitive(), self.frobenius_sq) {
            (true, Some(frobenius_sq)) => Some(StreamScale {
                rows: self.info.and_then(|i| i.rows).unwrap_or(0),
                frobenius_sq,
            }),
            _ => None,
        };
        let core = match &mut self.core {
            Some(core) => core,
            None => self.core.insert(Core::new(params, rows.dim, scale)?),
        };
        let Some(buffered) = core.buffered_rows() else {
            return match core {
                // One SYRK per call (exact, and Frequent Directions' Gram route): fixed blocks.
                Core::Exact(_) | Core::FrequentDirections(_) => {
                    self.blocks.push(rows.values, rows.dim, |b| core.update(b))
                }
                _ => core.update(rows.values),
            };
        };
        // The prefix ends after exactly `prefix_rows` rows, wherever batches happen to end,
        // so the estimate of `‖A‖_F²` — and the answer — do not depend on batch boundaries.
        let room = params.prefix_rows.saturating_sub(buffered) as usize * rows.dim;
        let (head, tail) = rows.values.split_at(room.min(rows.values.len()));
        core.update(head)?;
        if core.buffered_rows() == Some(params.prefix_rows) {
            let total = self.info.and_then(|i| i.rows).unwrap_or(0);
            let read = seen - (tail.len() / rows.dim) as u64;
            let bytes = core.leave_prefix(params, total.max(read), read)?;
            self.prefix_bytes = self.prefix_bytes.max(bytes);
            core.update(tail)?;
        }
        Ok(())
    }
}

impl Operator for TopEigenvectorOp {
    fn next_pass(&self) -> Option<PassKind> {
        self.plan.get(self.at).map(|pass| match pass {
            Pass::Main if self.params.algorithm.is_order_sensitive() => PassKind::StreamOrder,
            _ => PassKind::AnyOrder,
        })
    }

    fn needs_row_count(&self) -> bool {
        self.plan.get(self.at) == Some(&Pass::Main) && self.params.algorithm.is_order_sensitive()
    }

    fn pass_name(&self) -> Option<String> {
        // Named only when the stage makes more than one pass.
        (self.plan.len() > 1).then(|| {
            match self.plan.get(self.at) {
                Some(Pass::Frobenius) => "‖A‖_F²",
                Some(Pass::Main) | None => self.params.algorithm.as_str(),
                Some(Pass::Verify) => "verify",
            }
            .to_string()
        })
    }

    fn begin_pass(&mut self, info: &PassInfo) -> Result<()> {
        self.info = Some(*info);
        self.reader.restart();
        match self.plan[self.at] {
            Pass::Frobenius => self.frobenius_sq = Some(0.0),
            Pass::Main => {
                self.order_randomised = info.order_randomised;
                if self.needs_row_count() && info.rows.is_none() {
                    return Err(Error::Input(format!(
                        "algorithm `{}` needs the input's row count before its pass, and it is not known",
                        self.params.algorithm.as_str()
                    )));
                }
            }
            Pass::Verify => {
                let d = self.answer.as_ref().map_or(0, |a| a.top.vector.len());
                self.verify = Some(Verify {
                    rayleigh: 0.0,
                    atav: vec![0.0; d],
                });
            }
        }
        Ok(())
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        match self.plan[self.at] {
            Pass::Main => self.main_update(batch),
            Pass::Frobenius => {
                let rows = self.reader.read(batch)?;
                let sq: f64 = rows.values.iter().map(|x| x * x).sum();
                *self.frobenius_sq.get_or_insert(0.0) += sq;
                Ok(())
            }
            Pass::Verify => {
                let rows = self.reader.read(batch)?;
                let (Some(verify), Some(answer)) = (&mut self.verify, &self.answer) else {
                    return Ok(());
                };
                let v = &answer.top.vector;
                for a in rows.values.chunks_exact(v.len().max(1)) {
                    let t = dot(a, v);
                    verify.rayleigh += t * t;
                    for (acc, x) in verify.atav.iter_mut().zip(a) {
                        *acc += t * x;
                    }
                }
                Ok(())
            }
        }
    }

    fn end_pass(&mut self) -> Result<()> {
        let pass = self.plan[self.at];
        self.at += 1;
        match pass {
            Pass::Frobenius => {
                if self.frobenius_sq.is_some_and(|f| f <= 0.0) {
                    // All-zero or empty input: the main pass reports it properly.
                    self.frobenius_sq = None;
                }
            }
            Pass::Main => {
                let Some(core) = &mut self.core else {
                    return Err(self.no_rows_error());
                };
                self.blocks.flush(|b| core.update(b))?;
                // A stream shorter than the prefix: its `‖A‖_F²` is exact.
                let read = self.reader.rows_seen();
                let bytes = core.leave_prefix(&self.params, read, read)?;
                self.prefix_bytes = self.prefix_bytes.max(bytes);
                if self.params.incremental {
                    let core = self.core.take();
                    self.answer = Some(self.merged_answer(core, read)?);
                    return Ok(());
                }
                let (top, bound) = core.finish()?;
                self.answer = Some(Answer {
                    top,
                    bound,
                    rows_read: read,
                    skipped: self.reader.skipped(),
                });
                self.core = None;
            }
            Pass::Verify => {}
        }
        Ok(())
    }

    fn rows_read(&self) -> u64 {
        self.answer.as_ref().map_or(0, |a| a.rows_read)
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<OutputTable>> {
        if self.answer.is_none() && self.params.incremental {
            // No new files: nothing was scanned, the previous state is the answer.
            self.answer = Some(self.merged_answer(None, 0)?);
        }
        let Some(answer) = &self.answer else {
            return Err(self.no_rows_error());
        };
        let mut tables = self.tables_from(answer)?;
        if let Some(state) = &self.state {
            tables.push(OutputTable::new("state", state.to_batch()?));
        }
        Ok(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, Float64Array, ListArray};
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::Float64Type;
    use rand::{Rng, SeedableRng};

    /// `n` random rows of dimension `d` with a dominant direction, as one batch.
    fn rows(n: usize, d: usize) -> RecordBatch {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let values: Float64Array = (0..n * d)
            .map(|i| rng.random::<f64>() - 0.5 + if i % d == 0 { 2.0 } else { 0.0 })
            .collect();
        let field = Arc::new(Field::new("item", DataType::Float64, false));
        let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(d, n));
        let list = ListArray::new(field, offsets, Arc::new(values), None);
        let schema = Schema::new(vec![Field::new("emb", list.data_type().clone(), false)]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(list)]).unwrap()
    }

    /// The vector and stats of one run over `batch` cut into batches of `sizes` (cycled).
    fn run(algorithm: Algorithm, batch: &RecordBatch, sizes: &[usize]) -> (Vec<f64>, String) {
        let params = TopEigenvectorParams::new(vec!["emb".into()], algorithm);
        let mut op = Box::new(TopEigenvectorOp::new(params, &batch.schema()).unwrap());
        let mut scan = 0;
        while op.next_pass().is_some() {
            scan += 1;
            let info = PassInfo {
                rows: Some(batch.num_rows() as u64),
                order_randomised: true,
                scan,
            };
            op.begin_pass(&info).unwrap();
            let (mut at, mut i) = (0, 0);
            while at < batch.num_rows() {
                let len = sizes[i % sizes.len()].min(batch.num_rows() - at);
                op.update(&batch.slice(at, len)).unwrap();
                (at, i) = (at + len, i + 1);
            }
            op.end_pass().unwrap();
        }
        let tables = op.finish().unwrap();
        let vector = tables[0].batch.column(1).as_primitive::<Float64Type>();
        let stats = format!("{:?}", tables[1].batch.columns());
        (vector.values().to_vec(), stats)
    }

    /// Every algorithm gives the same bits however the stream is cut into batches (a
    /// cluster, a different file layout or DataFusion version, a Python loop cuts it
    /// differently): the `‖A‖_F²` prefix ends after exactly `prefix_rows` rows, and the exact
    /// Gram matrix (and Frequent Directions' on its Gram route) is summed in fixed blocks of rows.
    #[test]
    fn batch_boundaries_do_not_change_a_bit() {
        let batch = rows(20_000, 48);
        for algorithm in [
            Algorithm::RandomOrder,
            Algorithm::Oja,
            Algorithm::Exact,
            Algorithm::FrequentDirections,
        ] {
            let one = run(algorithm, &batch, &[20_000]);
            for sizes in [&[8192][..], &[777, 1, 4095], &[5460]] {
                assert_eq!(
                    run(algorithm, &batch, sizes),
                    one,
                    "{algorithm:?}, {sizes:?}"
                );
            }
        }
    }
}
