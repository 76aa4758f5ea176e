//! Correlation `⟨v, v₁⟩²` against the gap `R = σ₁²/σ₂²` for the four top-eigenvector
//! algorithms, on the `low-rank` and `heavy-row` families of `docs/algorithms.md` §1f.
//!
//! `cargo bench --bench gap_table` prints the Markdown table of `docs/performance.md`. Each algorithm
//! runs through the real operator with its default parameters (`random-order`: prefix
//! estimate of `‖A‖_F²`, `k = 4`, `p = ⌈2 ln d⌉`; `oja`: the `2^k/‖A‖_F²` grid with the
//! held-out pick; `frequent-directions`: `ℓ = 32`), on data generated in random order with a
//! fixed seed. `v₁` is the exact eigenvector (`exact`), so the `exact` column is 1 by
//! construction and is shown as a check. "random-order as in the pseudo-code" runs the same
//! operator with one power vector and equal blocks (`docs/algorithms.md` §1c), to measure what
//! sketchpipe's deviations (a block of `k = 4`, a last block of half the stream) buy. Sizes: `SKETCHPIPE_GAP_ROWS` (default 20 000 rows,
//! `d = 128`) for low-rank, `d = 256` with `m = 64` rows per light direction for heavy-row.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Float64Array, ListArray, RecordBatch};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use sketchpipe::eigen::alignment;
use sketchpipe::generate::{HeavyRow, LowRank, Rows};
use sketchpipe::operators::{
    Algorithm, Operator, PassInfo, TopEigenvectorOp, TopEigenvectorParams,
};

const GAPS: [f64; 5] = [1.5, 2.0, 5.0, 20.0, 100.0];
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RandomOrder,
    Algorithm::Oja,
    Algorithm::FrequentDirections,
    Algorithm::Exact,
];

/// The rows as `emb List<Float64>` batches of 8192.
fn batches(mut rows: Rows) -> Vec<RecordBatch> {
    let d = rows.dim;
    let mut left = rows.count as usize;
    let mut out = Vec::new();
    while left > 0 {
        let n = left.min(8192);
        let mut x = Vec::with_capacity(n * d);
        rows.fill(n, &mut x);
        let item = Arc::new(Field::new("item", DataType::Float64, true));
        let list = ListArray::new(
            item,
            OffsetBuffer::from_lengths(std::iter::repeat_n(d, n)),
            Arc::new(Float64Array::from(x)),
            None,
        );
        out.push(RecordBatch::try_from_iter([("emb", Arc::new(list) as _)]).unwrap());
        left -= n;
    }
    out
}

/// Runs one algorithm over every pass it asks for; `pseudo_code` runs random-order as in
/// the paper's pseudo-code (one power vector, equal blocks) instead of sketchpipe's default.
fn top(algorithm: Algorithm, data: &[RecordBatch], pseudo_code: bool) -> Vec<f64> {
    let mut params = TopEigenvectorParams::new(vec!["emb".into()], algorithm);
    if pseudo_code {
        params.random_order.block_width = 1;
        params.random_order.last_block_fraction = None;
    }
    let mut op = Box::new(TopEigenvectorOp::new(params, &data[0].schema()).unwrap());
    let rows = data.iter().map(|b| b.num_rows() as u64).sum();
    let mut scan = 0;
    while op.next_pass().is_some() {
        scan += 1;
        let info = PassInfo {
            rows: Some(rows),
            order_randomised: true,
            scan,
        };
        op.begin_pass(&info).unwrap();
        for b in data {
            op.update(b).unwrap();
        }
        op.end_pass().unwrap();
    }
    let tables = op.finish().unwrap();
    let vector = tables.iter().find(|t| t.name == "vector").unwrap();
    vector
        .batch
        .column(1)
        .as_primitive::<Float64Type>()
        .values()
        .to_vec()
}

fn main() {
    let rows: u64 = std::env::var("SKETCHPIPE_GAP_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    println!(
        "| family | R | random-order | random-order, k=1 & equal blocks | oja | frequent-directions | exact |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (family, make) in [
        (
            format!("low-rank n={rows} d=128"),
            Box::new(|gap: f64| {
                LowRank {
                    rows,
                    dim: 128,
                    gap,
                    rank: 8,
                    noise: 0.01,
                    seed: 7,
                }
                .rows()
                .unwrap()
            }) as Box<dyn Fn(f64) -> Rows>,
        ),
        (
            "heavy-row d=256 m=64".to_string(),
            Box::new(|gap: f64| {
                HeavyRow {
                    dim: 256,
                    gap,
                    per_direction: 64,
                    seed: 7,
                }
                .rows()
                .unwrap()
            }),
        ),
    ] {
        for gap in GAPS {
            let data = batches(make(gap));
            let exact = top(Algorithm::Exact, &data, false);
            let mut cells: Vec<String> = ALGORITHMS
                .iter()
                .map(|&a| format!("{:.4}", alignment(&top(a, &data, false), &exact)))
                .collect();
            let paper = top(Algorithm::RandomOrder, &data, true);
            cells.insert(1, format!("{:.4}", alignment(&paper, &exact)));
            println!("| {family} | {gap} | {} |", cells.join(" | "));
        }
    }
}
