//! The default `duplicate_keys = "error"` check, fed by the scan that builds the sketch. It
//! used to be a group-by over the key column: a second scan of the input, 18.4 M rows/s alone
//! in `cargo bench --bench sketch_throughput` (0.22 s of the stage's 1.6 s on 4 M rows), which
//! kept the stage at 0.75× a raw scan against 0.90× for the sketch pass.
//!
//! Every key's 64-bit hash is appended to one of 256 buckets chosen by its top byte: for an
//! integer key its value through MurmurHash3's 64-bit finaliser `fmix64` (a bijection of
//! `u64`: distinct integers never collide), for a string `XXH64(bytes, 0)`. When the hashes
//! held reach the memory budget, every bucket is appended to its own spill file, so memory
//! stays bounded whatever the input size.
//! At the end each bucket (spilled part and held part) goes through a small open-addressing
//! table that finds a repeated hash.
//!
//! **Exactness.** Equal keys hash alike, so no repeated hash means no repeated key: the check
//! passes exactly. A repeated hash is a repeated key (for integers, always) or, with
//! probability about `n² / 2⁶⁵` (`4·10⁻⁷` at 4 M string keys), two strings that collide: the
//! caller then runs the exact group-by, which names the key (or finds none, and the run goes
//! on).

use std::fs::OpenOptions;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::dataframe::DataFrame;
use twox_hash::XxHash64;

use super::{key_column, KeyType, Keys};
use crate::{Error, Result};

/// Fails, naming a key, when a key appears on more than one row — of the same `within` value
/// (a corpus's table), if given (a spilling group-by over those columns alone).
pub async fn check_unique_keys(frame: &DataFrame, key: &str, within: Option<&str>) -> Result<()> {
    use datafusion::arrow::util::display::array_value_to_string;
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::prelude::{col, lit};
    let by = |c: &str| col(datafusion::common::Column::from_name(c));
    let mut group = vec![by(key)];
    group.extend(within.map(by));
    let dup = frame
        .clone()
        .select(group.clone())?
        .aggregate(group, vec![count(lit(1)).alias("n")])?
        .filter(col("n").gt(lit(1)))?
        .limit(0, Some(1))?
        .collect()
        .await?;
    if let Some(b) = dup.iter().find(|b| b.num_rows() > 0) {
        let key_value = array_value_to_string(b.column(0), 0)?;
        let n = array_value_to_string(b.column(b.num_columns() - 1), 0)?;
        let table = match within {
            Some(_) => format!("table {:?}: ", array_value_to_string(b.column(1), 0)?),
            None => String::new(),
        };
        return Err(Error::Input(format!(
            "{table}key `{key}` = {key_value} appears on {n} rows; a sketch's key identifies one \
             row. Set duplicate_keys = \"sum\" or \"mean\" to combine the rows of a key first"
        )));
    }
    Ok(())
}

/// Buckets by the hash's top byte.
const BUCKETS: usize = 256;

/// Collects the hashes of one key column's keys; see the module docs.
pub struct KeyHashes {
    key_index: usize,
    key_type: KeyType,
    /// The column within whose values keys must be unique (a corpus's table), if any, and
    /// its index in the schema.
    within: Option<(String, usize)>,
    buckets: Vec<Vec<u64>>,
    held: usize,
    /// Hashes held before spilling (a vector may hold twice its length while growing).
    limit: usize,
    spill_parent: PathBuf,
    spill: Option<tempfile::TempDir>,
    /// Bytes of hashes written to the spill files.
    spilled_bytes: u64,
}

impl KeyHashes {
    /// Checks column `key` of batches with `schema`, holding at most about `budget` bytes
    /// before spilling to a scratch directory made in `spill_parent`.
    pub fn new(schema: &Schema, key: &str, budget: u64, spill_parent: &Path) -> Result<Self> {
        let (key_index, key_type) = key_column(schema, key)?;
        Ok(KeyHashes {
            key_index,
            key_type,
            within: None,
            buckets: vec![Vec::new(); BUCKETS],
            held: 0,
            limit: ((budget / 16) as usize).max(BUCKETS),
            spill_parent: spill_parent.to_path_buf(),
            spill: None,
            spilled_bytes: 0,
        })
    }

    /// The same check of keys that must be unique only among the rows with the same value of
    /// column `within` (a corpus's table): each key's hash is mixed with that value's
    /// (`XXH64` of its text), so a repeat within a table repeats the hash and the same key in
    /// two tables does not (but with probability about `n²/2⁶⁵`, which the exact fallback
    /// settles).
    pub fn within(mut self, schema: &Schema, within: Option<&str>) -> Result<Self> {
        self.within = match within {
            Some(c) => Some((c.to_string(), schema.index_of(c)?)),
            None => None,
        };
        Ok(self)
    }

