//! Reading a plan's rows in a fixed order — the files' own order, the same on every run and
//! every machine — while several partitions decode at once.
//!
//! Stream-order algorithms (`random-order`, `oja`) and the shuffle's seeded assignment of rows
//! to spill files depend on the order rows arrive in, so a pipeline reads its inputs partition
//! 0 to the end, then partition 1, … rather than in whatever order batches arrive
//! (`execute_stream`). Reading them one at a time, though, decodes on one core: the scan is
//! split into byte ranges of about [`CHUNK_BYTES`] (more partitions than cores), up to
//! [`decoders`] of them decode at once on spawned tasks, and the consumer takes their batches
//! in partition order. Up to two partitions per decoder are in flight (a decoder that has
//! finished its partition starts the next while the consumer is still on an earlier one), and
//! each may hold at most [`READ_AHEAD_BYTES`] / (2 · `decoders`) decoded bytes that the
//! consumer has not taken, so memory stays bounded whatever the input size.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// The file bytes one partition of an ordered scan covers (DataFusion splits files into byte
/// ranges; a row group belongs to the range holding its start, so a partition is at least
/// one row group).
pub const CHUNK_BYTES: u64 = 16 << 20;

/// Decoded bytes the partitions ahead of the consumer may hold between them.
pub const READ_AHEAD_BYTES: usize = 512 << 20;

/// Partitions queued per decoder: a decoder that has finished its partition (its batches wait
/// for the consumer) starts the next one, up to this many partitions per decoder in flight,
/// so the cores keep decoding while the consumer is still on an earlier partition.
const LOOKAHEAD: usize = 2;

/// How many partitions decode at once: the machine's cores. (The order of the rows does not
/// depend on it, only the speed.)
pub fn decoders() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The session state to plan an ordered scan with, given a plan of the same query (planned
/// with the session's defaults, to see which files it reads) and its row count if known: file
/// scans split into about `chunk_bytes` ([`CHUNK_BYTES`] in a run) each — a number of
/// partitions that depends on the input, not on the machine's cores, so batch boundaries are
/// the same everywhere — batches of about [`BATCH_BYTES`], and no work stealing between
/// partitions: DataFusion lets an idle partition read a sibling's files
/// (`enable_file_stream_work_stealing`), which would break the order partitions stand for.
pub fn ordered_state(
    ctx: &SessionContext,
    plan: &Arc<dyn ExecutionPlan>,
    rows: Option<u64>,
    chunk_bytes: u64,
) -> SessionState {
    let mut state = ctx.state();
    let options = state.config_mut().options_mut();
    options.execution.enable_file_stream_work_stealing = false;
    let bytes = scanned_bytes(plan);
    options.execution.target_partitions =
        bytes.div_ceil(chunk_bytes.max(1)).clamp(1, 4096) as usize;
    if let Some(rows) = rows.filter(|&n| n > 0 && bytes > 0) {
        set_batch_rows(&mut state, bytes, rows);
    }
    state
}

/// Sets the batch size of `state` for reading `bytes` over `rows` (> 0) rows: about
/// [`BATCH_BYTES`] a batch, never more rows than the configured size nor fewer than 512.
fn set_batch_rows(state: &mut SessionState, bytes: u64, rows: u64) {
    let options = state.config_mut().options_mut();
    let row_bytes = bytes.div_ceil(rows).max(1);
    let default = options.execution.batch_size.get() as u64;
    let batch = (BATCH_BYTES / row_bytes).clamp(512.min(default), default) as usize;
    if let Ok(batch) = datafusion::config::ConfigNonZeroUsize::try_new(batch) {
        options.execution.batch_size = batch;
    }
}

/// `frame` with batches of about [`BATCH_BYTES`] for the columns its file scans read, as
/// ordered scans have them: a query over wide rows (embeddings) reads fewer than DataFusion's
/// 8 192 per batch, one over narrow columns of the same files keeps 8 192. Judged from the
/// Parquet footers: the row counts, and the read columns' sizes when the statistics have them
/// all (flat columns), else the files' bytes; unchanged when a scan's row count is unknown.
pub async fn sized(frame: DataFrame) -> DfResult<DataFrame> {
    let plan = frame.clone().create_physical_plan().await?;
    let Some((bytes, rows)) = projected_size(&plan).filter(|&(b, n)| b > 0 && n > 0) else {
        return Ok(frame);
    };
    let (mut state, logical) = frame.into_parts();
    set_batch_rows(&mut state, bytes, rows);
    Ok(DataFrame::new(state, logical))
}

/// The bytes of the columns `plan`'s file scans read (see [`sized`]), and their rows.
fn projected_size(plan: &Arc<dyn ExecutionPlan>) -> Option<(u64, u64)> {
    let config = plan
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>());
    let own = match config {
        None => (0, 0),
        Some(config) => {
            let stats = config.statistics();
            let rows = *stats.num_rows.get_value()? as u64;
            let file = config.file_schema();
            let columns: Vec<usize> = config
                .projected_schema()
                .ok()?
                .fields()
                .iter()
                .filter_map(|f| file.index_of(f.name()).ok())
                .collect();
            // A nested column (a list) has no size in the statistics: then the files' bytes.
            let bytes = columns
                .iter()
                .map(|&i| Some(*stats.column_statistics.get(i)?.byte_size.get_value()? as u64))
                .sum::<Option<u64>>()
                .unwrap_or_else(|| scanned_bytes(plan));
            (bytes, rows)
        }
    };
    plan.children().into_iter().try_fold(own, |(b, n), child| {
        let (cb, cn) = projected_size(child)?;
        Some((b + cb, n + cn))
    })
}

