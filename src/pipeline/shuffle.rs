//! An exact, uniform, out-of-core shuffle with a memory budget (§1e of `docs/algorithms.md`).
//!
//! The guarantees of `random-order` and `oja` (Kacham–Woodruff, arXiv:2412.11963; Price–Xun,
//! arXiv:2408.10332) assume the rows arrive in a uniformly random order, and files on disk
//! are usually sorted. Two passes:
//! 1. **Spill**: every row goes to one of `B` spill files (Arrow IPC streams) chosen
//!    uniformly at random with a seeded generator. `B` is sized from the input's estimated
//!    size so each file fits half the budget; a file that still comes out too big is split
//!    again the same way (recursively), so the budget holds whatever the estimate said.
//! 2. **Read back**: each spill file in turn is loaded, permuted in memory by Fisher–Yates,
//!    and streamed on.
//!
//! Given the bucket sizes, every assignment of rows to buckets is equally likely and each
//! bucket's order is a uniform permutation, so the concatenation is a uniform random
//! permutation of all rows — exactly, not approximately. The same seed gives the same order,
//! so a read-back can be repeated (a second pass sees the same stream).
//!
//! The files live in a temporary directory that is removed when the [`Spilled`] (or the
//! [`Spiller`]) is dropped: on success, on error and on Ctrl-C alike.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::sink::ScratchDir;
use crate::{Error, Result};

/// Rows per batch handed on by the read-back.
pub const BATCH_ROWS: usize = 8192;
/// Bucket count when the input size cannot be estimated.
const DEFAULT_BUCKETS: usize = 64;
const MAX_BUCKETS: usize = 4096;

/// Generator streams: 0 for the first-level assignment, `1 + i` for the permutation of
/// spill file `i`, and from `SPLIT_STREAMS` on for re-splitting oversized files.
const SPLIT_STREAMS: u64 = 1 << 40;

/// One spill file being written.
struct Bucket {
    path: PathBuf,
    writer: StreamWriter<BufWriter<File>>,
    rows: u64,
}

/// Pass 1: distributes rows over spill files.
pub struct Spiller {
    dir: ScratchDir,
    schema: SchemaRef,
    seed: u64,
    memory: u64,
    buckets: Vec<Bucket>,
    rng: ChaCha8Rng,
    /// Row indices per bucket for the batch at hand (reused: no per-row allocation).
    picks: Vec<Vec<u32>>,
    rows: u64,
}

impl Spiller {
    /// Spill files go in a fresh directory under `parent`. `estimated_bytes` (the input's
    /// in-memory size, if known) sizes the bucket count; `memory` is the budget in bytes.
    pub fn new(
        parent: &Path,
        schema: SchemaRef,
        seed: u64,
        memory: u64,
        estimated_bytes: Option<u64>,
    ) -> Result<Self> {
        let dir = ScratchDir::new(parent, "shuffle-")?;
        let buckets = match estimated_bytes {
            Some(b) => (2 * b).div_ceil(memory.max(1)) as usize,
            None => DEFAULT_BUCKETS,
        }
        .clamp(1, MAX_BUCKETS);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(0);
        let mut this = Spiller {
            dir,
            schema,
            seed,
            memory,
            buckets: Vec::new(),
            rng,
            picks: vec![Vec::new(); buckets],
            rows: 0,
        };
        let root = this.dir.path().to_path_buf();
        this.buckets = (0..buckets)
            .map(|i| open_bucket(&root.join(format!("{i:05}.arrow")), &this.schema))
            .collect::<Result<_>>()?;
        Ok(this)
    }

    /// Sends each row of `batch` to a uniformly chosen spill file.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        distribute(batch, &mut self.rng, &mut self.picks, &mut self.buckets)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Closes the spill files and splits any that exceed half the memory budget.
    pub fn finish(self) -> Result<Spilled> {
        let files = self
            .buckets
            .into_iter()
            .map(close_bucket)
            .collect::<Result<Vec<_>>>()?;
        let mut split_stream = SPLIT_STREAMS;
        let mut out = Vec::with_capacity(files.len());
        for (path, rows) in files {
            split_oversized(
                &path,
                rows,
                &self.schema,
                self.seed,
                self.memory / 2,
                &mut split_stream,
                &mut out,
            )?;
        }
        Ok(Spilled {
            _dir: self.dir,
            schema: self.schema,
            files: out,
            seed: self.seed,
            rows: self.rows,
        })
    }
}

