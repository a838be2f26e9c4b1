//! The streaming engine: the indicator state of one symbol for one view, updated in O(1)
//! per bar, serialized for snapshots.

use serde::{Deserialize, Serialize};
use stockcast_indicators as ind;
use stockcast_market::Bar;

use super::{Ts, View};

/// What a compiled feature computes, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    LogReturn(usize),
    Volatility(usize, f64),
    SmaRatio(usize),
    EmaRatio(usize),
    Rsi(usize),
    Macd(usize, usize, usize, MacdPart),
    Bollinger(usize, f64, BandPart),
    AtrRatio(usize),
    VolumeZScore(usize),
    HlRange,
}

/// Which output of MACD a feature is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MacdPart {
    Line,
    Signal,
    Histogram,
}

/// Which output of the Bollinger bands a feature is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BandPart {
    PercentB,
    Bandwidth,
}

/// The streaming state of one indicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", content = "s")]
pub(crate) enum IndState {
    LogReturn(ind::LogReturn),
    Volatility(ind::RollingVolatility),
    Sma(ind::Sma),
    Ema(ind::Ema),
    Rsi(ind::Rsi),
    Macd(ind::Macd),
    Bollinger(ind::Bollinger),
    Atr(ind::Atr),
    VolumeZScore(ind::VolumeZScore),
    HlRange(ind::HlRange),
}

/// The engine state of one symbol for one view: every feature's indicator state, plus the
/// last bar folded in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewState {
    states: Vec<IndState>,
    /// Open time of the last bar folded in.
    pub last_bar_ts: Option<Ts>,
    /// Bars folded in so far.
    pub bars_seen: i64,
}

impl ViewState {
    /// Serializes the state for a snapshot.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs of numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Restores a snapshot of `view`; fails when it does not belong to that definition.
    pub fn from_bytes(view: &View, bytes: &[u8]) -> Result<Self, String> {
        let state: ViewState = serde_json::from_slice(bytes)
            .map_err(|e| format!("state snapshot of {}: {e}", view.id))?;
        if state.states.len() != view.features.len() {
            return Err(format!(
                "state snapshot of {} has {} features, the view {}",
                view.id,
                state.states.len(),
                view.features.len()
            ));
        }
        Ok(state)
    }
}
impl Kind {
    pub(crate) fn new_state(self) -> Result<IndState, ind::IndicatorError> {
        Ok(match self {
            Kind::LogReturn(n) => IndState::LogReturn(ind::LogReturn::new(n)?),
            Kind::Volatility(n, _) => IndState::Volatility(ind::RollingVolatility::new(n)?),
            Kind::SmaRatio(n) => IndState::Sma(ind::Sma::new(n)?),
            Kind::EmaRatio(n) => IndState::Ema(ind::Ema::new(n)?),
            Kind::Rsi(n) => IndState::Rsi(ind::Rsi::new(n)?),
            Kind::Macd(f, s, g, _) => IndState::Macd(ind::Macd::new(f, s, g)?),
            Kind::Bollinger(n, k, _) => IndState::Bollinger(ind::Bollinger::new(n, k)?),
            Kind::AtrRatio(n) => IndState::Atr(ind::Atr::new(n)?),
            Kind::VolumeZScore(n) => IndState::VolumeZScore(ind::VolumeZScore::new(n)?),
            Kind::HlRange => IndState::HlRange(ind::HlRange::new()),
        })
    }
}

impl IndState {
    pub(crate) fn lookback(&self) -> usize {
        match self {
            IndState::LogReturn(s) => s.lookback(),
            IndState::Volatility(s) => s.lookback(),
            IndState::Sma(s) => s.lookback(),
            IndState::Ema(s) => s.lookback(),
            IndState::Rsi(s) => s.lookback(),
            IndState::Macd(s) => s.lookback(),
            IndState::Bollinger(s) => s.lookback(),
            IndState::Atr(s) => s.lookback(),
            IndState::VolumeZScore(s) => s.lookback(),
            IndState::HlRange(s) => s.lookback(),
        }
    }

