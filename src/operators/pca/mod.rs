//! `op = "pca"`: principal components of the rows of one input — centred (and optionally
//! standardised), the top `k`, their eigenvalues, explained variance and the mean.
//!
//! Output tables (the contract in `docs/reference.md`):
//! * `components` — `pc UInt32, dim UInt32, value Float64`: `k` orthonormal vectors;
//! * `spectrum` — `pc, eigenvalue, explained_variance, explained_variance_ratio, error_bound`;
//! * `mean` — `dim, value`: the vector subtracted from every row (zeros with `center = false`);
//! * `scale` — `dim, value`: the divisors `σ_j` (with `scale = true` only);
//! * `stats` — one row: algorithm, rows, dim, components, total_variance, center, scale,
//!   mean_from, seed, order_randomised, skipped_rows, state_bytes, passes;
//! * `state` — with `incremental = true` (the layout of [`state`]).
//!
//! `exact` and `frequent-directions` centre through their one pass ([`crate::eigen::pca`]).
//! `random-order` and `oja` need the mean (and `σ`) before their ordered pass: from a first
//! pass when one is made anyway — the shuffle's spill pass (`mean_from = "shuffle"`) or the
//! exact `‖A‖_F²` pass of `frobenius = "exact"` (`"pass"`) — else from the prefix of
//! `prefix_rows` rows that already estimates `‖A‖_F²` (`"prefix"`).

pub mod stage;
pub mod state;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use self::state::MergeablePca;
use super::top_eigenvector::{Frobenius, TopEigenvectorParams};
use super::{Algorithm, Operator, OutputTable, PassInfo, PassKind, TableDecl};
use crate::blocks::Blocks;
use crate::eigen::{Moments, Oja, Pca, RandomOrder, StreamScale};
use crate::rows::DenseRowReader;
use crate::{Error, Result};

/// Validated parameters of a `pca` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct PcaParams {
    /// The keys shared with `top_eigenvector` (columns, algorithm, seed, shuffle, ell, the
    /// stream-order knobs, on_invalid, incremental); `verify` is not a `pca` key.
    pub base: TopEigenvectorParams,
    /// `k`, the number of components.
    pub components: usize,
    pub center: bool,
    pub scale: bool,
}

/// Where the mean (and `σ`) a stream-order stage centres with came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeanFrom {
    /// The stage's own pass (exact, frequent-directions) or a first pass made for
    /// `frobenius = "exact"`.
    Pass,
    /// The shuffle's spill pass.
    Shuffle,
    /// The first `prefix_rows` rows.
    Prefix,
}

impl MeanFrom {
    pub fn as_str(&self) -> &'static str {
        match self {
            MeanFrom::Pass => "pass",
            MeanFrom::Shuffle => "shuffle",
            MeanFrom::Prefix => "prefix",
        }
    }
}

impl PcaParams {
    /// Where the mean comes from (`None` when the stage neither centres nor scales).
    pub fn mean_from(&self) -> Option<MeanFrom> {
        if !self.center && !self.scale {
            return None;
        }
        Some(if !self.base.algorithm.is_order_sensitive() {
            MeanFrom::Pass
        } else if self.base.shuffle {
            MeanFrom::Shuffle
        } else if self.base.frobenius == Frobenius::Exact {
            MeanFrom::Pass
        } else {
            MeanFrom::Prefix
        })
    }

    /// Whether a stream-order stage makes a first pass for the moments (free with a shuffle).
    fn moments_pass(&self) -> bool {
        self.base.algorithm.is_order_sensitive()
            && (self.base.shuffle || self.base.frobenius == Frobenius::Exact)
    }

    /// `ℓ` for Frequent Directions, `None` for exact.
    fn ell(&self) -> Option<usize> {
        (self.base.algorithm == Algorithm::FrequentDirections).then_some(self.base.ell)
    }

