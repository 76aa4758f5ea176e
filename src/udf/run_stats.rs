//! `run_stats(score, run)`: one aggregate for what `prune_scores` needs per id — the mean and
//! sample standard deviation of the group's scores (nulls ignored; `n − 1`, null for fewer
//! than two), the number of distinct non-null `run` values among its rows, its rows and its
//! non-null scores.
//!
//! The scores are summed in ascending order ([`crate::prune::mean_std`], as `list_mean` and
//! `list_stddev` do), so the same rows give the same bits whatever order a parallel group-by
//! met them in: reruns are byte-identical. It replaces `list_mean(array_agg(score))`,
//! `list_stddev(array_agg(score))`, `count(DISTINCT run)`, `count(*)` and `count(score)` — five
//! accumulators, two of them
//! building a list per group — with one that keeps a flat log of `(group, run, score)` entries
//! and sorts it by group (a counting sort) only when the groups are emitted. It supports
//! DataFusion's skipping of partial aggregation (each row becomes a one-entry state), which
//! is what a table of mostly distinct ids needs.
//!
//! Runs are compared by key: an integer run by its value (exact); a string run by the 64-bit
//! [`crate::hash::hash64`] of its bytes. Two different names with the same hash would count as
//! one run, which can only make an id look as if a `(id, run)` pair repeated — an error, never a
//! wrong average — and for 1 000 run names happens with probability below 10⁻¹³.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, StructArray, UInt32Array,
    UInt64Array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type, UInt64Type};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

use crate::hash::{hash64, Key};
use crate::prune::mean_std;
use crate::rows::is_string;

/// The aggregate's name in SQL.
pub const NAME: &str = "run_stats";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RunStats {
    signature: Signature,
}

