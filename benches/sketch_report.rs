//! The coordinated-sketch report: relative Frobenius error `‖W − AᵀB‖_F / (‖A‖_F ‖B‖_F)`
//! against storage (64-bit words per sketch, counted as in §2 of `docs/algorithms.md`) for
//! `priority`, `threshold`, `jl` and `countsketch` (Daliri, Freire, Li, Musco,
//! arXiv:2501.17836, Figure 2's synthetic setting).
//!
//! `cargo bench --bench sketch_report`. Two tables of `SKETCHPIPE_REPORT_ROWS` rows (default
//! 5 000) with all keys shared; every entry non-zero with probability `density`, uniform in
//! `[−1, 1]`; five entries per table set to ±10 (outliers). Families: `d = m = 50` at 10 %,
//! 40 %, 80 % density and `d = m = 400` at 1 % and 5 %. For each storage budget `W` per sketch,
//! linear sketches get `t = W / d` rows and samplers `k = W / (1 + 1.5 s)` rows (`s` the mean
//! non-zeros per row), so both sides store about `W` words; mean error over
//! `SKETCHPIPE_REPORT_SEEDS` seeds (default 10). Prints one table per family, and the ratio of
//! JL's error to priority's.

mod common;

use common::env_or;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sketchpipe::hash::Key;
use sketchpipe::sketch::linear::{self, LinearSketch};
use sketchpipe::sketch::priority::PrioritySketch;
use sketchpipe::sketch::threshold::ThresholdSketch;
use sketchpipe::sketch::{estimate_product, Method};

fn table(n: usize, d: usize, density: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m: Vec<f64> = (0..n * d)
        .map(|_| {
            if rng.random::<f64>() < density {
                rng.random::<f64>() * 2.0 - 1.0
            } else {
                0.0
            }
        })
        .collect();
    for _ in 0..5 {
        let i = rng.random_range(0..m.len());
        m[i] = if rng.random_bool(0.5) { 10.0 } else { -10.0 };
    }
    m
}

fn rel_error(w: &[f64], exact: &[f64], scale: f64) -> f64 {
    w.iter()
        .zip(exact)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt()
        / scale
}

fn main() {
    let n: usize = env_or("SKETCHPIPE_REPORT_ROWS", 5000);
    let seeds: u64 = env_or("SKETCHPIPE_REPORT_SEEDS", 10);
    let families: [(usize, f64, [usize; 4]); 5] = [
        (50, 0.10, [10, 20, 40, 80]),
        (50, 0.40, [10, 20, 40, 80]),
        (50, 0.80, [10, 20, 40, 80]),
        (400, 0.01, [5, 10, 20, 40]),
        (400, 0.05, [5, 10, 20, 40]),
    ];
    for (d, density, ts) in families {
        let a = table(n, d, density, 1);
        let b = table(n, d, density, 2);
        let mut exact = vec![0.0; d * d];
        for i in 0..n {
            let (ra, rb) = (&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
            for (x, va) in ra.iter().enumerate() {
                if *va != 0.0 {
                    for (y, vb) in rb.iter().enumerate() {
                        exact[x * d + y] += va * vb;
                    }
                }
            }
        }
        let fro = |m: &[f64]| m.iter().map(|v| v * v).sum::<f64>().sqrt();
        let scale = fro(&a) * fro(&b);
        let s = a.iter().filter(|v| **v != 0.0).count() as f64 / n as f64;
        println!(
            "\nd = m = {d}, density {:.0} % ({s:.1} non-zeros per row), n = {n}, mean of {seeds} seeds:",
            density * 100.0
        );
        println!(
            "  {:>7} {:>6} {:>10} {:>10} {:>10} {:>12} {:>9}",
            "words", "k", "priority", "threshold", "jl", "countsketch", "jl/prio"
        );
        for t in ts {
            let words = t * d;
            let k = ((words as f64) / (1.0 + 1.5 * s)).floor().max(2.0) as usize;
            let mut err = [0.0f64; 4];
            for seed in 0..seeds {
                let keys = |i: usize| Key::Int(i as i64);
                let mut pa = PrioritySketch::new(k, d, seed);
                let mut pb = PrioritySketch::new(k, d, seed);
                let mut ta = ThresholdSketch::new(k, d, seed);
                let mut tb = ThresholdSketch::new(k, d, seed);
                let mut ja = LinearSketch::new(Method::Jl, t, d, seed).unwrap();
                let mut jb = LinearSketch::new(Method::Jl, t, d, seed).unwrap();
                let mut ca = LinearSketch::new(Method::CountSketch, t, d, seed).unwrap();
                let mut cb = LinearSketch::new(Method::CountSketch, t, d, seed).unwrap();
                for i in 0..n {
                    let (ra, rb) = (&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
                    pa.update(keys(i), ra);
                    pb.update(keys(i), rb);
                    ta.update(keys(i), ra);
                    tb.update(keys(i), rb);
                    ja.update(keys(i), ra);
                    jb.update(keys(i), rb);
                    ca.update(keys(i), ra);
                    cb.update(keys(i), rb);
                }
                let estimates = [
                    estimate_product(&pa.finish(), &pb.finish()).unwrap(),
                    estimate_product(&ta.finish(), &tb.finish()).unwrap(),
                    linear::estimate_product(&ja, &jb).unwrap(),
                    linear::estimate_product(&ca, &cb).unwrap(),
                ];
                for (e, w) in err.iter_mut().zip(&estimates) {
                    *e += rel_error(w, &exact, scale) / seeds as f64;
                }
            }
            println!(
                "  {words:>7} {k:>6} {:>10.4} {:>10.4} {:>10.4} {:>12.4} {:>9.2}",
                err[0],
                err[1],
                err[2],
                err[3],
                err[2] / err[0]
            );
        }
    }
}
