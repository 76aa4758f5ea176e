//! Proxy mode: train a small classifier in the pipeline and score every row with it — for
//! tables that have features and labels but no model (Paul et al., arXiv:2107.07075, score
//! examples with networks trained a few epochs; §3 of `docs/algorithms.md`).
//!
//! Passes over the input, each streamed (the table is never held in memory):
//! 1. **prepare** — the number of classes (`max label + 1` unless `classes = K`), the features'
//!    means and standard deviations; the model sees standardised features `(x − μ)/σ` (a
//!    constant feature gets `σ = 1`), so one learning rate suits any scale;
//! 2. **`epochs` training passes** — `seeds` independent models side by side (seeded
//!    Gaussian init and their own row order), minibatch SGD on cross-entropy
//!    ([`crate::prune::proxy::Proxy::sgd_step`]). Row order: each seed draws rows through its
//!    own **shuffle buffer** of `shuffle_buffer` rows (a full buffer emits a uniformly chosen
//!    row and takes the new one in its place; the rest is emitted in random order at the end
//!    of the pass) — the streaming stand-in for a per-epoch permutation, which would need an
//!    out-of-core shuffle per seed and epoch;
//! 3. **scoring** — EL2N and exact GraNd of every row under every seed's model, averaged over
//!    seeds (with their standard deviation), written to the per-id scratch file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, RecordBatch, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::sql::ByIdWriter;
use super::{by_id_schema, PruneScoresParams, ScoresInput};
use crate::hash::{hash64, Key};
use crate::operators::{Operator, OutputTable, PassInfo, PassKind};
use crate::prune::proxy::{Proxy, Scratch, StepStats};
use crate::prune::{mean_std, Target};
use crate::rows::{DenseRowReader, OnInvalid};
use crate::{Error, Result};

/// The `[stages.NAME.proxy]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyParams {
    /// Width of the hidden ReLU layer; `None` for multinomial logistic regression.
    pub hidden: Option<usize>,
    pub epochs: u32,
    /// Independent training runs the scores are averaged over.
    pub seeds: u32,
    pub learning_rate: f64,
    pub batch_size: usize,
    /// Rows each seed's shuffle buffer holds (see the module docs).
    pub shuffle_buffer: usize,
}

impl Default for ProxyParams {
    fn default() -> Self {
        ProxyParams {
            hidden: None,
            epochs: 5,
            seeds: 5,
            learning_rate: 0.1,
            batch_size: 32,
            shuffle_buffer: 4096,
        }
    }
}

static TRAINING: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("seed", DataType::UInt32, false),
        Field::new("epoch", DataType::UInt32, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("accuracy", DataType::Float64, false),
    ]))
});

/// The `training` table: per seed (0-based) and epoch (1-based), the mean cross-entropy and
/// accuracy over the epoch's minibatches, each measured before its step.
pub fn training_schema() -> SchemaRef {
    Arc::clone(&TRAINING)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prepare,
    Train,
    Score,
    Done,
}

/// One seed's model, its row order and its minibatch.
struct Run {
    model: Proxy,
    rng: ChaCha8Rng,
    buf_x: Vec<f64>,
    buf_y: Vec<i64>,
    mb_x: Vec<f64>,
    /// The minibatch's targets, kept as the core takes them (no conversion per step).
    mb_y: Vec<Target<'static>>,
    grad: Vec<f64>,
    epoch: StepStats,
}

/// The proxy-mode operator; see the module docs.
pub struct ProxyScoresOp {
    p: PruneScoresParams,
    proxy: ProxyParams,
    reader: DenseRowReader,
    id: usize,
    label: usize,
    by_id: PathBuf,
    by_id_schema: SchemaRef,
    phase: Phase,
    epoch: u32,
    rows: u64,
    label_min: i64,
    label_max: i64,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    classes: usize,
    runs: Vec<Run>,
    training: Vec<(u32, u32, StepStats)>,
    writer: Option<ByIdWriter>,
    x: Vec<f64>,
    y: Vec<i64>,
    scratch: Scratch,
}