/// The bytes a batch of an ordered scan aims at, judged from the files' bytes per row: wide
/// rows come in fewer than DataFusion's 8192 per batch. A 32 MiB batch (8192 rows of 1024
/// `f32`) is above the allocator's largest reuse size, so every batch was fresh pages from
/// the kernel — page faults and zeroing were ~13 % of a `random-order` profile at d = 1024.
/// Measured there (`sketchpipe run` of one `random-order` stage on the 1.1 GB bench file, with
/// the batch size overridden in a scratch build, two runs each): 8192 rows 2.8 s, 1024 rows
/// 1.8–1.9 s, 512 rows 1.7 s; at d = 256, 8192 rows 2.0–2.4 s, 2048 rows 1.7 s. The batch size
/// depends on the input only, never on the machine.
pub const BATCH_BYTES: u64 = 2 << 20;

/// The bytes of every file `plan` scans.
fn scanned_bytes(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let own = plan
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
        .map_or(0, |config| {
            config
                .file_groups
                .iter()
                .flat_map(|group| group.iter())
                .map(|file| file.effective_size())
                .sum()
        });
    own + plan.children().into_iter().map(scanned_bytes).sum::<u64>()
}

/// One partition decoding on its own task; its batches wait in `rx`, each holding permits of
/// the partition's read-ahead budget until the consumer takes it.
struct Decoder {
    partition: usize,
    rx: mpsc::UnboundedReceiver<(DfResult<RecordBatch>, OwnedSemaphorePermit)>,
    task: JoinHandle<()>,
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // The consumer stopped early (an error elsewhere, Ctrl-C): stop decoding.
        self.task.abort();
    }
}