    /// The tables this stage writes.
    pub fn tables(&self) -> Vec<TableDecl> {
        let mut tables = vec![
            TableDecl {
                name: "components",
                schema: COMPONENTS_SCHEMA.clone(),
            },
            TableDecl {
                name: "spectrum",
                schema: SPECTRUM_SCHEMA.clone(),
            },
            TableDecl {
                name: "mean",
                schema: VECTOR_SCHEMA.clone(),
            },
        ];
        if self.scale {
            tables.push(TableDecl {
                name: "scale",
                schema: VECTOR_SCHEMA.clone(),
            });
        }
        tables.push(TableDecl {
            name: "stats",
            schema: STATS_SCHEMA.clone(),
        });
        if self.base.incremental {
            tables.push(TableDecl {
                name: "state",
                schema: state::state_schema(),
            });
        }
        tables
    }

    /// The name of coordinate `j` for messages: the numeric column, or `coordinate j of` the
    /// list column.
    fn coordinate(&self, j: usize) -> String {
        match self.base.columns.as_slice() {
            [one] => format!("coordinate {j} of column `{one}`"),
            many => format!("column `{}`", many.get(j).map_or("?", |s| s.as_str())),
        }
    }

    /// The error for a constant column under `scale = true`.
    fn constant_error(&self, j: usize, what: &str) -> Error {
        Error::Input(format!(
            "{} is constant{what}: scale = true cannot divide by its standard deviation 0; \
             drop it (a `sql` source selecting the other columns) or set scale = false",
            self.coordinate(j)
        ))
    }
}

/// Metadata key of the `components` table naming the input columns, in order: what `project`
/// checks a later table against.
pub const COLUMNS_METADATA: &str = "sketchpipe.pca.columns";

static COMPONENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("pc", DataType::UInt32, false),
        Field::new("dim", DataType::UInt32, false),
        Field::new("value", DataType::Float64, false),
    ]))
});

static SPECTRUM_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("pc", DataType::UInt32, false),
        Field::new("eigenvalue", DataType::Float64, false),
        Field::new("explained_variance", DataType::Float64, false),
        Field::new("explained_variance_ratio", DataType::Float64, false),
        Field::new("error_bound", DataType::Float64, true),
    ]))
});

static VECTOR_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("dim", DataType::UInt32, false),
        Field::new("value", DataType::Float64, false),
    ]))
});

static STATS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("algorithm", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("dim", DataType::UInt32, false),
        Field::new("components", DataType::UInt32, false),
        Field::new("total_variance", DataType::Float64, false),
        Field::new("center", DataType::Boolean, false),
        Field::new("scale", DataType::Boolean, false),
        Field::new("mean_from", DataType::Utf8, true),
        Field::new("seed", DataType::UInt64, false),
        Field::new("order_randomised", DataType::Boolean, false),
        Field::new("skipped_rows", DataType::UInt64, false),
        Field::new("state_bytes", DataType::UInt64, false),
        Field::new("passes", DataType::UInt32, false),
    ]))
});

/// `(x − μ) / σ`, into a reused buffer or in place. (The exact total `Σ ‖·‖²` of what it
/// gave is the stream core's own `‖A‖_F²`.)
#[derive(Debug)]
struct Standardise {
    mean: Vec<f64>,
    /// `σ_j` with `scale = true` (what the `scale` table holds, exactly).
    scale: Option<Vec<f64>>,
    /// `1 / σ_j`, what the rows are multiplied by.
    inv: Option<Vec<f64>>,
    buf: Vec<f64>,
}

impl Standardise {
    fn new(mean: Vec<f64>, scale: Option<Vec<f64>>) -> Self {
        Standardise {
            mean,
            inv: scale.as_ref().map(|s| s.iter().map(|x| 1.0 / x).collect()),
            scale,
            buf: Vec::new(),
        }
    }

    /// Nothing to subtract or divide (`center = false`, `scale = false`).
    fn identity(&self) -> bool {
        self.inv.is_none() && self.mean.iter().all(|m| *m == 0.0)
    }