impl ProxyScoresOp {
    /// `schema` is the stage's projected input; the per-id scores go to `by_id`.
    pub fn new(p: PruneScoresParams, schema: &Schema, by_id: &Path) -> Result<Self> {
        let ScoresInput::Features { columns, proxy } = &p.input else {
            unreachable!("built for proxy mode only")
        };
        let reader = DenseRowReader::new(schema, columns, OnInvalid::Error)?;
        let id = schema.index_of(&p.id)?;
        let label = schema.index_of(&p.label)?;
        let by_id_schema = by_id_schema(
            schema.field(id).data_type().clone(),
            schema.field(label).data_type().clone(),
        );
        Ok(ProxyScoresOp {
            proxy: proxy.clone(),
            reader,
            id,
            label,
            by_id: by_id.to_path_buf(),
            by_id_schema,
            phase: Phase::Prepare,
            epoch: 0,
            rows: 0,
            label_min: i64::MAX,
            label_max: i64::MIN,
            sum: Vec::new(),
            sum_sq: Vec::new(),
            mean: Vec::new(),
            inv_std: Vec::new(),
            classes: 0,
            runs: Vec::new(),
            training: Vec::new(),
            writer: None,
            x: Vec::new(),
            y: Vec::new(),
            scratch: Scratch::default(),
            p,
        })
    }

    /// Number of training runs (the `runs` the masks expect every id to have).
    pub fn seeds(&self) -> u64 {
        self.proxy.seeds as u64
    }