impl RunStats {
    pub fn new() -> Self {
        RunStats {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for RunStats {
    fn default() -> Self {
        Self::new()
    }
}

/// The result's fields: `mean Float64`, `std Float64`, `runs UInt32`, `rows UInt64`,
/// `scored UInt64`.
fn result_fields() -> Fields {
    Fields::from(vec![
        Field::new("mean", DataType::Float64, true),
        Field::new("std", DataType::Float64, true),
        Field::new("runs", DataType::UInt32, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("scored", DataType::UInt64, false),
    ])
}

impl AggregateUDFImpl for RunStats {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        let score_ok = args[0].is_numeric() || args[0] == DataType::Null;
        let run_ok = args[1].is_integer() || is_string(&args[1]) || args[1] == DataType::Null;
        if !score_ok || !run_ok {
            return plan_err!(
                "{NAME}: got ({}, {}); expected {NAME}(score, run) with a numeric score and an \
                 integer or string run",
                args[0],
                args[1]
            );
        }
        Ok(DataType::Struct(result_fields()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let list = |name: &str, item: DataType| {
            Arc::new(Field::new(
                format!("{}[{name}]", args.name),
                DataType::List(Arc::new(Field::new_list_field(item, true))),
                false,
            ))
        };
        Ok(vec![
            list("runs", DataType::UInt64),
            list("scores", DataType::Float64),
        ])
    }

    /// Never null: a group without scores has null `mean` and `std`, and zero counts.
    fn is_nullable(&self) -> bool {
        false
    }

    fn default_value(&self, _data_type: &DataType) -> DfResult<ScalarValue> {
        SingleGroup(RunStatsGroups::default()).evaluate()
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(SingleGroup(RunStatsGroups::default())))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(RunStatsGroups::default()))
    }
}

/// One row of a group: its run key and score, each possibly null.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    group: u32,
    has_run: bool,
    has_score: bool,
    run: u64,
    score: f64,
}

/// Every group's entries, in arrival order; sorted by group when emitted.
#[derive(Debug, Default)]
struct RunStatsGroups {
    entries: Vec<Entry>,
    groups: usize,
}

/// `array`'s run keys (see the module docs) and its validity.
fn run_keys(array: &ArrayRef) -> DfResult<(Vec<u64>, Option<NullBuffer>)> {
    let t = array.data_type();
    if *t == DataType::UInt64 {
        let a = array.as_primitive::<UInt64Type>();
        return Ok((a.values().to_vec(), a.nulls().cloned()));
    }
    if t.is_integer() || *t == DataType::Null {
        let a = cast(array, &DataType::Int64)?;
        let a = a.as_primitive::<Int64Type>();
        let keys = a.values().iter().map(|&v| v as u64).collect();
        return Ok((keys, a.nulls().cloned()));
    }
    if is_string(t) {
        let a = cast(array, &DataType::Utf8)?;
        let a = a.as_string::<i32>();
        let keys = (0..a.len())
            .map(|i| hash64(Key::Str(a.value(i)), 0))
            .collect();
        return Ok((keys, a.nulls().cloned()));
    }
    exec_err!("{NAME}: run is {t}; expected an integer or a string")
}

/// Calls `f(i, entry)` for each row `i` the filter keeps, in order (the entry's group is 0).
fn for_each_row(
    values: &[ArrayRef],
    filter: Option<&BooleanArray>,
    mut f: impl FnMut(usize, Entry),
) -> DfResult<()> {
    let s = scores(&values[0])?;
    let (runs, run_nulls) = run_keys(&values[1])?;
    for (i, &run) in runs.iter().enumerate() {
        if filter.is_some_and(|f| !f.is_valid(i) || !f.value(i)) {
            continue;
        }
        f(
            i,
            Entry {
                group: 0,
                has_run: run_nulls.as_ref().is_none_or(|n| n.is_valid(i)),
                has_score: s.is_valid(i),
                run,
                score: s.value(i),
            },
        );
    }
    Ok(())
}

/// `array` as `Float64` scores.
fn scores(array: &ArrayRef) -> DfResult<Float64Array> {
    Ok(cast(array, &DataType::Float64)?.as_primitive().clone())
}

impl RunStatsGroups {
    fn set_groups(&mut self, total: usize) -> DfResult<()> {
        if total > u32::MAX as usize {
            return exec_err!("{NAME}: more than {} groups in one partition", u32::MAX);
        }
        self.groups = self.groups.max(total);
        Ok(())
    }

    /// Takes the entries of the groups `emit_to` names, sorted by group (stable: arrival order
    /// within a group), with each group's start; later groups are renumbered from 0.
    fn take(&mut self, emit_to: EmitTo) -> (Vec<Entry>, Vec<usize>) {
        let n = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n.min(self.groups),
        };
        let mut starts = vec![0usize; n + 1];
        for e in &self.entries {
            if (e.group as usize) < n {
                starts[e.group as usize + 1] += 1;
            }
        }
        for g in 0..n {
            starts[g + 1] += starts[g];
        }
        let mut sorted = vec![Entry::default(); starts[n]];
        let mut next = starts.clone();
        let mut rest = Vec::new();
        for e in self.entries.drain(..) {
            let g = e.group as usize;
            if g < n {
                sorted[next[g]] = e;
                next[g] += 1;
            } else {
                rest.push(Entry {
                    group: e.group - n as u32,
                    ..e
                });
            }
        }
        self.entries = rest;
        self.groups -= n;
        (sorted, starts)
    }
}

impl GroupsAccumulator for RunStatsGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.set_groups(total_num_groups)?;
        self.entries.reserve(group_indices.len());
        for_each_row(values, opt_filter, |i, e| {
            self.entries.push(Entry {
                group: group_indices[i] as u32,
                ..e
            })
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        let (entries, starts) = self.take(emit_to);
        let n = starts.len() - 1;
        let (mut means, mut stds) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut runs, mut rows) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut scored = Vec::with_capacity(n);
        let (mut values, mut keys) = (Vec::new(), Vec::new());
        for g in 0..n {
            let group = &entries[starts[g]..starts[g + 1]];
            values.clear();
            values.extend(group.iter().filter(|e| e.has_score).map(|e| e.score));
            keys.clear();
            keys.extend(group.iter().filter(|e| e.has_run).map(|e| e.run));
            keys.sort_unstable();
            keys.dedup();
            let (mean, std) = mean_std(&mut values);
            means.push(mean);
            stds.push(std);
            runs.push(keys.len() as u32);
            rows.push(group.len() as u64);
            scored.push(values.len() as u64);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Float64Array::from(means)),
            Arc::new(Float64Array::from(stds)),
            Arc::new(UInt32Array::from(runs)),
            Arc::new(UInt64Array::from(rows)),
            Arc::new(UInt64Array::from(scored)),
        ];
        Ok(Arc::new(StructArray::try_new(
            result_fields(),
            columns,
            None,
        )?))
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        let (entries, starts) = self.take(emit_to);
        Ok(state_arrays(&entries, &starts))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.set_groups(total_num_groups)?;
        let (runs, scores) = (values[0].as_list::<i32>(), values[1].as_list::<i32>());
        let run_values = runs.values().as_primitive::<UInt64Type>();
        let score_values = scores
            .values()
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        let offsets = runs.value_offsets();
        for (i, &g) in group_indices.iter().enumerate() {
            for j in offsets[i] as usize..offsets[i + 1] as usize {
                self.entries.push(Entry {
                    group: g as u32,
                    has_run: run_values.is_valid(j),
                    has_score: score_values.is_valid(j),
                    run: run_values.value(j),
                    score: score_values.value(j),
                });
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        let rows = values[0].len();
        let mut entries = Vec::with_capacity(rows);
        let mut starts = Vec::with_capacity(rows + 1);
        starts.push(0);
        for_each_row(values, opt_filter, |i, e| {
            // Row `i` starts here; rows filtered out since the last kept one end here too.
            starts.resize(i + 1, entries.len());
            entries.push(e);
        })?;
        starts.resize(rows + 1, entries.len());
        Ok(state_arrays(&entries, &starts))
    }

    fn size(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>() + std::mem::size_of::<Self>()
    }
}

/// The state: per group a list of run keys and a list of scores (nulls kept), `starts[g]..
/// starts[g + 1]` of `entries` being group `g`'s.
fn state_arrays(entries: &[Entry], starts: &[usize]) -> Vec<ArrayRef> {
    let offsets = OffsetBuffer::new(starts.iter().map(|&s| s as i32).collect());
    let runs = UInt64Array::from_iter(entries.iter().map(|e| e.has_run.then_some(e.run)));
    let scores = Float64Array::from_iter(entries.iter().map(|e| e.has_score.then_some(e.score)));
    let list = |values: ArrayRef| -> ArrayRef {
        let item = Arc::new(Field::new_list_field(values.data_type().clone(), true));
        Arc::new(ListArray::new(item, offsets.clone(), values, None))
    };
    vec![list(Arc::new(runs)), list(Arc::new(scores))]
}

/// The aggregate without a GROUP BY: the groups accumulator with one group.
#[derive(Debug)]
struct SingleGroup(RunStatsGroups);

impl SingleGroup {
    fn one(array: DfResult<ArrayRef>) -> DfResult<ScalarValue> {
        ScalarValue::try_from_array(&array?, 0)
    }
}

impl Accumulator for SingleGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let zeros = vec![0; values[0].len()];
        self.0.update_batch(values, &zeros, None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let zeros = vec![0; states[0].len()];
        self.0.merge_batch(states, &zeros, 1)
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.0.set_groups(1)?;
        self.0
            .state(EmitTo::All)?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.0.set_groups(1)?;
        Self::one(self.0.evaluate(EmitTo::All))
    }