    /// Standardises `rows` in place.
    fn apply_in_place<'a>(&mut self, rows: &'a mut [f64]) -> &'a [f64] {
        let d = self.mean.len();
        for row in rows.chunks_exact_mut(d) {
            match &self.inv {
                Some(inv) => row
                    .iter_mut()
                    .zip(&self.mean)
                    .zip(inv)
                    .for_each(|((x, m), s)| *x = (*x - m) * s),
                None => row.iter_mut().zip(&self.mean).for_each(|(x, m)| *x -= m),
            }
        }
        rows
    }

    /// The standardised rows (the rows themselves when there is nothing to subtract or
    /// divide: `center = false`, `scale = false`).
    fn apply<'a>(&'a mut self, rows: &'a [f64]) -> &'a [f64] {
        if self.identity() {
            return rows;
        }
        let d = self.mean.len();
        self.buf.clear();
        self.buf.reserve(rows.len());
        for row in rows.chunks_exact(d) {
            match &self.inv {
                Some(inv) => self.buf.extend(
                    row.iter()
                        .zip(&self.mean)
                        .zip(inv)
                        .map(|((x, m), s)| (x - m) * s),
                ),
                None => self
                    .buf
                    .extend(row.iter().zip(&self.mean).map(|(x, m)| x - m)),
            }
        }
        &self.buf
    }
}

/// A stream-order core fed standardised rows.
enum StreamCore {
    RandomOrder(Box<RandomOrder>),
    Oja(Oja),
}

/// The core of the main pass, created when the first valid row tells the dimension.
enum Core {
    Mergeable(MergeablePca),
    Stream {
        standardise: Standardise,
        core: StreamCore,
    },
    /// A stream-order stage buffering its prefix (raw rows).
    Prefix {
        d: usize,
        buf: Vec<f64>,
    },
}

/// The answer of the main pass.
struct Answer {
    pca: Pca,
    rows_read: u64,
    skipped: u64,
}

/// One pass of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Column means and variances (and so `‖A‖_F²`) before a stream-order pass.
    Moments,
    /// The algorithm's own pass.
    Main,
}

/// The operator: rows adapter + one core, over one or two passes.
pub struct PcaOp {
    params: PcaParams,
    /// Taken out while a batch it converted is fed to the core (see [`Self::main_update`]).
    reader: Option<DenseRowReader>,
    plan: Vec<Pass>,
    at: usize,
    info: Option<PassInfo>,
    moments: Option<Moments>,
    core: Option<Core>,
    prefix_bytes: u64,
    answer: Option<Answer>,
    order_randomised: bool,
    /// Incremental: the previous run's state, until merged; then the merged state.
    previous: Option<MergeablePca>,
    state: Option<MergeablePca>,
    /// The mergeable core's rows in fixed blocks, so its sums (one mean and one SYRK per
    /// update) do not depend on batch sizes.
    blocks: Blocks,
}

impl PcaOp {
    /// Checks the input schema against the parameters; no data is read.
    pub fn new(params: PcaParams, input: &Schema) -> Result<Self> {
        let reader = DenseRowReader::new(input, &params.base.columns, params.base.on_invalid)?;
        if let Some(d) = reader.dim() {
            if params.components > d {
                return Err(Error::Config(format!(
                    "components = {} but the rows have dimension {d}: at most {d} components exist",
                    params.components
                )));
            }
        }
        let mut plan = Vec::new();
        if params.moments_pass() {
            plan.push(Pass::Moments);
        }
        plan.push(Pass::Main);
        Ok(PcaOp {
            params,
            reader: Some(reader),
            plan,
            at: 0,
            info: None,
            moments: None,
            core: None,
            prefix_bytes: 0,
            answer: None,
            order_randomised: false,
            previous: None,
            state: None,
            blocks: Blocks::new(),
        })
    }

