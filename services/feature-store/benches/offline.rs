//! Offline store speed: one write of 5,000 bars + 5,000 feature rows (16 features), and a
//! point-in-time query of 10,000 entity rows with labels, on PostgreSQL
//! (`scripts/deps.sh up pg`) and on embedded SQLite.
//!
//! `cargo bench -p stockcast-feature-store --bench offline`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stockcast_feature_store::store::postgres::PostgresOffline;
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_feature_store::store::{
    FeatureRow, OfflineStore, PointInTimeQuery, Ts, ViewId, ViewWrite, WriteBatch,
};
use stockcast_market::{Bar, Interval};
use tokio::runtime::Runtime;

const T0: Ts = 1_704_153_600;
const SEC: Ts = 60;
const FEATURES: usize = 16;
/// Symbols × bars per symbol of one write batch (5,000 bars + 5,000 rows).
const BATCH_SYMBOLS: i64 = 50;
const BATCH_BARS: i64 = 100;
/// History the point-in-time query reads from: symbols × bars.
const HISTORY_SYMBOLS: i64 = 100;
const HISTORY_BARS: i64 = 2_000;
const ENTITY_ROWS: usize = 10_000;
const HORIZON: u32 = 5;

fn view() -> ViewId {
    ViewId::new("bench", 1)
}

/// Bars `first..first + count` of `symbols` symbols with their feature rows.
fn batch(symbols: i64, first: i64, count: i64) -> WriteBatch {
    let mut bars = Vec::with_capacity((symbols * count) as usize);
    let mut rows = Vec::with_capacity(bars.capacity());
    for s in 0..symbols {
        let symbol = format!("S{s:03}");
        for i in first..first + count {
            let ts = T0 + i * SEC;
            let close = 100.0 + ((i * 7 + s) % 50) as f64;
            bars.push(Bar {
                symbol: symbol.clone(),
                interval: Interval::M1,
                ts,
                open: close - 0.5,
                high: close + 1.0,
                low: close - 1.0,
                close,
                volume: 1_000.0,
            });
            let mut values = vec![close / 100.0; FEATURES];
            values[0] = f64::NAN;
            rows.push(FeatureRow {
                symbol: symbol.clone(),
                event_time: ts + SEC,
                values,
            });
        }
    }
    WriteBatch {
        bars,
        views: vec![ViewWrite {
            view: view(),
            rows,
            states: Vec::new(),
            keep_existing: false,
        }],
        revisions: Vec::new(),
        chunk: None,
    }
}

/// Deterministic pseudo-random entity rows over the history.
fn entity_rows() -> Vec<(String, Ts)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..ENTITY_ROWS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let symbol = format!("S{:03}", x % HISTORY_SYMBOLS as u64);
            let bar = (x >> 20) % HISTORY_BARS as u64;
            (symbol, T0 + bar as i64 * SEC + 30)
        })
        .collect()
}

fn write_bench(c: &mut Criterion, rt: &Runtime, name: &str, store: &Arc<dyn OfflineStore>) {
    let mut group = c.benchmark_group("offline_write");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements((BATCH_SYMBOLS * BATCH_BARS) as u64));
    let mut round: i64 = 0;
    group.bench_function(format!("{name}/5000_bars+5000_rows_16f"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Fresh keys each time: new bars and rows, as a consumer writes them.
                let batch = batch(BATCH_SYMBOLS, 1_000_000 + round * BATCH_BARS, BATCH_BARS);
                round += 1;
                let start = Instant::now();
                rt.block_on(store.write(&batch)).unwrap();
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn point_in_time_bench(c: &mut Criterion, rt: &Runtime, name: &str, store: &Arc<dyn OfflineStore>) {
    for first in (0..HISTORY_BARS).step_by(500) {
        rt.block_on(store.write(&batch(HISTORY_SYMBOLS, first, 500)))
            .unwrap();
    }
    let rows = entity_rows();
    let view = view();
    let mut group = c.benchmark_group("offline_point_in_time");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(ENTITY_ROWS as u64));
    group.bench_function(format!("{name}/10000_rows_label_h5"), |b| {
        b.iter(|| {
            let answered = rt
                .block_on(store.point_in_time(PointInTimeQuery {
                    view: &view,
                    interval: Interval::M1,
                    rows: &rows,
                    label_horizon: Some(HORIZON),
                }))
                .unwrap();
            assert_eq!(answered.len(), ENTITY_ROWS);
            answered
        });
    });
    group.finish();
}

fn offline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let settings = DatabaseSettings {
        url: stockcast_runtime::Secret::new(stockcast_testkit::POSTGRES.require()),
        schema: stockcast_testkit::unique("fs_bench"),
        max_connections: 4,
        acquire_timeout_ms: 30_000,
    };
    let postgres = rt.block_on(PostgresOffline::connect(&settings)).unwrap();
    let store: Arc<dyn OfflineStore> = Arc::new(postgres.clone());
    point_in_time_bench(c, &rt, "postgres", &store);
    write_bench(c, &rt, "postgres", &store);
    rt.block_on(postgres.drop_schema()).unwrap();

    let sqlite = rt
        .block_on(open(
            &DatabaseSettings::default(),
            &stockcast_runtime::Shutdown::new(),
        ))
        .unwrap();
    point_in_time_bench(c, &rt, "sqlite", &sqlite);
    write_bench(c, &rt, "sqlite", &sqlite);
}

criterion_group!(benches, offline);
criterion_main!(benches);
