//! Streaming vs batch equality, warm-up absence and snapshot/resume for every indicator.

use std::fmt::Debug;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stockcast_indicators::*;

/// A random walk with valid bars; ends with a flat stretch to exercise zero-variance paths.
fn random_bars(seed: u64, len: usize) -> Vec<Bar> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut close: f64 = 50.0;
    let mut bars: Vec<Bar> = (0..len)
        .map(|_| {
            let open = close;
            close *= (rng.random::<f64>() - 0.5).mul_add(0.04, 1.0);
            let high = open.max(close) * (1.0 + rng.random::<f64>() * 0.01);
            let low = open.min(close) * (1.0 - rng.random::<f64>() * 0.01);
            let volume = (1e6 * (0.5 + rng.random::<f64>())).round();
            Bar {
                open,
                high,
                low,
                close,
                volume,
            }
        })
        .collect();
    let last = *bars.last().unwrap();
    let flat = Bar {
        open: last.close,
        high: last.close,
        low: last.close,
        close: last.close,
        volume: 1e6,
    };
    bars.extend(std::iter::repeat_n(flat, 40));
    bars
}

/// Runs `make()` over `bars` three ways and checks they agree with `batch`:
/// streaming, batch, and streaming with a JSON snapshot/restore at several points.
fn check<S, O>(
    name: &str,
    bars: &[Bar],
    lookback: usize,
    make: impl Fn() -> S,
    update: impl Fn(&mut S, &Bar) -> Option<O>,
    batch: &[Option<O>],
) where
    S: Serialize + DeserializeOwned + Clone + Debug,
    O: PartialEq + Debug,
{
    let mut s = make();
    let stream: Vec<Option<O>> = bars.iter().map(|b| update(&mut s, b)).collect();
    assert_eq!(stream, batch, "{name}: streaming != batch");

    assert!(
        stream[..lookback].iter().all(Option::is_none),
        "{name}: value inside warm-up"
    );
    assert!(
        stream[lookback].is_some(),
        "{name}: no value at lookback {lookback}"
    );

    for cut in [0, lookback / 2, lookback, lookback + 1, bars.len() / 2] {
        let mut s = make();
        let mut resumed: Vec<Option<O>> = bars[..cut].iter().map(|b| update(&mut s, b)).collect();
        let json = serde_json::to_string(&s).unwrap();
        let mut restored: S = serde_json::from_str(&json).unwrap();
        resumed.extend(bars[cut..].iter().map(|b| update(&mut restored, b)));
        assert_eq!(resumed, batch, "{name}: snapshot at {cut} diverged");
    }
}

fn closes(bars: &[Bar]) -> Vec<f64> {
    bars.iter().map(|b| b.close).collect()
}

#[test]
fn every_indicator_streams_like_its_batch_form() {
    for seed in 0..5 {
        let bars = random_bars(seed, 300);
        let c = closes(&bars);
        for n in [1, 2, 14, 20] {
            check(
                "sma",
                &bars,
                n - 1,
                || Sma::new(n).unwrap(),
                |s, b| s.update(b.close),
                &sma(&c, n).unwrap(),
            );
            check(
                "ema",
                &bars,
                n - 1,
                || Ema::new(n).unwrap(),
                |s, b| s.update(b.close),
                &ema(&c, n).unwrap(),
            );
            check(
                "rsi",
                &bars,
                n,
                || Rsi::new(n).unwrap(),
                |s, b| s.update(b.close),
                &rsi(&c, n).unwrap(),
            );
            check(
                "atr",
                &bars,
                n,
                || Atr::new(n).unwrap(),
                |s, b| s.update(b),
                &atr(&bars, n).unwrap(),
            );
            check(
                "bollinger",
                &bars,
                n - 1,
                || Bollinger::new(n, 2.0).unwrap(),
                |s, b| s.update(b.close),
                &bollinger(&c, n, 2.0).unwrap(),
            );
        }
        for k in [1, 5, 20] {
            check(
                "log return",
                &bars,
                k,
                || LogReturn::new(k).unwrap(),
                |s, b| s.update(b.close),
                &log_return(&c, k).unwrap(),
            );
        }
        for n in [2, 20] {
            check(
                "volatility",
                &bars,
                n,
                || RollingVolatility::new(n).unwrap(),
                |s, b| s.update(b.close),
                &rolling_volatility(&c, n).unwrap(),
            );
            check(
                "volume z",
                &bars,
                n - 1,
                || VolumeZScore::new(n).unwrap(),
                |s, b| s.update(b),
                &volume_zscore(&bars, n).unwrap(),
            );
        }
        check(
            "macd",
            &bars,
            33,
            Macd::standard,
            |s, b| s.update(b.close),
            &macd(&c, 12, 26, 9).unwrap(),
        );
        check(
            "macd 3/5/2",
            &bars,
            5,
            || Macd::new(3, 5, 2).unwrap(),
            |s, b| s.update(b.close),
            &macd(&c, 3, 5, 2).unwrap(),
        );
        check(
            "hl range",
            &bars,
            0,
            HlRange::new,
            |s, b| s.update(b),
            &hl_range(&bars),
        );
        check(
            "true range",
            &bars,
            1,
            TrueRange::new,
            |s, b| s.update(b),
            &true_ranges(&bars),
        );
    }
}