/// Wakes the consumer when a decoding task ends (normally, early, or by a panic), so that it
/// can start the next partition without waiting for a batch of the one it is on.
struct Finished(Arc<Notify>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// Read-ahead budgets count KiB, so that a few GiB fit in a semaphore's permits.
const PERMIT_BYTES: usize = 1024;

impl Decoder {
    fn spawn(
        plan: &Arc<dyn ExecutionPlan>,
        ctx: &Arc<TaskContext>,
        partition: usize,
        budget: usize,
        finished: &Arc<Notify>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let finished = Finished(Arc::clone(finished));
        let (plan, ctx) = (Arc::clone(plan), Arc::clone(ctx));
        let permits = (budget / PERMIT_BYTES).max(1);
        let semaphore = Arc::new(Semaphore::new(permits));
        let task = tokio::spawn(async move {
            let _finished = finished;
            // A partition that cannot start is a stream of its one error.
            let mut stream = match plan.execute(partition, ctx) {
                Ok(stream) => stream.boxed(),
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            };
            while let Some(batch) = stream.next().await {
                let bytes = batch.as_ref().map_or(0, |b| b.get_array_memory_size());
                // A batch larger than the whole budget takes all of it: it waits until the
                // consumer has taken everything before it.
                let n = (bytes / PERMIT_BYTES).clamp(1, permits) as u32;
                let Ok(permit) = Arc::clone(&semaphore).acquire_many_owned(n).await else {
                    return;
                };
                let failed = batch.is_err();
                if tx.send((batch, permit)).is_err() || failed {
                    return; // the consumer stopped, or the error ends this partition
                }
            }
        });
        Decoder {
            partition,
            rx,
            task,
        }
    }

    /// Whether this partition holds decoded batches or may still decode some.
    fn holds_batches(&self) -> bool {
        !self.task.is_finished() || !self.rx.is_empty()
    }

    /// The next batch, or `None` at the partition's end. A decoding task that panicked is an
    /// error, never a silently shorter partition.
    async fn next(&mut self) -> Option<DfResult<RecordBatch>> {
        if let Some((batch, _permit)) = self.rx.recv().await {
            return Some(batch);
        }
        match (&mut self.task).await {
            Ok(()) => None,
            Err(e) => Some(Err(DataFusionError::Execution(format!(
                "decoding partition {} of the input failed: {e}",
                self.partition
            )))),
        }
    }
}

/// `plan`'s rows in partition order, partitions decoding `decoders` at a time, two per decoder
/// in flight, each at most `read_ahead / (2 · decoders)` bytes ahead of the consumer (see the
/// module docs). Plan it with [`ordered_state`], and execute it with that state's task context.
pub fn in_file_order(
    plan: Arc<dyn ExecutionPlan>,
    ctx: Arc<TaskContext>,
    decoders: usize,
    read_ahead: usize,
) -> SendableRecordBatchStream {
    let schema = plan.schema();
    let partitions = plan.output_partitioning().partition_count();
    let decoders = decoders.max(1);
    let queued = LOOKAHEAD * decoders;
    let budget = read_ahead / queued;
    struct State {
        plan: Arc<dyn ExecutionPlan>,
        ctx: Arc<TaskContext>,
        running: VecDeque<Decoder>,
        next: usize,
        partitions: usize,
        decoders: usize,
        queued: usize,
        budget: usize,
        finished: Arc<Notify>,
    }
    let state = State {
        plan,
        ctx,
        running: VecDeque::new(),
        next: 0,
        partitions,
        decoders,
        queued,
        budget,
        finished: Arc::new(Notify::new()),
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        loop {
            // Start partitions while fewer than `decoders` are still decoding (finished ones
            // only hold their batches) and fewer than `queued` hold or may hold batches (a
            // finished partition with none waiting — a byte range that held no row group —
            // takes no room).
            while s.next < s.partitions && {
                let decoding = s.running.iter().filter(|d| !d.task.is_finished()).count();
                let holding = s.running.iter().filter(|d| d.holds_batches()).count();
                decoding < s.decoders && holding < s.queued
            } {
                let decoder = Decoder::spawn(&s.plan, &s.ctx, s.next, s.budget, &s.finished);
                s.running.push_back(decoder);
                s.next += 1;
            }
            let front = s.running.front_mut()?;
            let more = s.next < s.partitions;
            let next = tokio::select! {
                biased;
                next = front.next() => next,
                // A partition ahead finished: room to start another (both branches can be
                // cancelled and polled again).
                _ = s.finished.notified(), if more => continue,
            };
            match next {
                Some(Ok(batch)) => return Some((Ok(batch), s)),
                Some(Err(e)) => {
                    // Stop every decoder and start no more: the stream ends after the error.
                    s.running.clear();
                    s.next = s.partitions;
                    return Some((Err(e), s));
                }
                None => {
                    s.running.pop_front();
                }
            }
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;

    /// `partitions` partitions of `batches` batches of `rows` consecutive integers each.
    fn numbered_partitions(
        partitions: usize,
        batches: usize,
        rows: usize,
    ) -> Vec<Vec<RecordBatch>> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let mut next = 0i64;
        (0..partitions)
            .map(|_| {
                (0..batches)
                    .map(|_| {
                        let values: Int64Array = (next..next + rows as i64).collect();
                        next += rows as i64;
                        RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(values)]).unwrap()
                    })
                    .collect()
            })
            .collect()
    }

    fn numbered(partitions: usize, batches: usize, rows: usize) -> Arc<dyn ExecutionPlan> {
        let parts = numbered_partitions(partitions, batches, rows);
        let schema = parts[0][0].schema();
        MemorySourceConfig::try_new_exec(&parts, schema, None).unwrap()
    }

    async fn collect(stream: SendableRecordBatchStream) -> DfResult<Vec<i64>> {
        let batches: Vec<RecordBatch> = stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<DfResult<_>>()?;
        Ok(batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect())
    }

    /// A query over wide rows reads batches of about [`BATCH_BYTES`] of its columns, one over
    /// a narrow column of the same file keeps DataFusion's 8 192; the answers are the same.
    #[tokio::test]
    async fn sized_frames_read_wide_rows_in_smaller_batches() {
        use datafusion::arrow::array::{Float32Builder, ListBuilder};
        use datafusion::parquet::arrow::ArrowWriter;
        let dir = tempfile::TempDir::new().unwrap();
        let (rows, width) = (4000usize, 1024usize);
        let mut list = ListBuilder::new(Float32Builder::new());
        for i in 0..rows {
            for j in 0..width {
                list.values()
                    .append_value(((i * 31 + j * 17) % 1013) as f32 * 0.37);
            }
            list.append(true);
        }
        let wide = RecordBatch::try_from_iter([
            ("emb", Arc::new(list.finish()) as _),
            (
                "id",
                Arc::new((0..rows as i64).collect::<Int64Array>()) as _,
            ),
        ])
        .unwrap();
        let path = dir.path().join("wide.parquet");
        let file = std::fs::File::create(&path).unwrap();
        let mut w = ArrowWriter::try_new(file, wide.schema(), None).unwrap();
        w.write(&wide).unwrap();
        w.close().unwrap();
        let ctx = SessionContext::new();
        ctx.register_parquet("t", path.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let batch_of = |frame: &DataFrame| frame.clone().into_parts().0.config().batch_size();
        // A list column has no size in the statistics: the file's bytes a row count.
        let file_row = std::fs::metadata(&path)
            .unwrap()
            .len()
            .div_ceil(rows as u64);
        let wide_batch = (BATCH_BYTES / file_row).max(512) as usize;
        assert!(wide_batch < 4096, "{wide_batch}");
        for (query, want) in [
            (
                "SELECT count(*) AS n, sum(array_length(emb)) AS v FROM t",
                wide_batch,
            ),
            ("SELECT sum(id) FROM t", 8192),
        ] {
            let frame = sized(ctx.sql(query).await.unwrap()).await.unwrap();
            assert_eq!(batch_of(&frame), want, "{query}");
            let plain = ctx.sql(query).await.unwrap().collect().await.unwrap();
            assert_eq!(frame.collect().await.unwrap(), plain, "{query}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitions_come_out_in_order_whatever_the_number_of_decoders() {
        let ctx = SessionContext::new().task_ctx();
        for decoders in [1, 2, 3, 8, 40] {
            // A budget of one byte: every decoder may hold one batch ahead (a batch larger
            // than the budget takes all of it), which must still never stall.
            for read_ahead in [1, READ_AHEAD_BYTES] {
                let plan = numbered(17, 5, 1000);
                let stream = in_file_order(plan, Arc::clone(&ctx), decoders, read_ahead);
                let rows = collect(stream).await.unwrap();
                assert_eq!(
                    rows,
                    (0..17 * 5 * 1000).collect::<Vec<i64>>(),
                    "{decoders} decoders, {read_ahead} bytes ahead"
                );
                // Runs of empty partitions (byte ranges holding no row group) among full
                // ones: they take no room in the queue and must not stall or reorder it.
                let mut parts = numbered_partitions(9, 3, 100);
                for i in [1, 2, 3, 5, 6, 8] {
                    parts[i].clear();
                }
                let schema = parts[0][0].schema();
                let plan = MemorySourceConfig::try_new_exec(&parts, schema, None).unwrap();
                let stream = in_file_order(plan, Arc::clone(&ctx), decoders, read_ahead);
                let want: Vec<i64> = [0, 4, 7]
                    .iter()
                    .flat_map(|p| p * 300..(p + 1) * 300)
                    .collect();
                assert_eq!(collect(stream).await.unwrap(), want, "{decoders} decoders");
            }
        }
    }

    /// The real path: a Parquet directory of several files planned with [`ordered_state`]
    /// (small chunks here, so many byte-range partitions), read back in file order. (With
    /// DataFusion's work stealing left on, this fails: partitions read each other's files.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_split_into_chunks_come_back_in_file_order() {
        use datafusion::parquet::arrow::ArrowWriter;
        let dir = tempfile::TempDir::new().unwrap();
        let parts = numbered_partitions(3, 4, 20_000);
        for (i, batches) in parts.iter().enumerate() {
            let file = std::fs::File::create(dir.path().join(format!("p{i}.parquet"))).unwrap();
            let props = datafusion::parquet::file::properties::WriterProperties::builder()
                .set_max_row_group_row_count(Some(10_000))
                .build();
            let mut writer = ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
            batches.iter().for_each(|b| writer.write(b).unwrap());
            writer.close().unwrap();
        }
        let ctx = SessionContext::new();
        let url = format!("{}/", dir.path().display());
        let frame = ctx.read_parquet(url, Default::default()).await.unwrap();
        let plan = frame.clone().create_physical_plan().await.unwrap();
        let bytes = scanned_bytes(&plan);
        // Batches: DataFusion's 8192 rows for these narrow rows; rows as wide as the files'
        // bytes over 10 rows would come 512 at a time (the floor), and an unknown count keeps
        // the default.
        let batch = |rows| {
            ordered_state(&ctx, &plan, rows, bytes / 10)
                .config()
                .batch_size()
        };
        assert_eq!(batch(None), 8192);
        assert_eq!(batch(Some(10)), 512);
        let state = ordered_state(&ctx, &plan, Some(3 * 4 * 20_000), bytes / 10);
        assert_eq!(state.config().batch_size(), 8192);
        let plan = state
            .create_physical_plan(frame.logical_plan())
            .await
            .unwrap();
        assert!(plan.output_partitioning().partition_count() >= 10);
        let task_ctx = Arc::new(TaskContext::from(&state));
        let rows = collect(in_file_order(plan, task_ctx, 3, READ_AHEAD_BYTES))
            .await
            .unwrap();
        assert_eq!(rows, (0..3 * 4 * 20_000).collect::<Vec<i64>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_in_a_later_partition_ends_the_stream_with_that_error() {
        let ctx = SessionContext::new();
        let table = datafusion::datasource::MemTable::try_new(
            numbered(1, 1, 1).schema(),
            numbered_partitions(9, 3, 100),
        )
        .unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        // Division by zero at x = 1234, in partition 4.
        let frame = ctx.sql("SELECT 10 / (x - 1234) AS y FROM t").await.unwrap();
        let plan = frame.create_physical_plan().await.unwrap();
        assert_eq!(plan.output_partitioning().partition_count(), 9);
        let stream = in_file_order(plan, ctx.task_ctx(), 3, READ_AHEAD_BYTES);
        let items: Vec<DfResult<RecordBatch>> = stream.collect().await;
        let (last, before) = items.split_last().unwrap();
        let err = last.as_ref().unwrap_err().to_string();
        assert!(err.contains("Divide by zero"), "{err}");
        let rows: usize = before.iter().map(|b| b.as_ref().unwrap().num_rows()).sum();
        assert_eq!(rows, 1200, "the partitions before the failing one, whole");
    }
}
