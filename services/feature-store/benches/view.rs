//! Streaming update of the default view (16 features): bar-updates per second on one core.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stockcast_feature_store::view::{View, default_view};
use stockcast_market::{Bar, Interval};

fn bars(n: usize) -> Vec<Bar> {
    (0..n)
        .map(|i| {
            let x = i as f64;
            let close = 100.0 + (x * 0.01).sin() * 10.0 + (x * 0.37).cos();
            Bar {
                symbol: "BENCH".into(),
                interval: Interval::D1,
                ts: i as i64 * 86_400,
                open: close - 0.2,
                high: close + 0.7,
                low: close - 0.8,
                close,
                volume: 1e6 + (x * 0.3).sin() * 2e5,
            }
        })
        .collect()
}

fn update(c: &mut Criterion) {
    let view = View::compile(&default_view()).unwrap();
    let bars = bars(10_000);
    let mut group = c.benchmark_group("default_view");
    group.throughput(Throughput::Elements(bars.len() as u64));
    group.bench_function("update_10k_bars", |b| {
        let mut out = vec![0.0; view.features.len()];
        b.iter(|| {
            let mut state = view.new_state();
            for bar in &bars {
                view.update(&mut state, bar, &mut out);
            }
            std::hint::black_box(&out);
        })
    });
    group.bench_function("snapshot_roundtrip", |b| {
        let mut state = view.new_state();
        let mut out = vec![0.0; view.features.len()];
        for bar in &bars[..100] {
            view.update(&mut state, bar, &mut out);
        }
        b.iter(|| {
            let bytes = state.to_bytes();
            std::hint::black_box(
                stockcast_feature_store::view::ViewState::from_bytes(&view, &bytes).unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, update);
criterion_main!(benches);