fn true_ranges(bars: &[Bar]) -> Vec<Option<f64>> {
    let mut tr = TrueRange::new();
    bars.iter().map(|b| tr.update(b)).collect()
}

#[test]
fn lookback_methods_agree_with_docs() {
    assert_eq!(Sma::new(20).unwrap().lookback(), 19);
    assert_eq!(Ema::new(20).unwrap().lookback(), 19);
    assert_eq!(Rsi::new(14).unwrap().lookback(), 14);
    assert_eq!(Macd::standard().lookback(), 33);
    assert_eq!(Bollinger::new(20, 2.0).unwrap().lookback(), 19);
    assert_eq!(Atr::new(14).unwrap().lookback(), 14);
    assert_eq!(LogReturn::new(5).unwrap().lookback(), 5);
    assert_eq!(RollingVolatility::new(20).unwrap().lookback(), 20);
    assert_eq!(VolumeZScore::new(20).unwrap().lookback(), 19);
    assert_eq!(HlRange::new().lookback(), 0);
}

#[test]
fn bad_periods_are_rejected() {
    assert!(Sma::new(0).is_err());
    assert!(Ema::new(0).is_err());
    assert!(Rsi::new(0).is_err());
    assert!(Atr::new(0).is_err());
    assert!(LogReturn::new(0).is_err());
    assert!(RollingVolatility::new(1).is_err());
    assert!(VolumeZScore::new(1).is_err());
    assert_eq!(
        Macd::new(26, 12, 9).unwrap_err(),
        IndicatorError::MacdPeriods { fast: 26, slow: 12 }
    );
    assert_eq!(
        Sma::new(0).unwrap_err().to_string(),
        "sma period 0 is below the minimum of 1"
    );
}

#[test]
fn flat_series_has_no_scale_free_values() {
    let bars = random_bars(7, 100);
    let tail = &bars[bars.len() - 25..];
    // Over the flat tail: zero width bands give no %b, zero volatility, no volume z-score.
    let b = bollinger(&closes(tail), 20, 2.0).unwrap();
    let last = b.last().unwrap().unwrap();
    assert_eq!(last.upper, last.lower);
    assert_eq!(last.percent_b, None);
    assert_eq!(last.bandwidth, Some(0.0));
    let v = rolling_volatility(&closes(tail), 20).unwrap();
    assert_eq!(*v.last().unwrap(), Some(0.0));
    let z = volume_zscore(tail, 20).unwrap();
    assert_eq!(*z.last().unwrap(), None);
    // TA-Lib gives RSI 0 when there is no movement at all.
    assert_eq!(*rsi(&closes(tail), 14).unwrap().last().unwrap(), Some(0.0));
}

#[test]
fn hand_checked_values() {
    let c = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(
        sma(&c, 3).unwrap(),
        [None, None, Some(2.0), Some(3.0), Some(4.0)]
    );
    // k = 0.5, seed = mean(1,2,3) = 2, then 2 + (4-2)/2 = 3, 3 + (5-3)/2 = 4.
    assert_eq!(
        ema(&c, 3).unwrap(),
        [None, None, Some(2.0), Some(3.0), Some(4.0)]
    );
    let r = log_return(&[1.0, 2.0, 4.0], 1).unwrap();
    assert_eq!(r[0], None);
    assert!((r[2].unwrap() - 2f64.ln()).abs() < 1e-15);
    let bar = Bar {
        open: 10.0,
        high: 11.0,
        low: 9.0,
        close: 10.0,
        volume: 1.0,
    };
    assert_eq!(hl_range(&[bar]), [Some(0.2)]);
}