    /// Adds a batch's keys (null keys are skipped: the sketch refuses them, naming the row).
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let within = self.within.as_ref().map(|(_, w)| batch.column(*w).clone());
        self.update_columns(batch.column(self.key_index), within.as_ref())
    }

    /// Adds a key column's keys and, for a check [`Self::within`] a column, that column's
    /// values (e.g. the key and table columns alone of files merged by earlier increments).
    pub fn update_columns(
        &mut self,
        keys: &datafusion::arrow::array::ArrayRef,
        within: Option<&datafusion::arrow::array::ArrayRef>,
    ) -> Result<()> {
        match (&self.within, within) {
            (Some(_), Some(w)) => {
                let names = datafusion::arrow::compute::cast(
                    w,
                    &datafusion::arrow::datatypes::DataType::Utf8,
                )?;
                let names = datafusion::arrow::array::AsArray::as_string::<i32>(&names).clone();
                self.update_scoped(keys, &names)
            }
            (None, _) => self.update_keys(keys),
            (Some((c, _)), None) => Err(Error::Internal(format!(
                "the key check within `{c}` was given keys without that column"
            ))),
        }
    }

    /// [`Self::update`] with each key's hash mixed with its table's.
    fn update_scoped(
        &mut self,
        column: &datafusion::arrow::array::ArrayRef,
        names: &datafusion::arrow::array::StringArray,
    ) -> Result<()> {
        let keys = Keys::read(column, self.key_type)?;
        let buckets = &mut self.buckets;
        let scope = |i: usize| {
            if names.is_null(i) {
                0
            } else {
                XxHash64::oneshot(1, names.value(i).as_bytes())
            }
        };
        let mut add = |h: u64, i: usize| {
            let h = fmix64(h ^ scope(i));
            buckets[(h >> 56) as usize].push(h)
        };
        match &keys {
            Keys::Int(a) => each_valid(a, |i| add(fmix64(a.values()[i] as u64), i)),
            Keys::UInt(a) => each_valid(a, |i| add(fmix64(a.values()[i]), i)),
            Keys::Str(a) => each_valid(a, |i| add(XxHash64::oneshot(0, a.value(i).as_bytes()), i)),
        }
        self.held += column.len();
        if self.held >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Adds a key column's keys (of the type the schema gave): e.g. the keys alone of files
    /// an incremental stage merged earlier.
    pub fn update_keys(&mut self, column: &datafusion::arrow::array::ArrayRef) -> Result<()> {
        let keys = Keys::read(column, self.key_type)?;
        let buckets = &mut self.buckets;
        let mut add = |h: u64| buckets[(h >> 56) as usize].push(h);
        // Typed once per batch; the values read as slices.
        match &keys {
            Keys::Int(a) => each_valid(a, |i| add(fmix64(a.values()[i] as u64))),
            Keys::UInt(a) => each_valid(a, |i| add(fmix64(a.values()[i]))),
            Keys::Str(a) => each_valid(a, |i| add(XxHash64::oneshot(0, a.value(i).as_bytes()))),
        }
        self.held += column.len();
        if self.held >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        if self.spill.is_none() {
            std::fs::create_dir_all(&self.spill_parent).map_err(|e| {
                Error::io(format!("cannot create {}", self.spill_parent.display()), e)
            })?;
            let dir = tempfile::Builder::new()
                .prefix("keys-")
                .tempdir_in(&self.spill_parent)
                .map_err(|e| {
                    let at = self.spill_parent.display();
                    Error::io(format!("cannot create a scratch dir in {at}"), e)
                })?;
            self.spill = Some(dir);
        }
        let dir = self.spill.as_ref().expect("just made").path().to_path_buf();
        for (b, hashes) in self.buckets.iter_mut().enumerate() {
            if hashes.is_empty() {
                continue;
            }
            let path = bucket_path(&dir, b);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            let mut out = BufWriter::new(file);
            for h in hashes.iter() {
                out.write_all(&h.to_le_bytes())
                    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            }
            out.flush()
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            self.spilled_bytes += 8 * hashes.len() as u64;
            hashes.clear();
        }
        self.held = 0;
        Ok(())
    }

    /// Bytes of key hashes written to disk so far (0 while they fit in the budget).
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled_bytes
    }

    /// The column the check is scoped by, if any.
    pub fn within_column(&self) -> Option<&str> {
        self.within.as_ref().map(|(c, _)| c.as_str())
    }

    /// Ends the check of the rows of `frame`: a repeated hash (a repeated key, or rarely a
    /// string collision) runs the exact group-by [`check_unique_keys`], which names the key.
    pub async fn finish(self, frame: &DataFrame, key: &str) -> Result<()> {
        let within = self.within.as_ref().map(|(c, _)| c.clone());
        if self.repeats()? {
            check_unique_keys(frame, key, within.as_deref()).await?;
        }
        Ok(())
    }

    /// Whether some hash appeared twice (see the module docs for what that means); removes
    /// the spill files.
    pub fn repeats(mut self) -> Result<bool> {
        let mut table = Vec::new();
        let mut bytes = Vec::new();
        for b in 0..BUCKETS {
            let mut hashes = std::mem::take(&mut self.buckets[b]);
            if let Some(dir) = &self.spill {
                let path = bucket_path(dir.path(), b);
                if path.exists() {
                    bytes.clear();
                    std::fs::File::open(&path)
                        .and_then(|mut f| f.read_to_end(&mut bytes))
                        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                    hashes.extend(
                        bytes
                            .chunks_exact(8)
                            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
                    );
                }
            }
            if has_repeat(&hashes, &mut table) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Calls `f` with the index of every non-null entry of `array`.
fn each_valid(array: &dyn Array, f: impl FnMut(usize)) {
    match array.nulls() {
        None => (0..array.len()).for_each(f),
        Some(nulls) => nulls.valid_indices().for_each(f),
    }
}

/// MurmurHash3's 64-bit finaliser: a bijection (xor-shifts and odd multipliers are invertible)
/// that spreads consecutive integers over all 64 bits.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

fn bucket_path(dir: &Path, bucket: usize) -> PathBuf {
    dir.join(format!("{bucket:03}.u64"))
}

/// Whether `hashes` holds a value twice: an open-addressing table (linear probing) twice
/// their count, indexed by the low bits (the hashes are uniform). `0` marks an empty slot, so
/// the value 0 is counted apart.
fn has_repeat(hashes: &[u64], table: &mut Vec<u64>) -> bool {
    let slots = (2 * hashes.len()).next_power_of_two().max(16);
    table.clear();
    table.resize(slots, 0);
    let mask = slots - 1;
    let mut zeros = 0;
    for &h in hashes {
        if h == 0 {
            zeros += 1;
            if zeros > 1 {
                return true;
            }
            continue;
        }
        let mut i = h as usize & mask;
        loop {
            match table[i] {
                0 => {
                    table[i] = h;
                    break;
                }
                v if v == h => return true,
                _ => i = (i + 1) & mask,
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn batch(keys: &[i64]) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("k", DataType::Int64, true)]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(keys.to_vec()))],
        )
        .unwrap()
    }

    /// Property: over random key sets with and without a repeat, in random batches, with a
    /// budget small enough to spill many times or large enough never to, the check answers as
    /// a set would.
    #[test]
    fn repeats_equal_a_set_based_check_whether_or_not_it_spills() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for case in 0..40 {
            let n = rng.random_range(1..20_000usize);
            // Distinct keys (a permutation of a spread-out range), then maybe one repeat.
            let mut keys: Vec<i64> = (0..n as i64).map(|i| i * 7919 - 1_000_000).collect();
            for i in (1..n).rev() {
                keys.swap(i, rng.random_range(0..=i));
            }
            let repeat = case % 2 == 0 && n > 1;
            if repeat {
                let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
                if a != b {
                    keys[a] = keys[b];
                }
            }
            let expected = {
                let mut s = std::collections::HashSet::new();
                !keys.iter().all(|k| s.insert(*k))
            };
            let budget = if case % 4 < 2 { 4096 } else { 1 << 30 };
            let schema = batch(&[]).schema();
            let mut check = KeyHashes::new(&schema, "k", budget, tmp.path()).unwrap();
            let mut at = 0;
            while at < n {
                let len = rng.random_range(1..3000).min(n - at);
                check.update(&batch(&keys[at..at + len])).unwrap();
                at += len;
            }
            let spilled = check.spill.is_some();
            assert_eq!(spilled, budget == 4096 && n * 8 * 2 >= 4096, "case {case}");
            assert_eq!(spilled, check.spilled_bytes() > 0, "case {case}");
            assert_eq!(check.repeats().unwrap(), expected, "case {case}, n = {n}");
        }
        // The spill directories went with their checks.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn string_keys_and_nulls() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)]));
        let strings = |v: Vec<Option<&str>>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(v))]).unwrap()
        };
        let tmp = tempfile::tempdir().unwrap();
        let mut check = KeyHashes::new(&schema, "k", 1 << 20, tmp.path()).unwrap();
        check
            .update(&strings(vec![Some("a"), None, Some("b")]))
            .unwrap();
        check.update(&strings(vec![None, Some("c")])).unwrap();
        assert!(!check.repeats().unwrap(), "nulls are not keys");
        let mut check = KeyHashes::new(&schema, "k", 1 << 20, tmp.path()).unwrap();
        check.update(&strings(vec![Some("a"), Some("b")])).unwrap();
        check.update(&strings(vec![Some("b")])).unwrap();
        assert!(check.repeats().unwrap());
    }

    #[test]
    fn the_value_zero_is_a_value_like_any_other() {
        let mut table = Vec::new();
        assert!(!has_repeat(&[0, 5, 9], &mut table));
        assert!(has_repeat(&[0, 5, 0], &mut table));
        assert!(has_repeat(&[3, 5, 3], &mut table));
        assert!(!has_repeat(&[], &mut table));
    }
}
