//! Training speed on one core for the table in docs/benchmarks.md: ridge on 1,000,000 rows of
//! 32 features; 100 boosted trees of depth 6 on 200,000 rows of 32 features; and one
//! walk-forward run (5 folds and the final fit) of the `stockcast train` defaults (100 trees of
//! depth 3) on 100,000 rows. Synthetic rows: a nonlinear function of the features plus noise.
//!
//!     unset RUST_BACKTRACE; cargo bench -p stockcast-model --bench train

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stockcast_model::train::{
    Algorithm, Dataset, FoldSpec, Gbt, GbtParams, Ridge, TrainSpec, train,
};

const D: usize = 32;

fn rows(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let x: Vec<f32> = (0..n * D).map(|_| next()).collect();
    let y = x
        .chunks_exact(D)
        .map(|r| r[0] - 0.5 * r[1] * r[2] + (r[3] > 0.1) as i32 as f32 * 0.3 + 0.1 * next())
        .collect();
    (x, y)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("train");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));

    let (x, y) = rows(1_000_000);
    group.throughput(Throughput::Elements(y.len() as u64));
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("ridge_1000000x32", |b| {
        b.iter(|| Ridge::fit(&x, &y, D, 1.0).unwrap())
    });

    let (x, y) = rows(200_000);
    let deep = GbtParams {
        trees: 100,
        max_depth: 6,
        learning_rate: 0.1,
        subsample: 1.0,
        ..GbtParams::default()
    };
    group.throughput(Throughput::Elements(y.len() as u64));
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("gbt_100_trees_depth_6_200000x32", |b| {
        b.iter(|| Gbt::fit(&x, &y, D, &deep).unwrap())
    });

    let (x, y) = rows(100_000);
    let mut data = Dataset::new((0..D).map(|i| format!("f{i}")).collect());
    for (r, (row, &t)) in x.chunks_exact(D).zip(&y).enumerate() {
        let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        // 100 symbols a day
        data.push(
            &format!("S{}", r % 100),
            (r / 100) as i64 * 86_400,
            &row,
            f64::from(t),
        );
    }
    let spec = TrainSpec {
        algorithm: Algorithm::Gbt(GbtParams::default()),
        folds: FoldSpec {
            folds: 5,
            horizon: 1,
            embargo: 1,
            min_train_rows: 50,
        },
        periods_per_year: 252.0,
    };
    group.throughput(Throughput::Elements(data.len() as u64));
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("walk_forward_5_folds_gbt_defaults_100000x32", |b| {
        b.iter(|| train(&data, &spec).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
