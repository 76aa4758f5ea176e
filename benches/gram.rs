//! Criterion bench of the exact core's blocked Gram update (`G += XᵀX` per record batch).
//!
//! `cargo bench --bench gram` — reports time per 8192-row batch for d ∈ {64, 256, 1024};
//! divide 8192 by it for rows/s of the core alone (no Arrow, no I/O).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sketchpipe::eigen::Gram;

fn gram_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("gram_update");
    let batch_rows = 8192;
    for d in [64usize, 256, 1024] {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let rows: Vec<f64> = (0..batch_rows * d)
            .map(|_| rng.random::<f64>() - 0.5)
            .collect();
        let mut gram = Gram::new(d).unwrap();
        group.throughput(Throughput::Elements(batch_rows as u64));
        group.sample_size(if d >= 1024 { 10 } else { 30 });
        group.bench_with_input(BenchmarkId::from_parameter(d), &rows, |b, rows| {
            b.iter(|| gram.update(std::hint::black_box(rows)))
        });
    }
    group.finish();
}

criterion_group!(benches, gram_update);
criterion_main!(benches);