fn open_bucket(path: &Path, schema: &SchemaRef) -> Result<Bucket> {
    let file = File::create(path)
        .map_err(|e| Error::io(format!("cannot create spill file {}", path.display()), e))?;
    Ok(Bucket {
        path: path.to_path_buf(),
        writer: StreamWriter::try_new(BufWriter::with_capacity(1 << 16, file), schema)?,
        rows: 0,
    })
}

/// Ends a spill file's stream and flushes it to the OS.
fn close_bucket(b: Bucket) -> Result<(PathBuf, u64)> {
    let mut file = b.writer.into_inner()?;
    file.flush()
        .map_err(|e| Error::io(format!("cannot write spill file {}", b.path.display()), e))?;
    Ok((b.path, b.rows))
}

fn distribute(
    batch: &RecordBatch,
    rng: &mut ChaCha8Rng,
    picks: &mut [Vec<u32>],
    buckets: &mut [Bucket],
) -> Result<()> {
    let b = picks.len();
    for p in picks.iter_mut() {
        p.clear();
    }
    for row in 0..batch.num_rows() {
        picks[rng.random_range(0..b)].push(row as u32);
    }
    for (pick, bucket) in picks.iter().zip(buckets.iter_mut()) {
        if pick.is_empty() {
            continue;
        }
        let part = take_record_batch(batch, &UInt32Array::from_iter_values(pick.iter().copied()))?;
        bucket.writer.write(&part)?;
        bucket.rows += pick.len() as u64;
    }
    Ok(())
}

/// Appends `path` to `out`, or — when it is bigger than `limit` bytes and has more than one
/// row — the files of a uniform re-split of it (recursively), in order.
fn split_oversized(
    path: &Path,
    rows: u64,
    schema: &SchemaRef,
    seed: u64,
    limit: u64,
    stream: &mut u64,
    out: &mut Vec<(PathBuf, u64)>,
) -> Result<()> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("cannot stat spill file {}", path.display()), e))?
        .len();
    if size <= limit || rows <= 1 {
        out.push((path.to_path_buf(), rows));
        return Ok(());
    }
    let parts = (2 * size)
        .div_ceil(limit.max(1))
        .clamp(2, MAX_BUCKETS as u64) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(*stream);
    *stream += 1;
    // `00012.arrow` splits into `00012-0000.arrow`, … (and those into `00012-0000-0000.arrow`).
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut buckets = (0..parts)
        .map(|i| open_bucket(&path.with_file_name(format!("{stem}-{i:04}.arrow")), schema))
        .collect::<Result<Vec<_>>>()?;
    let mut picks = vec![Vec::new(); parts];
    for batch in read_file(path)? {
        distribute(&batch?, &mut rng, &mut picks, &mut buckets)?;
    }
    let _ = std::fs::remove_file(path);
    for b in buckets {
        let (path, rows) = close_bucket(b)?;
        split_oversized(&path, rows, schema, seed, limit, stream, out)?;
    }
    Ok(())
}

fn read_file(
    path: &Path,
) -> Result<
    impl Iterator<Item = std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError>>,
> {
    let file = File::open(path)
        .map_err(|e| Error::io(format!("cannot open spill file {}", path.display()), e))?;
    Ok(StreamReader::try_new(
        BufReader::with_capacity(1 << 16, file),
        None,
    )?)
}

/// The spilled input, ready to be read back in shuffled order (any number of times).
pub struct Spilled {
    _dir: ScratchDir,
    schema: SchemaRef,
    files: Vec<(PathBuf, u64)>,
    seed: u64,
    rows: u64,
}

impl Spilled {
    /// Rows spilled: the input's exact row count.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Spill files after splitting (for tests and progress).
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// The rows in shuffled order, as batches of up to [`BATCH_ROWS`] rows.
    pub fn replay(&self) -> Replay<'_> {
        Replay {
            spilled: self,
            next_file: 0,
            current: None,
            offset: 0,
        }
    }
}

/// Iterator over the shuffled rows; see [`Spilled::replay`].
pub struct Replay<'a> {
    spilled: &'a Spilled,
    next_file: usize,
    current: Option<RecordBatch>,
    offset: usize,
}

impl Replay<'_> {
    /// Loads spill file `i` and applies its Fisher–Yates permutation.
    fn load(&self, i: usize) -> Result<RecordBatch> {
        let (path, _) = &self.spilled.files[i];
        let batches = read_file(path)?.collect::<std::result::Result<Vec<_>, _>>()?;
        let all = concat_batches(&self.spilled.schema, &batches)?;
        drop(batches);
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.spilled.seed);
        rng.set_stream(1 + i as u64);
        order.shuffle(&mut rng);
        Ok(take_record_batch(&all, &UInt32Array::from(order))?)
    }
}