    /// Continues from the `state` table of a previous incremental run in `dir`.
    pub fn resume(&mut self, dir: &Path) -> Result<()> {
        let ell = self.params.ell();
        self.previous = super::read_state(dir, |c| MergeablePca::from_columns(c, 0, ell))?;
        Ok(())
    }

    /// Finishes from a state computed elsewhere over the whole input (the `pca_state`
    /// aggregate on a cluster) instead of scanning.
    pub fn finish_from_state(
        mut self,
        state: MergeablePca,
        info: PassInfo,
    ) -> Result<Vec<OutputTable>> {
        let rows = state.rows();
        self.previous = Some(state);
        self.info = Some(info);
        self.order_randomised = info.order_randomised;
        let answer = self.merged_answer(None, rows)?;
        self.tables_from(&answer)
    }

    /// The answer from the previous state merged with this run's rows.
    fn merged_answer(&mut self, mine: Option<MergeablePca>, rows_read: u64) -> Result<Answer> {
        let Some(merged) = super::merge_into_previous(self.previous.take(), mine)? else {
            return Err(self.no_rows_error());
        };
        let pca = self.finish_mergeable(&merged)?;
        self.state = Some(merged);
        Ok(Answer {
            pca,
            rows_read,
            skipped: self.reader().skipped(),
        })
    }

    fn finish_mergeable(&self, core: &MergeablePca) -> Result<Pca> {
        if self.params.scale {
            if let Some(j) = core.constant_column() {
                return Err(self.params.constant_error(j, ""));
            }
        }
        core.finish(self.params.components, self.params.scale)
    }

    fn no_rows_error(&self) -> Error {
        self.reader().no_rows_error()
    }

    /// The stream-order core over standardised rows, with `‖A‖_F²` known or estimated.
    fn stream_core(&self, d: usize, frobenius_sq: f64) -> Result<StreamCore> {
        let base = &self.params.base;
        let scale = StreamScale {
            rows: self.info.and_then(|i| i.rows).unwrap_or(0),
            frobenius_sq,
        };
        Ok(match base.algorithm {
            Algorithm::RandomOrder => StreamCore::RandomOrder(Box::new(RandomOrder::new(
                d,
                scale,
                base.random_order,
                base.seed,
            )?)),
            Algorithm::Oja => StreamCore::Oja(Oja::new(d, scale, base.seed)?),
            _ => unreachable!("mergeable algorithms have no stream core"),
        })
    }

    /// The standardisation a set of moments gives (`None` mean: zeros), refusing a constant
    /// column under `scale = true`; `what` says where the moments came from, for the message.
    fn standardise_from(&self, m: &Moments, what: &str) -> Result<Standardise> {
        let d = m.mean().len();
        let mean = if self.params.center {
            m.mean().to_vec()
        } else {
            vec![0.0; d]
        };
        if !self.params.scale {
            return Ok(Standardise::new(mean, None));
        }
        let sd = m.std_dev();
        if let Some(c) = crate::eigen::pca::constant_column(m.mean(), &sd) {
            return Err(self.params.constant_error(c.0, what));
        }
        Ok(Standardise::new(mean, Some(sd)))
    }

    /// `Σ ‖(a − μ)/σ‖²` from the moments of all the rows, exactly.
    fn total_from(&self, m: &Moments) -> f64 {
        let squares = m.centred_squares();
        let n = m.rows() as f64;
        squares
            .iter()
            .zip(m.mean())
            .zip(m.std_dev())
            .map(|((m2, mu), sd)| {
                let raw = if self.params.center {
                    *m2
                } else {
                    m2 + n * mu * mu
                };
                if self.params.scale {
                    raw / (sd * sd)
                } else {
                    raw
                }
            })
            .sum()
    }