    #[inline]
    fn update(&mut self, kind: Kind, bar: &ind::Bar) -> Option<f64> {
        let close = bar.close;
        let rel = |v: f64| (close != 0.0).then(|| v / close);
        match (self, kind) {
            (IndState::LogReturn(s), _) => s.update(close),
            (IndState::Volatility(s), Kind::Volatility(_, ppy)) => s
                .update(close)
                .map(|v| v * (ppy / ind::TRADING_DAYS_PER_YEAR).sqrt()),
            (IndState::Sma(s), _) => s
                .update(close)
                .and_then(|m| (m != 0.0).then(|| close / m - 1.0)),
            (IndState::Ema(s), _) => s
                .update(close)
                .and_then(|m| (m != 0.0).then(|| close / m - 1.0)),
            (IndState::Rsi(s), _) => s.update(close),
            (IndState::Macd(s), Kind::Macd(_, _, _, part)) => s.update(close).and_then(|o| {
                rel(match part {
                    MacdPart::Line => o.macd,
                    MacdPart::Signal => o.signal,
                    MacdPart::Histogram => o.hist,
                })
            }),
            (IndState::Bollinger(s), Kind::Bollinger(_, _, part)) => {
                s.update(close).and_then(|o| match part {
                    BandPart::PercentB => o.percent_b,
                    BandPart::Bandwidth => o.bandwidth,
                })
            }
            (IndState::Atr(s), _) => s.update(bar).and_then(rel),
            (IndState::VolumeZScore(s), _) => s.update(bar),
            (IndState::HlRange(s), _) => s.update(bar),
            // States are built from their kinds, so the pairs above are exhaustive.
            _ => None,
        }
    }
}
impl View {
    /// A fresh engine state (no bars seen).
    pub fn new_state(&self) -> ViewState {
        ViewState {
            states: self
                .features
                .iter()
                // Every kind was instantiated once in `compile`, so this cannot fail.
                .filter_map(|f| f.kind.new_state().ok())
                .collect(),
            last_bar_ts: None,
            bars_seen: 0,
        }
    }

    /// Folds one bar into `state` and writes the vector (NaN = absent) into `out`, which
    /// must be as long as the view's features.
    #[inline]
    pub fn update(&self, state: &mut ViewState, bar: &Bar, out: &mut [f64]) {
        let b = ind::Bar {
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
        };
        for ((s, f), o) in state
            .states
            .iter_mut()
            .zip(&self.features)
            .zip(out.iter_mut())
        {
            *o = s.update(f.kind, &b).unwrap_or(f64::NAN);
        }
        state.last_bar_ts = Some(bar.ts);
        state.bars_seen += 1;
    }

    /// Event time of the vector that ends with a bar opened at `bar_ts`.
    pub fn event_time(&self, bar_ts: Ts) -> Ts {
        bar_ts + self.interval.seconds()
    }

    /// Batch form: the vector after each bar of `bars` (ascending, one symbol), starting
    /// from a fresh state.
    pub fn compute(&self, bars: &[Bar]) -> Vec<Vec<f64>> {
        let mut state = self.new_state();
        bars.iter()
            .map(|b| {
                let mut out = vec![0.0; self.features.len()];
                self.update(&mut state, b, &mut out);
                out
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use stockcast_indicators as ind;
    use stockcast_market::{Bar, Interval};

    use super::*;
    use crate::view::default_view;

    fn bars(n: usize) -> Vec<Bar> {
        (0..n)
            .map(|i| {
                let x = i as f64;
                let close = 100.0 + (x * 0.37).sin() * 5.0 + x * 0.05;
                Bar {
                    symbol: "T".into(),
                    interval: Interval::D1,
                    ts: 1_700_000_000 + i as i64 * 86_400,
                    open: close - 0.3,
                    high: close + 1.0 + (x * 0.11).cos().abs(),
                    low: close - 1.0,
                    close,
                    volume: 1e6 + (x * 0.7).sin() * 2e5,
                }
            })
            .collect()
    }

    #[test]
    fn values_match_the_indicator_library() {
        let view = View::compile(&default_view()).unwrap();
        let bars = bars(120);
        let out = view.compute(&bars);
        let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
        let rsi = ind::rsi(&closes, 14).unwrap();
        let sma = ind::sma(&closes, 50).unwrap();
        let col = |name: &str| view.names.iter().position(|n| n == name).unwrap();
        for (i, row) in out.iter().enumerate() {
            match rsi[i] {
                Some(v) => assert_eq!(row[col("rsi_14")].to_bits(), v.to_bits(), "rsi at {i}"),
                None => assert!(row[col("rsi_14")].is_nan(), "rsi warm-up at {i}"),
            }
            match sma[i] {
                Some(m) => assert_eq!(row[col("close_sma_50")], closes[i] / m - 1.0),
                None => assert!(row[col("close_sma_50")].is_nan()),
            }
        }
        // Inside the warm-up at least one value is absent; after it none.
        assert!(out[48].iter().any(|v| v.is_nan()));
        assert!(out[49].iter().all(|v| !v.is_nan()), "{:?}", out[49]);
    }

    #[test]
    fn snapshot_resume_equals_uninterrupted() {
        let view = View::compile(&default_view()).unwrap();
        let bars = bars(200);
        let whole = view.compute(&bars);
        let mut state = view.new_state();
        let mut out = vec![0.0; view.features.len()];
        for b in &bars[..77] {
            view.update(&mut state, b, &mut out);
        }
        let mut state = ViewState::from_bytes(&view, &state.to_bytes()).unwrap();
        for (i, b) in bars.iter().enumerate().skip(77) {
            view.update(&mut state, b, &mut out);
            let same = out
                .iter()
                .zip(&whole[i])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "bar {i}: {out:?} vs {:?}", whole[i]);
        }
        assert_eq!(state.bars_seen, 200);
    }
}
