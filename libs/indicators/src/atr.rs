//! True range and average true range (TA-Lib `TRANGE`, `ATR`).

use serde::{Deserialize, Serialize};

use crate::{Bar, IndicatorError};

/// True range: `max(high, prev close) − min(low, prev close)` (TA-Lib `TRANGE`).
///
/// Lookback 1: the first bar has no previous close and so no true range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrueRange {
    prev_close: Option<f64>,
}

impl TrueRange {
    /// A true range with no bar seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one bar.
    pub fn update(&mut self, bar: &Bar) -> Option<f64> {
        let prev = self.prev_close.replace(bar.close)?;
        let mut greatest = bar.high - bar.low;
        let to_high = (prev - bar.high).abs();
        if to_high > greatest {
            greatest = to_high;
        }
        let to_low = (prev - bar.low).abs();
        if to_low > greatest {
            greatest = to_low;
        }
        Some(greatest)
    }
}

/// Average true range ATR(n) with Wilder smoothing (TA-Lib `ATR`).
///
/// Seeded with the simple mean of the first `n` true ranges (bars 1..=n), then
/// `atr = (atr·(n−1) + tr) / n`. Lookback `n`: the first value is at index `n`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Atr {
    period: usize,
    tr: TrueRange,
    /// true ranges seen so far, capped at `period`
    seen: usize,
    /// running sum during warm-up, then the current average
    value: f64,
}

impl Atr {
    /// An ATR over `period` ≥ 1 true ranges (the usual default is 14).
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        crate::check_period("atr", period, 1)?;
        Ok(Self {
            period,
            tr: TrueRange::new(),
            seen: 0,
            value: 0.0,
        })
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        self.period
    }

    /// Feeds one bar; the ATR in price units once warm.
    pub fn update(&mut self, bar: &Bar) -> Option<f64> {
        let tr = self.tr.update(bar)?;
        let n = self.period as f64;
        if self.seen < self.period {
            self.seen += 1;
            self.value += tr;
            if self.seen < self.period {
                return None;
            }
            self.value /= n;
        } else {
            self.value *= n - 1.0;
            self.value += tr;
            self.value /= n;
        }
        Some(self.value)
    }
}

/// Batch [`Atr`]: one output per bar.
pub fn atr(bars: &[Bar], period: usize) -> Result<Vec<Option<f64>>, IndicatorError> {
    let mut a = Atr::new(period)?;
    Ok(bars.iter().map(|b| a.update(b)).collect())
}
