//! Frequent Directions' two routes against the exact Gram accumulator, on the cores alone (no
//! Arrow, no I/O): rows per second of `update` over the same rows, rounds interleaved, best of
//! the rounds, at ℓ = 32 and d from 64 to 1024.
//!
//! `cargo bench -p sketchpipe-core --bench fd_routes` (about a minute). It prints, per `d`, the
//! rows/s of `exact`, of each route and of the route `FrequentDirections::new` picks, and the
//! picked route's ratio to `exact` (> 1: faster).

use std::hint::black_box;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sketchpipe_core::eigen::fd::{FrequentDirections, Route};
use sketchpipe_core::eigen::Gram;

const ELL: usize = 32;
const BATCH: usize = 8192;
const ROUNDS: usize = 3;

fn rows_per_sec(n: usize, run: impl Fn()) -> f64 {
    let t = Instant::now();
    run();
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    println!("| d | exact rows/s | FD rows (buffer) | FD Gram | FD (picked) | picked / exact |");
    println!("|---|---|---|---|---|---|");
    for d in [64usize, 128, 256, 512, 1024] {
        let n = (400 * d).clamp(200_000, 400_000);
        let mut rng = ChaCha8Rng::seed_from_u64(d as u64);
        let batch: Vec<f64> = (0..BATCH * d).map(|_| rng.random::<f64>() - 0.5).collect();
        let batches = n / BATCH;
        let n = batches * BATCH;
        let exact = || {
            let mut g = Gram::new(d).unwrap();
            for _ in 0..batches {
                g.update(black_box(&batch));
            }
            black_box(g.finish().unwrap());
        };
        let fd = |route: Route| {
            let mut f = FrequentDirections::with_route(d, ELL, route).unwrap();
            for _ in 0..batches {
                f.update(black_box(&batch)).unwrap();
            }
            black_box(f.finish().unwrap());
        };
        let gram = Route::Gram { every: usize::MAX };
        let mut best = [0.0f64; 3];
        for _ in 0..ROUNDS {
            best[0] = best[0].max(rows_per_sec(n, exact));
            best[1] = best[1].max(rows_per_sec(n, || fd(Route::Rows)));
            best[2] = best[2].max(rows_per_sec(n, || fd(gram)));
        }
        let picked = match Route::auto(d, ELL) {
            Route::Rows => (best[1], "buffer"),
            Route::Gram { .. } => (best[2], "Gram"),
        };
        println!(
            "| {d} | {:.0} | {:.0} | {:.0} | {} | {:.2} |",
            best[0],
            best[1],
            best[2],
            picked.1,
            picked.0 / best[0]
        );
    }
}
