//! Mining alone, over the peers' cosine distance matrix (N = 1024 and 4096, D = 128,
//! classes of 4), both TF Similarity strategy pairs, f32 and f64:
//! - `rows`: `mine_row_grouped` over every row of the full matrix, the rows mined where
//!   they lie in memory (TripletLoss's path for query/key batches and the distances other
//!   than cosine and inner product);
//! - `triangle`: `TriangleMiner` over the upper triangle alone, on one thread (TripletLoss's
//!   path for a batch against itself under cosine or inner product).
//!
//! Both include reading the matrix from memory. On x86-64 CPUs with AVX2 the row scans run
//! in explicit SIMD (`metric-loss-mining`'s `simd.rs`) and the column updates in
//! AVX2-compiled code.
//!
//! ```text
//! cargo bench -p metric-loss-benches --bench mining
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use metric_loss_benches::make_batch;
use metric_loss_core::{Distance, Embeddings, Float, NegativeStrategy, PositiveStrategy};
use metric_loss_distances::DistanceKind;
use metric_loss_mining::{
    mine_row_grouped, KeyClasses, Mined, RowContext, TriangleMiner, UpperTriangle,
};

const PAIRS: [(PositiveStrategy, NegativeStrategy); 2] = [
    (PositiveStrategy::Hard, NegativeStrategy::SemiHard),
    (PositiveStrategy::Hard, NegativeStrategy::Hard),
];

fn run<T: Float>(c: &mut Criterion, n: usize) {
    let d = 128;
    let (labels, x) = make_batch::<T>(n, d, 0);
    let e = Embeddings::from_row_major(&x, n, d).unwrap();
    let mut matrix = vec![T::ZERO; n * n];
    DistanceKind::Cosine
        .matrix(e, e, true, &mut Vec::new(), &mut matrix)
        .unwrap();
    let mut classes = KeyClasses::default();
    classes.rebuild(&labels);
    let mut group = c.benchmark_group(format!("mining/{}", T::DTYPE));
    group
        .sample_size(if n >= 4096 { 10 } else { 30 })
        .measurement_time(Duration::from_secs(if n >= 4096 { 6 } else { 3 }))
        .throughput(Throughput::Elements((n * n) as u64));
    for (pos, neg) in PAIRS {
        let pair = format!("{}-{}", pos.name(), neg.name());
        let id = BenchmarkId::new(format!("rows/{pair}"), format!("N{n}"));
        group.bench_function(id, |b| {
            b.iter(|| {
                for (i, row) in matrix.chunks_exact_mut(n).enumerate() {
                    let ctx = RowContext {
                        anchor: i,
                        anchor_label: labels[i],
                        key_labels: &labels,
                        remove_diagonal: true,
                    };
                    let members = classes.members(labels[i]);
                    black_box(mine_row_grouped(row, &ctx, members, pos, neg).unwrap());
                }
            })
        });
        let mut miner = TriangleMiner::default();
        let mut mined = vec![Mined::placeholder(); n];
        let id = BenchmarkId::new(format!("triangle/{pair}"), format!("N{n}"));
        group.bench_function(id, |b| {
            b.iter(|| {
                let triangle = UpperTriangle {
                    distances: &mut matrix,
                    n,
                    labels: &labels,
                    remove_diagonal: true,
                };
                let serial = |parts: &mut [_], task: &(dyn Fn(&mut _) + Sync)| {
                    parts.iter_mut().for_each(task)
                };
                miner
                    .mine(triangle, &classes, pos, neg, &[0, n], serial, &mut mined)
                    .unwrap();
                black_box(&mined);
            })
        });
    }
    group.finish();
}

fn mining(c: &mut Criterion) {
    for n in [1024, 4096] {
        run::<f32>(c, n);
        run::<f64>(c, n);
    }
}

criterion_group!(benches, mining);
criterion_main!(benches);