    fn size(&self) -> usize {
        self.0.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use proptest::prelude::*;

    /// What `run_stats` must give for one group's `(run, score)` rows, computed directly.
    fn direct(rows: &[(Option<i64>, Option<f64>)]) -> Stats {
        let mut scores: Vec<f64> = rows.iter().filter_map(|r| r.1).collect();
        let mut runs: Vec<i64> = rows.iter().filter_map(|r| r.0).collect();
        runs.sort_unstable();
        runs.dedup();
        let (m, s) = mean_std(&mut scores);
        (
            m,
            s,
            runs.len() as u32,
            rows.len() as u64,
            scores.len() as u64,
        )
    }

    type Stats = (Option<f64>, Option<f64>, u32, u64, u64);

    fn results(a: &ArrayRef) -> Vec<Stats> {
        let s = a.as_struct();
        let f = |i: usize| {
            s.column(i)
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .clone()
        };
        let (mean, std) = (f(0), f(1));
        let runs = s
            .column(2)
            .as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
        let rows = s.column(3).as_primitive::<UInt64Type>();
        let scored = s.column(4).as_primitive::<UInt64Type>();
        (0..s.len())
            .map(|i| {
                (
                    mean.is_valid(i).then(|| mean.value(i)),
                    std.is_valid(i).then(|| std.value(i)),
                    runs.value(i),
                    rows.value(i),
                    scored.value(i),
                )
            })
            .collect()
    }

    fn batch(rows: &[(usize, Option<i64>, Option<f64>)]) -> (Vec<ArrayRef>, Vec<usize>) {
        let scores: ArrayRef = Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2)));
        let runs: ArrayRef = Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1)));
        (vec![scores, runs], rows.iter().map(|r| r.0).collect())
    }

    proptest! {
        /// Straight updates, and rows sent through a partial state (`convert_to_state`, or
        /// `state` of an accumulator that saw them) merged into another in a shuffled order,
        /// all give the direct answer to the bit, also when the first groups are emitted
        /// early (`EmitTo::First`).
        #[test]
        fn groups_match_the_direct_computation_whatever_the_path(
            rows in proptest::collection::vec(
                (0usize..6, proptest::option::weighted(0.9, 0i64..4),
                 proptest::option::weighted(0.9, -10.0f64..10.0)), 0..60),
            split in 0usize..60,
            first in 0usize..7,
        ) {
            let groups = 6;
            let want: Vec<_> = (0..groups)
                .map(|g| {
                    let of: Vec<_> = rows.iter().filter(|r| r.0 == g).map(|r| (r.1, r.2)).collect();
                    direct(&of)
                })
                .collect();
            // Straight.
            let mut acc = RunStatsGroups::default();
            let (values, idx) = batch(&rows);
            acc.update_batch(&values, &idx, None, groups).unwrap();
            let mut got = results(&acc.evaluate(EmitTo::First(first.min(groups))).unwrap());
            got.extend(results(&acc.evaluate(EmitTo::All).unwrap()));
            prop_assert_eq!(&got, &want);
            // Through states: the tail as one-row states, the head through an accumulator's
            // state, merged tail first.
            let split = split.min(rows.len());
            let (head, tail) = rows.split_at(split);
            let mut partial = RunStatsGroups::default();
            let (hv, hi) = batch(head);
            partial.update_batch(&hv, &hi, None, groups).unwrap();
            let head_state = partial.state(EmitTo::All).unwrap();
            let (tv, ti) = batch(tail);
            let tail_state = RunStatsGroups::default().convert_to_state(&tv, None).unwrap();
            let mut fin = RunStatsGroups::default();
            fin.merge_batch(&tail_state, &ti, groups).unwrap();
            fin.merge_batch(&head_state, &(0..groups).collect::<Vec<_>>(), groups).unwrap();
            prop_assert_eq!(results(&fin.evaluate(EmitTo::All).unwrap()), want);
        }
    }

    /// String runs count by name; a filtered-out row is not a row of its group.
    #[test]
    fn string_runs_and_filters() {
        let scores: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0]));
        let runs: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a", "c"]));
        let filter = BooleanArray::from(vec![true, true, true, false]);
        let values = [scores, runs];
        let mut acc = RunStatsGroups::default();
        acc.update_batch(&values, &[0, 0, 0, 0], Some(&filter), 1)
            .unwrap();
        let got = results(&acc.evaluate(EmitTo::All).unwrap());
        assert_eq!(got, vec![(Some(2.0), Some(1.0), 2, 3, 3)]);
        // The same through one-row states: the filtered row's list is empty.
        let filter = BooleanArray::from(vec![true, false, true, false]);
        let states = acc.convert_to_state(&values, Some(&filter)).unwrap();
        let mut fin = RunStatsGroups::default();
        fin.merge_batch(&states, &[0, 0, 0, 0], 1).unwrap();
        let got = results(&fin.evaluate(EmitTo::All).unwrap());
        assert_eq!(got, vec![(Some(2.0), Some(2f64.sqrt()), 1, 2, 2)]);
    }
}
