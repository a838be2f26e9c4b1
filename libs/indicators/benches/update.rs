//! Streaming update cost: one bar through every indicator of a typical feature set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stockcast_indicators::*;

#[derive(Clone)]
struct FeatureSet {
    r1: LogReturn,
    r5: LogReturn,
    r20: LogReturn,
    sma: Sma,
    ema: Ema,
    rsi: Rsi,
    macd: Macd,
    bb: Bollinger,
    atr: Atr,
    vol: RollingVolatility,
    vz: VolumeZScore,
    hl: HlRange,
}

impl FeatureSet {
    fn new() -> Self {
        Self {
            r1: LogReturn::new(1).unwrap(),
            r5: LogReturn::new(5).unwrap(),
            r20: LogReturn::new(20).unwrap(),
            sma: Sma::new(20).unwrap(),
            ema: Ema::new(20).unwrap(),
            rsi: Rsi::new(14).unwrap(),
            macd: Macd::standard(),
            bb: Bollinger::new(20, 2.0).unwrap(),
            atr: Atr::new(14).unwrap(),
            vol: RollingVolatility::new(20).unwrap(),
            vz: VolumeZScore::new(20).unwrap(),
            hl: HlRange::new(),
        }
    }

    fn update(&mut self, b: &Bar) -> f64 {
        let c = b.close;
        let mut acc = 0.0;
        acc += self.r1.update(c).unwrap_or(0.0);
        acc += self.r5.update(c).unwrap_or(0.0);
        acc += self.r20.update(c).unwrap_or(0.0);
        acc += self.sma.update(c).unwrap_or(0.0);
        acc += self.ema.update(c).unwrap_or(0.0);
        acc += self.rsi.update(c).unwrap_or(0.0);
        acc += self.macd.update(c).map_or(0.0, |m| m.hist);
        acc += self.bb.update(c).and_then(|o| o.percent_b).unwrap_or(0.0);
        acc += self.atr.update(b).unwrap_or(0.0);
        acc += self.vol.update(c).unwrap_or(0.0);
        acc += self.vz.update(b).unwrap_or(0.0);
        acc += self.hl.update(b).unwrap_or(0.0);
        acc
    }
}

fn bars(n: usize) -> Vec<Bar> {
    let mut close = 100.0_f64;
    (0..n)
        .map(|i| {
            let open = close;
            close *= 1.0 + 0.01 * ((i as f64) * 0.7).sin();
            Bar {
                open,
                high: open.max(close) * 1.002,
                low: open.min(close) * 0.998,
                close,
                volume: 1e6 + 1e5 * ((i as f64) * 1.3).cos(),
            }
        })
        .collect()
}

fn update(c: &mut Criterion) {
    let input = bars(10_000);
    let mut group = c.benchmark_group("indicators");
    group.throughput(Throughput::Elements(input.len() as u64));
    group.bench_function("feature_set_update", |b| {
        b.iter(|| {
            let mut set = FeatureSet::new();
            let mut acc = 0.0;
            for bar in &input {
                acc += set.update(black_box(bar));
            }
            black_box(acc)
        });
    });
    group.finish();
}

criterion_group!(benches, update);
criterion_main!(benches);