impl Iterator for Replay<'_> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = &self.current {
                if self.offset < batch.num_rows() {
                    let len = BATCH_ROWS.min(batch.num_rows() - self.offset);
                    let out = batch.slice(self.offset, len);
                    self.offset += len;
                    return Some(Ok(out));
                }
                self.current = None;
            }
            if self.next_file >= self.spilled.files.len() {
                return None;
            }
            let i = self.next_file;
            self.next_file += 1;
            match self.load(i) {
                Ok(b) => {
                    self.current = Some(b);
                    self.offset = 0;
                }
                Err(e) => {
                    self.next_file = self.spilled.files.len();
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::UInt64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn ids(n: u64) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::UInt64, false)]));
        let batches = (0..n)
            .collect::<Vec<_>>()
            .chunks(7)
            .map(|c| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(UInt64Array::from(c.to_vec()))],
                )
                .unwrap()
            })
            .collect();
        (schema, batches)
    }

    fn shuffled(n: u64, seed: u64, memory: u64, buckets_hint: Option<u64>) -> (Vec<u64>, usize) {
        let (schema, batches) = ids(n);
        let parent = tempfile::tempdir().unwrap();
        let mut s = Spiller::new(parent.path(), schema, seed, memory, buckets_hint).unwrap();
        for b in &batches {
            s.push(b).unwrap();
        }
        let spilled = s.finish().unwrap();
        assert_eq!(spilled.rows(), n);
        let mut out = Vec::new();
        for b in spilled.replay() {
            let b = b.unwrap();
            let col = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
            out.extend(col.values().iter().copied());
        }
        // Replaying again gives the same order.
        let again: usize = spilled.replay().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(again as u64, n);
        (out, spilled.files())
    }

    #[test]
    fn is_a_permutation_replayable_and_seeded() {
        let (a, _) = shuffled(1000, 1, 1 << 20, None);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        assert_eq!(a, shuffled(1000, 1, 1 << 20, None).0);
        assert_ne!(a, shuffled(1000, 2, 1 << 20, None).0);
    }

    #[test]
    fn oversized_spill_files_are_split_to_fit_the_budget() {
        // One bucket from a (wrong) tiny estimate, a budget of a few hundred bytes: the file
        // must be re-split, recursively, and the result is still a permutation.
        let (out, files) = shuffled(2000, 5, 2048, Some(1));
        assert!(files > 4, "only {files} spill files");
        let mut sorted = out.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..2000).collect::<Vec<_>>());
    }

    #[test]
    fn every_row_lands_in_every_position_equally_often() {
        // n = 6 rows, 3000 seeds, several buckets and re-splits: each (row, position) count
        // is Binomial(3000, 1/6) — mean 500, sd ≈ 20.4. A chi-square over the 36 cells has
        // 25 degrees of freedom; 60 is far in its tail (p ≈ 1e-4).
        let n = 6u64;
        let seeds = 3000u64;
        let mut counts = vec![vec![0u32; n as usize]; n as usize];
        for seed in 0..seeds {
            let (out, _) = shuffled(n, seed, 1 << 20, Some(1 << 20));
            for (pos, id) in out.iter().enumerate() {
                counts[*id as usize][pos] += 1;
            }
        }
        let expect = seeds as f64 / n as f64;
        let chi2: f64 = counts
            .iter()
            .flatten()
            .map(|&c| (c as f64 - expect).powi(2) / expect)
            .sum();
        assert!(chi2 < 60.0, "chi-square {chi2}: {counts:?}");
    }

    #[test]
    fn the_spill_directory_is_removed_on_drop() {
        // The parent (the run's shared temporary directory) goes too once it is empty.
        let (schema, batches) = ids(100);
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("run-tmp");
        let mut s = Spiller::new(&parent, schema.clone(), 1, 1 << 20, None).unwrap();
        s.push(&batches[0]).unwrap();
        assert_eq!(std::fs::read_dir(&parent).unwrap().count(), 1);
        drop(s);
        assert!(!parent.exists());
        let mut s = Spiller::new(&parent, schema, 1, 1 << 20, None).unwrap();
        for b in &batches {
            s.push(b).unwrap();
        }
        let spilled = s.finish().unwrap();
        std::fs::write(parent.join("other-run"), b"x").unwrap();
        drop(spilled);
        let left: Vec<_> = std::fs::read_dir(&parent).unwrap().collect();
        assert_eq!(left.len(), 1, "only the other run's file stays");
    }
}