    fn new_core(&self, d: usize) -> Result<Core> {
        if !self.params.base.algorithm.is_order_sensitive() {
            return Ok(Core::Mergeable(MergeablePca::new(
                d,
                self.params.ell(),
                self.params.center,
            )?));
        }
        match &self.moments {
            Some(m) => {
                let standardise = self.standardise_from(m, "")?;
                let core = self.stream_core(d, self.total_from(m))?;
                Ok(Core::Stream { standardise, core })
            }
            None => Ok(Core::Prefix { d, buf: Vec::new() }),
        }
    }

    /// Ends the prefix: mean and `σ` of the prefix, `‖A‖_F² ≈ (rows / read) Σ ‖t(a)‖²`, then
    /// the buffered rows replayed through the standardisation.
    fn leave_prefix(&mut self, rows: u64, read: u64) -> Result<()> {
        let Some(Core::Prefix { d, buf }) = &mut self.core else {
            return Ok(());
        };
        let (d, buf) = (*d, std::mem::take(buf));
        self.prefix_bytes = self.prefix_bytes.max((buf.capacity() * 8) as u64);
        let mut m = Moments::new(d);
        m.update(&buf);
        let what = format!(" in the first {} rows (the prefix the mean is taken from; shuffle = true or frobenius = \"exact\" takes it from all the rows)", m.rows());
        let mut standardise = self.standardise_from(&m, &what)?;
        let standardised = standardise.apply(&buf);
        let prefix_total: f64 = standardised.iter().map(|x| x * x).sum();
        let frobenius_sq = prefix_total * rows as f64 / read.max(1) as f64;
        let mut core = self.stream_core(d, frobenius_sq)?;
        feed(&mut core, standardised)?;
        self.core = Some(Core::Stream { standardise, core });
        Ok(())
    }

    fn reader(&self) -> &DenseRowReader {
        self.reader.as_ref().expect("between batches")
    }

    fn reader_mut(&mut self) -> &mut DenseRowReader {
        self.reader.as_mut().expect("between batches")
    }

    /// The reader is taken out of `self` while the rows it converted (borrowed from the batch
    /// or its buffer) are fed, so they are not copied.
    fn main_update(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut reader = self.reader.take().expect("between batches");
        let seen = reader.rows_seen() + batch.num_rows() as u64;
        if let Some(Core::Stream { standardise, core }) = &mut self.core {
            if !standardise.identity() {
                // Standardised in the reader's buffer: one copy of the rows, not two.
                let fed = reader
                    .read_mut(batch)
                    .and_then(|(values, _, rows)| match rows {
                        0 => Ok(()),
                        _ => feed(core, standardise.apply_in_place(values)),
                    });
                self.reader = Some(reader);
                return fed;
            }
        }
        let fed = match reader.read(batch) {
            Ok(rows) if rows.rows == 0 => Ok(()),
            Ok(rows) => match &self.core {
                Some(_) => self.feed_main(rows.values, rows.dim, seen),
                None => self.new_core(rows.dim).and_then(|core| {
                    self.core = Some(core);
                    self.feed_main(rows.values, rows.dim, seen)
                }),
            },
            Err(e) => Err(e),
        };
        self.reader = Some(reader);
        fed
    }

    fn feed_main(&mut self, values: &[f64], d: usize, seen: u64) -> Result<()> {
        let prefix_rows = self.params.base.prefix_rows;
        match self.core.as_mut().expect("made above") {
            Core::Mergeable(m) => self.blocks.push(values, d, |b| m.update(b)),
            Core::Stream { standardise, core } => feed(core, standardise.apply(values)),
            Core::Prefix { buf, .. } => {
                // The prefix ends after exactly `prefix_rows` rows, wherever batches end.
                let buffered = (buf.len() / d) as u64;
                let room = prefix_rows.saturating_sub(buffered) as usize * d;
                let (head, tail) = values.split_at(room.min(values.len()));
                buf.reserve_exact(head.len());
                buf.extend_from_slice(head);
                if (buf.len() / d) as u64 == prefix_rows {
                    let total = self.info.and_then(|i| i.rows).unwrap_or(0);
                    let read = seen - (tail.len() / d) as u64;
                    self.leave_prefix(total.max(read), read)?;
                    if !tail.is_empty() {
                        return self.feed_main(tail, d, seen);
                    }
                }
                Ok(())
            }
        }
    }

