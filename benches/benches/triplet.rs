//! TripletLoss forward and forward + backward, with the bare matrix product of the same
//! shape as the floor.
//!
//! Default run: a representative subset (cosine at N ∈ {256, 1024, 4096}, D = 128, both
//! TF Similarity strategy pairs, f32 and f64 at N = 1024; every distance at N = 1024, D =
//! 128). Set `METRIC_LOSS_BENCH_FULL=1` for the whole grid: N ∈ {64, 256, 1024, 4096},
//! D ∈ {64, 128, 512}, every distance, every strategy pair, f32 and f64.
//!
//! ```text
//! cargo bench -p metric-loss-benches --bench triplet
//! cargo bench -p metric-loss-benches --bench triplet --features threads -- 'N1024'
//! METRIC_LOSS_BENCH_FULL=1 cargo bench -p metric-loss-benches --bench triplet
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use metric_loss_benches::{make_batch, BenchSpec, GemmFloor};
use metric_loss_core::{Batch, Embeddings, Float, LossInput, LossOutput, MetricLossExt, Workspace};

const DISTANCES: [&str; 6] = [
    "cosine",
    "inner_product",
    "euclidean",
    "squared_euclidean",
    "manhattan",
    "snr",
];
const PAIRS: [(&str, &str); 6] = [
    ("hard", "semi-hard"),
    ("hard", "hard"),
    ("hard", "easy"),
    ("easy", "semi-hard"),
    ("easy", "hard"),
    ("easy", "easy"),
];

fn full() -> bool {
    std::env::var_os("METRIC_LOSS_BENCH_FULL").is_some_and(|v| !v.is_empty() && v != "0")
}

/// One case: a spec and a precision.
struct Case {
    spec: BenchSpec,
    f64: bool,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut push = |n, d, distance: &str, (pos, neg): (&str, &str), margin, f64| {
        cases.push(Case {
            spec: BenchSpec {
                n,
                d,
                distance: distance.into(),
                positive: pos.into(),
                negative: neg.into(),
                margin,
                seed: 0,
            },
            f64,
        });
    };
    if full() {
        for n in [64, 256, 1024, 4096] {
            for d in [64, 128, 512] {
                for distance in DISTANCES {
                    for pair in PAIRS {
                        for f64 in [false, true] {
                            push(n, d, distance, pair, None, f64);
                        }
                    }
                }
            }
        }
    } else {
        for n in [256, 1024, 4096] {
            push(n, 128, "cosine", PAIRS[0], None, false);
            push(n, 128, "cosine", PAIRS[1], Some(1.0), false);
        }
        push(1024, 128, "cosine", PAIRS[0], None, true);
        for distance in &DISTANCES[1..] {
            push(1024, 128, distance, PAIRS[0], None, false);
        }
    }
    cases
}

fn run_case<T: Float>(c: &mut Criterion, case: &Case) {
    let spec = &case.spec;
    let loss = spec.loss().expect("valid spec");
    let (labels, x) = make_batch::<T>(spec.n, spec.d, spec.seed);
    let batch = Batch::new(
        &labels,
        Embeddings::from_row_major(&x, spec.n, spec.d).unwrap(),
    )
    .unwrap();
    let input = LossInput::new(batch);
    let fwd = input.without_gradient();
    let mut ws = Workspace::new();
    let mut out = LossOutput::new();
    let name = format!(
        "triplet/{}/{}/{}-{}/{}",
        T::DTYPE,
        spec.distance,
        spec.positive,
        spec.negative,
        spec.margin.map_or("soft".to_string(), |m| format!("m{m}"))
    );
    let mut group = c.benchmark_group(name);
    configure(&mut group, spec.n);
    group.throughput(Throughput::Elements((spec.n * spec.n) as u64));
    let id = format!("N{}xD{}", spec.n, spec.d);
    group.bench_function(BenchmarkId::new("fwd", &id), |b| {
        b.iter(|| {
            loss.compute_into(black_box(&fwd), &mut ws, &mut out)
                .unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("fwd_bwd", &id), |b| {
        b.iter(|| {
            loss.compute_into(black_box(&input), &mut ws, &mut out)
                .unwrap()
        })
    });
    group.finish();
}

fn configure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: usize,
) {
    if n >= 4096 {
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(8));
    } else if n >= 1024 {
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(4));
    }
}

fn triplet(c: &mut Criterion) {
    for case in cases() {
        if case.f64 {
            run_case::<f64>(c, &case);
        } else {
            run_case::<f32>(c, &case);
        }
    }
}

/// The floor: `n x d` times `d x n` with `Float::gemm`, every shape the cases use.
fn gemm_floor(c: &mut Criterion) {
    let mut shapes: Vec<(usize, usize, bool)> = cases()
        .iter()
        .map(|c| (c.spec.n, c.spec.d, c.f64))
        .collect();
    shapes.sort_unstable();
    shapes.dedup();
    for (n, d, f64) in shapes {
        let dtype = if f64 { "f64" } else { "f32" };
        let mut group = c.benchmark_group(format!("gemm/{dtype}"));
        configure(&mut group, n);
        group.throughput(Throughput::Elements((n * n) as u64));
        let id = format!("N{n}xD{d}");
        if f64 {
            let mut g = GemmFloor::<f64>::new(n, d);
            group.bench_function(id, |b| b.iter(|| g.run()));
        } else {
            let mut g = GemmFloor::<f32>::new(n, d);
            group.bench_function(id, |b| b.iter(|| g.run()));
        }
        group.finish();
    }
}

criterion_group!(benches, triplet, gemm_floor);
criterion_main!(benches);