    /// Reads one batch into `self.x` (standardised once the means are known) and `self.y`.
    fn read(&mut self, batch: &RecordBatch) -> Result<usize> {
        let first_row = self.reader.rows_seen();
        let rows = self.reader.read(batch)?;
        let (n, d) = (rows.rows, rows.dim);
        self.x.clear();
        self.x.extend_from_slice(rows.values);
        let labels = cast(batch.column(self.label), &DataType::Int64)?;
        let labels = labels.as_primitive::<Int64Type>();
        if let Some(i) = (0..labels.len()).find(|&i| labels.is_null(i)) {
            return Err(Error::Input(format!(
                "column `{}`: row {} is null (every row needs a label)",
                self.p.label,
                first_row + i as u64
            )));
        }
        self.y.clear();
        self.y.extend_from_slice(labels.values());
        if !self.mean.is_empty() {
            for row in self.x.chunks_exact_mut(d) {
                for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.inv_std) {
                    *v = (*v - m) * s;
                }
            }
        }
        Ok(n)
    }

    fn prepare(&mut self, n: usize) {
        let d = self.reader.dim().unwrap_or(0);
        if self.sum.len() != d {
            self.sum = vec![0.0; d];
            self.sum_sq = vec![0.0; d];
        }
        for row in self.x.chunks_exact(d.max(1)).take(n) {
            for ((s, q), v) in self.sum.iter_mut().zip(&mut self.sum_sq).zip(row) {
                *s += v;
                *q += v * v;
            }
        }
        for &y in &self.y {
            self.label_min = self.label_min.min(y);
            self.label_max = self.label_max.max(y);
        }
        self.rows += n as u64;
    }

    /// After the prepare pass: classes, standardisation, models.
    fn start_training(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Err(Error::Input(
                "the input has no rows: nothing to train on".into(),
            ));
        }
        let k = match self.p.classes {
            Some(k) => k,
            None => (self.label_max + 1).max(0) as usize,
        };
        if self.label_min < 0 || self.label_max >= k as i64 {
            let bad = if self.label_min < 0 {
                self.label_min
            } else {
                self.label_max
            };
            return Err(Error::Input(format!(
                "column `{}`: label {bad} is outside [0, {k}) for {k} classes",
                self.p.label
            )));
        }
        if k < 2 {
            return Err(Error::Input(format!(
                "column `{}`: every label is 0 — a classifier needs at least 2 classes \
                 (set classes = K if some classes are absent from this table)",
                self.p.label
            )));
        }
        self.classes = k;
        let n = self.rows as f64;
        self.mean = self.sum.iter().map(|s| s / n).collect();
        self.inv_std = self
            .sum_sq
            .iter()
            .zip(&self.mean)
            .map(|(q, m)| {
                let var = (q / n - m * m).max(0.0);
                if var > 1e-24 {
                    1.0 / var.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let d = self.mean.len();
        self.runs = (0..self.proxy.seeds)
            .map(|s| {
                let seed = hash64(Key::UInt(s as u64), self.p.seed);
                Ok(Run {
                    model: Proxy::new(d, k, self.proxy.hidden, seed)?,
                    rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5348_5546_464c_4521),
                    buf_x: Vec::with_capacity(self.proxy.shuffle_buffer * d),
                    buf_y: Vec::with_capacity(self.proxy.shuffle_buffer),
                    mb_x: Vec::with_capacity(self.proxy.batch_size * d),
                    mb_y: Vec::with_capacity(self.proxy.batch_size),
                    grad: Vec::new(),
                    epoch: StepStats::default(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    fn train(&mut self, n: usize) -> Result<()> {
        let d = self.mean.len();
        let (cap, batch, lr) = (
            self.proxy.shuffle_buffer,
            self.proxy.batch_size,
            self.proxy.learning_rate,
        );
        for run in &mut self.runs {
            for (x, &y) in self.x.chunks_exact(d).zip(&self.y).take(n) {
                if run.buf_y.len() < cap {
                    run.buf_x.extend_from_slice(x);
                    run.buf_y.push(y);
                    continue;
                }
                let j = run.rng.random_range(0..cap);
                run.mb_x.extend_from_slice(&run.buf_x[j * d..(j + 1) * d]);
                run.mb_y.push(Target::Class(run.buf_y[j]));
                run.buf_x[j * d..(j + 1) * d].copy_from_slice(x);
                run.buf_y[j] = y;
                if run.mb_y.len() == batch {
                    step(run, lr, &mut self.scratch)?;
                }
            }
        }
        Ok(())
    }

    fn end_epoch(&mut self) -> Result<()> {
        let d = self.mean.len();
        let (batch, lr) = (self.proxy.batch_size, self.proxy.learning_rate);
        self.epoch += 1;
        for (s, run) in self.runs.iter_mut().enumerate() {
            // Drain the buffer in random order.
            while !run.buf_y.is_empty() {
                let len = run.buf_y.len();
                let j = run.rng.random_range(0..len);
                run.mb_x.extend_from_slice(&run.buf_x[j * d..(j + 1) * d]);
                run.mb_y.push(Target::Class(run.buf_y.swap_remove(j)));
                let last = (len - 1) * d;
                if j != len - 1 {
                    run.buf_x.copy_within(last..last + d, j * d);
                }
                run.buf_x.truncate(last);
                if run.mb_y.len() == batch {
                    step(run, lr, &mut self.scratch)?;
                }
            }
            step(run, lr, &mut self.scratch)?;
            self.training.push((s as u32, self.epoch, run.epoch));
            run.epoch = StepStats::default();
        }
        Ok(())
    }

    fn score(&mut self, batch: &RecordBatch, n: usize) -> Result<()> {
        let d = self.mean.len();
        let seeds = self.runs.len();
        let (mut el2n, mut el2n_std, mut grand, mut grand_std) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut es, mut gs) = (Vec::with_capacity(seeds), Vec::with_capacity(seeds));
        for (x, &y) in self.x.chunks_exact(d).zip(&self.y).take(n) {
            es.clear();
            gs.clear();
            for run in &self.runs {
                let (e, g) = run
                    .model
                    .score(x, Target::Class(y), &mut self.scratch, None)?;
                es.push(e);
                gs.push(g);
            }
            let (m, s) = mean_std(&mut es);
            el2n.push(m);
            el2n_std.push(s);
            let (m, s) = mean_std(&mut gs);
            grand.push(m);
            grand_std.push(s);
        }
        let k = self.classes as u32;
        let label = Arc::clone(batch.column(self.label));
        let columns: Vec<ArrayRef> = vec![
            Arc::clone(batch.column(self.id)),
            Arc::clone(&label),
            label,
            Arc::new(Float64Array::from(el2n)),
            Arc::new(Float64Array::from(el2n_std)),
            Arc::new(Float64Array::from(grand)),
            Arc::new(Float64Array::from(grand_std)),
            Arc::new(UInt32Array::from(vec![seeds as u32; n])),
            Arc::new(UInt64Array::from(vec![1u64; n])),
            Arc::new(UInt64Array::from(vec![1u64; n])),
            Arc::new(UInt32Array::from(vec![k; n])),
            Arc::new(UInt32Array::from(vec![k; n])),
        ];
        let out = RecordBatch::try_new(Arc::clone(&self.by_id_schema), columns)?;
        self.writer
            .as_mut()
            .expect("opened when scoring begins")
            .write(&out)?;
        Ok(())
    }
}

/// One SGD step on the run's minibatch (if any), adding to its epoch's loss and accuracy.
fn step(run: &mut Run, lr: f64, scratch: &mut Scratch) -> Result<()> {
    if run.mb_y.is_empty() {
        return Ok(());
    }
    run.epoch += run
        .model
        .sgd_step(&run.mb_x, &run.mb_y, lr, scratch, &mut run.grad)?;
    run.mb_x.clear();
    run.mb_y.clear();
    Ok(())
}

impl Operator for ProxyScoresOp {
    fn next_pass(&self) -> Option<PassKind> {
        (self.phase != Phase::Done).then_some(PassKind::AnyOrder)
    }

    fn pass_name(&self) -> Option<String> {
        Some(match self.phase {
            Phase::Prepare => "proxy classes and feature scales".into(),
            Phase::Train => format!(
                "proxy training, epoch {} of {}",
                self.epoch + 1,
                self.proxy.epochs
            ),
            Phase::Score | Phase::Done => "proxy scores".into(),
        })
    }

    fn begin_pass(&mut self, _info: &PassInfo) -> Result<()> {
        self.reader.restart();
        if self.phase == Phase::Score {
            self.writer = Some(ByIdWriter::create(&self.by_id, &self.by_id_schema)?);
        }
        Ok(())
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = self.read(batch)?;
        match self.phase {
            Phase::Prepare => {
                self.prepare(n);
                Ok(())
            }
            Phase::Train => self.train(n),
            Phase::Score => self.score(batch, n),
            Phase::Done => unreachable!("no pass after the scoring pass"),
        }
    }

    fn end_pass(&mut self) -> Result<()> {
        match self.phase {
            Phase::Prepare => {
                self.start_training()?;
                self.phase = if self.proxy.epochs == 0 {
                    Phase::Score
                } else {
                    Phase::Train
                };
            }
            Phase::Train => {
                self.end_epoch()?;
                if self.epoch == self.proxy.epochs {
                    self.phase = Phase::Score;
                }
            }
            Phase::Score => {
                self.writer.take().expect("opened").finish()?;
                self.phase = Phase::Done;
            }
            Phase::Done => {}
        }
        Ok(())
    }

    fn rows_read(&self) -> u64 {
        self.rows
    }

    fn finish(self: Box<Self>) -> Result<Vec<OutputTable>> {
        let t = &self.training;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(t.iter().map(|r| r.0))),
            Arc::new(UInt32Array::from_iter_values(t.iter().map(|r| r.1))),
            Arc::new(UInt64Array::from_iter_values(t.iter().map(|r| r.2.rows))),
            Arc::new(Float64Array::from_iter_values(
                t.iter().map(|r| r.2.loss / r.2.rows.max(1) as f64),
            )),
            Arc::new(Float64Array::from_iter_values(
                t.iter()
                    .map(|r| r.2.correct as f64 / r.2.rows.max(1) as f64),
            )),
        ];
        Ok(vec![OutputTable::new(
            "training",
            RecordBatch::try_new(training_schema(), columns)?,
        )])
    }
}