    fn tables_from(&self, answer: &Answer) -> Result<Vec<OutputTable>> {
        let pca = &answer.pca;
        let (k, d) = (pca.components.len(), pca.mean.len());
        let n1 = (pca.rows.max(2) - 1) as f64;
        let pcs = |reps: usize| {
            UInt32Array::from_iter_values((0..k as u32).flat_map(|p| std::iter::repeat_n(p, reps)))
        };
        let components = RecordBatch::try_new(
            COMPONENTS_SCHEMA.clone(),
            vec![
                Arc::new(pcs(d)) as ArrayRef,
                Arc::new(UInt32Array::from_iter_values(
                    (0..k).flat_map(|_| 0..d as u32),
                )),
                Arc::new(Float64Array::from_iter_values(
                    pca.components.iter().flatten().copied(),
                )),
            ],
        )?;
        let spectrum = RecordBatch::try_new(
            SPECTRUM_SCHEMA.clone(),
            vec![
                Arc::new(pcs(1)) as ArrayRef,
                Arc::new(Float64Array::from(pca.eigenvalues.clone())),
                Arc::new(Float64Array::from_iter_values(
                    pca.eigenvalues.iter().map(|e| e / n1),
                )),
                Arc::new(Float64Array::from_iter_values(
                    pca.eigenvalues.iter().map(|e| e / pca.total),
                )),
                Arc::new(Float64Array::from(vec![pca.error_bound; k])),
            ],
        )?;
        let vector = |values: &[f64]| -> Result<RecordBatch> {
            Ok(RecordBatch::try_new(
                VECTOR_SCHEMA.clone(),
                vec![
                    Arc::new(UInt32Array::from_iter_values(0..d as u32)) as ArrayRef,
                    Arc::new(Float64Array::from(values.to_vec())),
                ],
            )?)
        };
        let p = &self.params;
        let stats = RecordBatch::try_new(
            STATS_SCHEMA.clone(),
            vec![
                Arc::new(StringArray::from(vec![p.base.algorithm.as_str()])) as ArrayRef,
                Arc::new(UInt64Array::from(vec![pca.rows])),
                Arc::new(UInt32Array::from(vec![d as u32])),
                Arc::new(UInt32Array::from(vec![k as u32])),
                Arc::new(Float64Array::from(vec![pca.total / n1])),
                Arc::new(BooleanArray::from(vec![p.center])),
                Arc::new(BooleanArray::from(vec![p.scale])),
                Arc::new(StringArray::from(vec![p.mean_from().map(|m| m.as_str())])),
                Arc::new(UInt64Array::from(vec![p.base.seed])),
                Arc::new(BooleanArray::from(vec![self.order_randomised])),
                Arc::new(UInt64Array::from(vec![answer.skipped])),
                Arc::new(UInt64Array::from(vec![pca
                    .state_bytes
                    .max(self.prefix_bytes)])),
                Arc::new(UInt32Array::from(vec![self.info.map_or(0, |i| i.scan)])),
            ],
        )?;
        let columns = serde_json::to_string(&p.base.columns).expect("strings serialise");
        let mut components = OutputTable::new("components", components);
        components
            .metadata
            .push((COLUMNS_METADATA.to_string(), columns));
        let mut tables = vec![
            components,
            OutputTable::new("spectrum", spectrum),
            OutputTable::new("mean", vector(&pca.mean)?),
        ];
        if let Some(scale) = &pca.scale {
            tables.push(OutputTable::new("scale", vector(scale)?));
        }
        tables.push(OutputTable::new("stats", stats));
        Ok(tables)
    }
}

fn feed(core: &mut StreamCore, rows: &[f64]) -> Result<()> {
    match core {
        StreamCore::RandomOrder(ro) => ro.update(rows)?,
        StreamCore::Oja(oja) => oja.update(rows),
    }
    Ok(())
}

