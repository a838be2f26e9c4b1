//! Log returns and rolling volatility (not TA-Lib indicators).

use serde::{Deserialize, Serialize};

use crate::IndicatorError;
use crate::window::Window;

/// Trading days per year used to annualize [`RollingVolatility`].
pub const TRADING_DAYS_PER_YEAR: f64 = 252.0;

/// Log return over `k` bars: `ln(close_t / close_{t−k})`.
///
/// Lookback `k`: the first value is at index `k`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogReturn {
    bars: usize,
    /// the last `k + 1` closes
    closes: Window,
}

impl LogReturn {
    /// A log return over `bars` ≥ 1 bars (1, 5 and 20 are the usual choices).
    pub fn new(bars: usize) -> Result<Self, IndicatorError> {
        crate::check_period("log return", bars, 1)?;
        Ok(Self {
            bars,
            closes: Window::new(bars + 1),
        })
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        self.bars
    }

    /// Feeds one close.
    pub fn update(&mut self, close: f64) -> Option<f64> {
        self.closes.push(close);
        if !self.closes.is_full() {
            return None;
        }
        self.closes.front().map(|base| (close / base).ln())
    }
}

/// Batch [`LogReturn`]: one output per close.
pub fn log_return(closes: &[f64], bars: usize) -> Result<Vec<Option<f64>>, IndicatorError> {
    let mut r = LogReturn::new(bars)?;
    Ok(closes.iter().map(|&c| r.update(c)).collect())
}

/// Annualized volatility of 1-bar log returns over the last `n` returns.
///
/// Sample standard deviation (ddof = 1) times √252, so it assumes daily bars. This is not
/// a TA-Lib indicator (TA-Lib's `STDDEV` is a population σ of prices). Lookback `n`: `n`
/// returns need `n + 1` closes, so the first value is at index `n`.
///
/// σ is computed from the window of returns by a two-pass algorithm, not from running sums:
/// returns of a steady trend (nearly equal, far from 0) would cancel in Σr² − (Σr)²/n.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollingVolatility {
    period: usize,
    ret: LogReturn,
    returns: Window,
}

impl RollingVolatility {
    /// Volatility over `period` ≥ 2 returns.
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        crate::check_period("rolling volatility", period, 2)?;
        Ok(Self {
            period,
            ret: LogReturn::new(1)?,
            returns: Window::new(period),
        })
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        self.period
    }

    /// Feeds one close; the annualized volatility as a fraction (0.2 = 20 %).
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let r = self.ret.update(close)?;
        self.returns.push(r);
        if !self.returns.is_full() {
            return None;
        }
        let (_, m2) = self.returns.moments();
        let variance = m2 / (self.period as f64 - 1.0);
        Some((variance * TRADING_DAYS_PER_YEAR).sqrt())
    }
}

/// Batch [`RollingVolatility`]: one output per close.
pub fn rolling_volatility(
    closes: &[f64],
    period: usize,
) -> Result<Vec<Option<f64>>, IndicatorError> {
    let mut v = RollingVolatility::new(period)?;
    Ok(closes.iter().map(|&c| v.update(c)).collect())
}
