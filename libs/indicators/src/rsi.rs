//! Relative strength index (TA-Lib `RSI`).

use serde::{Deserialize, Serialize};

use crate::IndicatorError;

/// RSI(n) with Wilder smoothing, as TA-Lib computes it.
///
/// The average gain and loss are seeded with the simple means of the first `n`
/// close-to-close changes, then smoothed as `avg = (avg·(n−1) + x) / n`. Lookback `n`:
/// the first value is at index `n`. When average gain + loss is ~0 (|·| < 1e-8) the
/// output is 0, as in TA-Lib.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rsi {
    period: usize,
    prev: Option<f64>,
    /// changes seen so far, capped at `period`
    changes: usize,
    gain: f64,
    loss: f64,
}

impl Rsi {
    /// An RSI over `period` ≥ 1 changes (the usual default is 14).
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        crate::check_period("rsi", period, 1)?;
        Ok(Self {
            period,
            prev: None,
            changes: 0,
            gain: 0.0,
            loss: 0.0,
        })
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        self.period
    }

    /// Feeds one close; the RSI in 0..=100 once warm.
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let prev = self.prev.replace(close)?;
        let change = close - prev;
        let n = self.period as f64;
        if self.changes < self.period {
            self.changes += 1;
            if change < 0.0 {
                self.loss -= change;
            } else {
                self.gain += change;
            }
            if self.changes < self.period {
                return None;
            }
        } else {
            self.loss *= n - 1.0;
            self.gain *= n - 1.0;
            if change < 0.0 {
                self.loss -= change;
            } else {
                self.gain += change;
            }
        }
        self.loss /= n;
        self.gain /= n;
        let total = self.gain + self.loss;
        Some(if crate::ta_is_zero(total) {
            0.0
        } else {
            100.0 * (self.gain / total)
        })
    }
}

/// Batch [`Rsi`]: one output per close.
pub fn rsi(closes: &[f64], period: usize) -> Result<Vec<Option<f64>>, IndicatorError> {
    let mut r = Rsi::new(period)?;
    Ok(closes.iter().map(|&c| r.update(c)).collect())
}
