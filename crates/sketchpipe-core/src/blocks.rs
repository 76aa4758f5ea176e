//! Rows in blocks of a fixed size, whatever batches they arrive in.
//!
//! A core that adds up one update per call — the exact Gram matrix (one SYRK per call), the
//! centred scatter matrix (one mean per call) — gives sums whose rounding depends on how many
//! rows each call holds. [`Blocks`] re-chunks a stream of row-major rows into blocks of
//! [`Blocks::ROWS`] rows (the last one shorter), so the same rows in the same order give the
//! same bits however a file's reader, a Python loop or a SQL engine happens to batch them.

/// The re-chunking buffer: the rows of the block being filled.
#[derive(Debug, Clone, Default)]
pub struct Blocks {
    pending: Vec<f64>,
}

impl Blocks {
    /// Rows per block: large enough that a block's update runs at the kernel's speed.
    pub const ROWS: usize = 1024;

    pub fn new() -> Self {
        Blocks::default()
    }

    /// Calls `f` with every whole block of `rows` (row-major, `d` values a row), the rows
    /// kept back from earlier calls first; keeps the rest for the next call. Whole blocks of
    /// `rows` itself are passed in place, without a copy.
    pub fn push<E>(
        &mut self,
        rows: &[f64],
        d: usize,
        mut f: impl FnMut(&[f64]) -> Result<(), E>,
    ) -> Result<(), E> {
        let block = Self::ROWS * d.max(1);
        let mut rest = rows;
        if !self.pending.is_empty() {
            let take = (block - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() < block {
                return Ok(());
            }
            f(&self.pending)?;
            self.pending.clear();
        }
        let whole = rest.len() - rest.len() % block;
        for chunk in rest[..whole].chunks_exact(block) {
            f(chunk)?;
        }
        self.pending.extend_from_slice(&rest[whole..]);
        Ok(())
    }

    /// Calls `f` with the rows kept back (the last, shorter block), if any.
    pub fn flush<E>(&mut self, f: impl FnOnce(&[f64]) -> Result<(), E>) -> Result<(), E> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        f(&pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The blocks are the same whatever batches the rows came in.
        #[test]
        fn blocks_do_not_depend_on_batches(
            n in 0usize..5000,
            d in 1usize..4,
            cuts in proptest::collection::vec(0usize..5000, 0..6),
        ) {
            let rows: Vec<f64> = (0..n * d).map(|i| i as f64).collect();
            let blocks_of = |bounds: &[usize]| {
                let mut b = Blocks::new();
                let mut out: Vec<Vec<f64>> = Vec::new();
                let mut at = 0;
                for &cut in bounds.iter().chain(std::iter::once(&n)) {
                    let cut = cut.clamp(at, n);
                    b.push(&rows[at * d..cut * d], d, |x| {
                        out.push(x.to_vec());
                        Ok::<_, ()>(())
                    })
                    .unwrap();
                    at = cut;
                }
                b.flush(|x| {
                    out.push(x.to_vec());
                    Ok::<_, ()>(())
                })
                .unwrap();
                out
            };
            let mut sorted = cuts.clone();
            sorted.sort_unstable();
            let one = blocks_of(&[]);
            prop_assert_eq!(&blocks_of(&sorted), &one);
            prop_assert_eq!(one.concat(), rows.clone());
            prop_assert!(one.iter().rev().skip(1).all(|b| b.len() == Blocks::ROWS * d));
        }
    }
}