impl Operator for PcaOp {
    fn next_pass(&self) -> Option<PassKind> {
        self.plan.get(self.at).map(|pass| match pass {
            Pass::Main if self.params.base.algorithm.is_order_sensitive() => PassKind::StreamOrder,
            _ => PassKind::AnyOrder,
        })
    }

    fn needs_row_count(&self) -> bool {
        self.plan.get(self.at) == Some(&Pass::Main)
            && self.params.base.algorithm.is_order_sensitive()
    }

    fn pass_name(&self) -> Option<String> {
        (self.plan.len() > 1).then(|| match self.plan.get(self.at) {
            Some(Pass::Moments) => "mean and variance".to_string(),
            Some(Pass::Main) | None => {
                format!("{} PCA", self.params.base.algorithm.as_str())
            }
        })
    }

    fn begin_pass(&mut self, info: &PassInfo) -> Result<()> {
        self.info = Some(*info);
        self.reader_mut().restart();
        if self.plan[self.at] == Pass::Main {
            self.order_randomised = info.order_randomised;
            if self.needs_row_count() && info.rows.is_none() {
                return Err(Error::Input(format!(
                    "algorithm `{}` needs the input's row count before its pass, and it is not known",
                    self.params.base.algorithm.as_str()
                )));
            }
        }
        Ok(())
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        match self.plan[self.at] {
            Pass::Main => self.main_update(batch),
            Pass::Moments => {
                let reader = self.reader.as_mut().expect("between batches");
                let rows = reader.read(batch)?;
                if rows.rows > 0 {
                    self.moments
                        .get_or_insert_with(|| Moments::new(rows.dim))
                        .update(rows.values);
                }
                Ok(())
            }
        }
    }

    fn end_pass(&mut self) -> Result<()> {
        let pass = self.plan[self.at];
        self.at += 1;
        if pass == Pass::Moments {
            if self.moments.is_none() {
                return Err(self.no_rows_error());
            }
            return Ok(());
        }
        let read = self.reader().rows_seen();
        if self.core.is_none() {
            return Err(self.no_rows_error());
        }
        if let Some(Core::Mergeable(m)) = &mut self.core {
            self.blocks.flush(|b| m.update(b))?;
        }
        // A stream shorter than the prefix: its mean and `‖A‖_F²` are exact.
        self.leave_prefix(read, read)?;
        let core = self.core.take().expect("checked");
        let pca = match core {
            Core::Mergeable(m) if self.params.base.incremental => {
                self.answer = Some(self.merged_answer(Some(m), read)?);
                return Ok(());
            }
            Core::Mergeable(m) => self.finish_mergeable(&m)?,
            Core::Stream { standardise, core } => {
                let top = match &core {
                    StreamCore::RandomOrder(ro) => ro.finish()?,
                    StreamCore::Oja(oja) => oja.finish()?,
                };
                if top.rows < 2 {
                    return Err(Error::Input(format!(
                        "PCA needs at least 2 rows (the variance of {} row(s) is undefined)",
                        top.rows
                    )));
                }
                Pca {
                    components: vec![top.vector],
                    eigenvalues: vec![top.eigenvalue],
                    total: top.frobenius_sq,
                    mean: standardise.mean,
                    scale: standardise.scale,
                    rows: top.rows,
                    error_bound: None,
                    state_bytes: top.state_bytes,
                }
            }
            Core::Prefix { .. } => unreachable!("the prefix was left above"),
        };
        self.answer = Some(Answer {
            pca,
            rows_read: read,
            skipped: self.reader().skipped(),
        });
        Ok(())
    }

    fn rows_read(&self) -> u64 {
        self.answer.as_ref().map_or(0, |a| a.rows_read)
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<OutputTable>> {
        if self.answer.is_none() && self.params.base.incremental {
            // No new files: the previous state is the answer.
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
