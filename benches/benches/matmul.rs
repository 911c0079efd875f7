//! Our direct `matrixmultiply` call on row-major buffers (`Float::gemm`) against nalgebra's
//! product, which first needs the row-major embeddings copied into column-major matrices
//! (`DMatrix::from_row_slice`) and allocates its result. The shape is the distance
//! matrix's: `X Xᵀ` for an `n x d` batch.
//!
//! ```text
//! cargo bench -p metric-loss-benches --bench matmul
//! ```
//!
//! The measured ratio is quoted in the SAFETY comment of `metric-loss-core`'s `float.rs`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use metric_loss_benches::make_batch;
use metric_loss_core::Float;
use nalgebra::DMatrix;

fn shapes() -> Vec<(usize, usize)> {
    if std::env::var_os("METRIC_LOSS_BENCH_FULL").is_some() {
        vec![(256, 128), (1024, 128), (1024, 512), (4096, 128)]
    } else {
        vec![(256, 128), (1024, 128)]
    }
}

fn matmul(c: &mut Criterion) {
    for (n, d) in shapes() {
        let (_, x) = make_batch::<f32>(n, d, 0);
        let mut out = vec![0.0f32; n * n];
        let mut group = c.benchmark_group(format!("matmul/f32/N{n}xD{d}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(4));
        group.bench_function("direct_row_major", |b| {
            b.iter(|| {
                f32::gemm(
                    n,
                    d,
                    n,
                    1.0,
                    (black_box(&x), d, 1),
                    (&x, 1, d),
                    0.0,
                    (&mut out, n, 1),
                );
                black_box(&out);
            })
        });
        group.bench_function("nalgebra_copy_column_major", |b| {
            b.iter(|| {
                // What the safe nalgebra route needs per call: a column-major copy of the
                // row-major batch, then the product into a freshly allocated result.
                let a = DMatrix::from_row_slice(n, d, black_box(&x));
                let product = &a * a.transpose();
                black_box(product);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, matmul);
criterion_main!(benches);
