//! Latency of the Redis online store: a read of 1 and of 100 symbols, and a write of a
//! 100-key batch, each with a 16-feature vector. Redis comes from `STOCKCAST_TEST_REDIS_URL`,
//! else `redis://127.0.0.1:6379`:
//! `env -u RUST_BACKTRACE cargo bench -p stockcast-feature-store --bench online`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stockcast_feature_store::store::redis::{RedisOnline, RedisSettings};
use stockcast_feature_store::store::{OnlineStore, OnlineWrite, ViewId};
use stockcast_runtime::Secret;

const FEATURES: usize = 16;
/// 2024-01-02 00:00 UTC.
const T0: i64 = 1_704_153_600;

fn url() -> String {
    std::env::var("STOCKCAST_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

fn batch(view: &ViewId, symbols: &[String], event_time: i64) -> Vec<OnlineWrite> {
    symbols
        .iter()
        .enumerate()
        .map(|(i, symbol)| OnlineWrite {
            view: view.clone(),
            symbol: symbol.clone(),
            event_time,
            values: (0..FEATURES)
                .map(|f| (i * FEATURES + f) as f64 * 0.01)
                .collect(),
            ttl: Duration::from_secs(600),
        })
        .collect()
}

fn online(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let settings = RedisSettings {
        url: Secret::new(url()),
        key_prefix: format!("stockcast:bench:{}", std::process::id()),
        ..RedisSettings::default()
    };
    let store = runtime
        .block_on(RedisOnline::connect(&settings))
        .expect("Redis (scripts/deps.sh up redis)");
    let view = ViewId::new("default", 1);
    let symbols: Vec<String> = (0..100).map(|i| format!("SYM{i:03}")).collect();
    runtime
        .block_on(store.write(&batch(&view, &symbols, T0)))
        .unwrap();

    let mut group = c.benchmark_group("online_redis");
    let one = vec![symbols[0].clone()];
    group.throughput(Throughput::Elements(1));
    group.bench_function("read_1", |b| {
        b.iter(|| {
            runtime
                .block_on(store.read(&view, black_box(&one)))
                .unwrap()
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("read_100", |b| {
        b.iter(|| {
            runtime
                .block_on(store.read(&view, black_box(&symbols)))
                .unwrap()
        })
    });
    // Each batch has a newer event time than the last, so every write applies.
    let mut t = T0;
    group.bench_function("write_100", |b| {
        b.iter_batched(
            || {
                t += 1;
                batch(&view, &symbols, t)
            },
            |writes| runtime.block_on(store.write(black_box(&writes))).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
    runtime.block_on(store.close());
}

criterion_group!(benches, online);
criterion_main!(benches);
