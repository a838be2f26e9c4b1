//! Moving average convergence/divergence (TA-Lib `MACD`).

use serde::{Deserialize, Serialize};

use crate::IndicatorError;
use crate::moving::Ema;
use crate::window::Window;

/// One MACD output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MacdOutput {
    /// fast EMA − slow EMA, in price units
    pub macd: f64,
    /// EMA(signal) of the MACD line
    pub signal: f64,
    /// macd − signal
    pub hist: f64,
}

/// MACD(fast, slow, signal) exactly as TA-Lib's `TA_MACD` computes it.
///
/// Both EMAs start at index `slow - 1`: the slow EMA is seeded with the SMA of the first
/// `slow` closes, and the fast EMA — unlike a standalone EMA(fast) — with the SMA of the
/// `fast` closes ending at that same index. The signal line is an EMA(signal) of the MACD
/// line seeded with the SMA of its first `signal` values. All three outputs start
/// together: lookback `slow + signal - 2` (33 for the default 12, 26, 9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Macd {
    fast_period: usize,
    slow_period: usize,
    signal_period: usize,
    /// last `fast` closes, kept only until the fast EMA is seeded
    recent: Window,
    fast: Option<Ema>,
    slow: Ema,
    signal: Ema,
}

impl Macd {
    /// MACD with `1 ≤ fast < slow` and `signal ≥ 1`.
    pub fn new(fast: usize, slow: usize, signal: usize) -> Result<Self, IndicatorError> {
        crate::check_period("macd fast", fast, 1)?;
        crate::check_period("macd signal", signal, 1)?;
        if fast >= slow {
            return Err(IndicatorError::MacdPeriods { fast, slow });
        }
        Ok(Self {
            fast_period: fast,
            slow_period: slow,
            signal_period: signal,
            recent: Window::new(fast),
            fast: None,
            slow: Ema::fresh(slow),
            signal: Ema::fresh(signal),
        })
    }

    /// The default MACD(12, 26, 9).
    pub fn standard() -> Self {
        Self {
            fast_period: 12,
            slow_period: 26,
            signal_period: 9,
            recent: Window::new(12),
            fast: None,
            slow: Ema::fresh(26),
            signal: Ema::fresh(9),
        }
    }

    /// Index of the first output: `slow + signal - 2`.
    pub fn lookback(&self) -> usize {
        self.slow_period + self.signal_period - 2
    }

    /// Feeds one close.
    pub fn update(&mut self, close: f64) -> Option<MacdOutput> {
        if self.fast.is_none() {
            self.recent.push(close);
        }
        let slow = self.slow.update(close)?;
        let fast = match &mut self.fast {
            Some(ema) => ema.update(close)?,
            None => {
                let seed = self.recent.sum() / self.fast_period as f64;
                self.fast = Some(Ema::seeded(self.fast_period, seed));
                seed
            }
        };
        let macd = fast - slow;
        let signal = self.signal.update(macd)?;
        Some(MacdOutput {
            macd,
            signal,
            hist: macd - signal,
        })
    }
}

/// Batch [`Macd`]: one output per close.
pub fn macd(
    closes: &[f64],
    fast: usize,
    slow: usize,
    signal: usize,
) -> Result<Vec<Option<MacdOutput>>, IndicatorError> {
    let mut m = Macd::new(fast, slow, signal)?;
    Ok(closes.iter().map(|&c| m.update(c)).collect())
}
