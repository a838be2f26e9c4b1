//! Simple and exponential moving averages.

use serde::{Deserialize, Serialize};

use crate::IndicatorError;
use crate::window::Window;

/// Simple moving average over `n` values (TA-Lib `SMA`).
///
/// Lookback `n - 1`: the first value is at index `n - 1`. The mean is summed from the window
/// at each bar rather than kept as a running sum, whose rounding would build up over a long
/// series (within 1e-15 relative of TA-Lib's running sum on its golden series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sma {
    period: usize,
    window: Window,
}

impl Sma {
    /// An SMA over `period` ≥ 1 values.
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        crate::check_period("sma", period, 1)?;
        Ok(Self {
            period,
            window: Window::new(period),
        })
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        self.period - 1
    }

    /// Feeds one value; the average of the last `n` once `n` have been seen.
    pub fn update(&mut self, value: f64) -> Option<f64> {
        self.window.push(value);
        self.window.is_full().then(|| self.window.mean())
    }
}

/// Batch [`Sma`]: one output per input.
pub fn sma(values: &[f64], period: usize) -> Result<Vec<Option<f64>>, IndicatorError> {
    let mut s = Sma::new(period)?;
    Ok(values.iter().map(|&v| s.update(v)).collect())
}

/// Exponential moving average (TA-Lib `EMA`, default compatibility).
///
/// `k = 2 / (n + 1)`; seeded with the SMA of the first `n` values, which is also the
/// first output. Lookback `n - 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ema {
    period: usize,
    k: f64,
    seen: usize,
    /// running sum during warm-up, then the current average
    value: f64,
}

impl Ema {
    /// An EMA over `period` ≥ 1 values with `k = 2 / (period + 1)`.
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        crate::check_period("ema", period, 1)?;
        Ok(Self::fresh(period))
    }

    /// An EMA for a period already known to be ≥ 1.
    pub(crate) fn fresh(period: usize) -> Self {
        Self {
            period,
            k: 2.0 / (period as f64 + 1.0),
            seen: 0,
            value: 0.0,
        }
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        self.period - 1
    }

    /// Feeds one value.
    pub fn update(&mut self, value: f64) -> Option<f64> {
        if self.seen < self.period {
            self.seen += 1;
            self.value += value;
            if self.seen < self.period {
                return None;
            }
            self.value /= self.period as f64;
        } else {
            self.value += (value - self.value) * self.k;
        }
        Some(self.value)
    }

    /// Starts an EMA whose seed is `sma` (the mean of `period` values already seen),
    /// as TA-Lib's MACD does for its fast line.
    pub(crate) fn seeded(period: usize, sma: f64) -> Self {
        Self {
            period,
            k: 2.0 / (period as f64 + 1.0),
            seen: period,
            value: sma,
        }
    }
}

/// Batch [`Ema`]: one output per input.
pub fn ema(values: &[f64], period: usize) -> Result<Vec<Option<f64>>, IndicatorError> {
    let mut e = Ema::new(period)?;
    Ok(values.iter().map(|&v| e.update(v)).collect())
}
