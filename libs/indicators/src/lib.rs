//! Technical indicators for stockcast, following TA-Lib's default conventions.
//!
//! Every indicator has two forms that give bit-identical results:
//! - a **streaming** struct whose `update` is O(1) per bar (O(n) over its window of n bars
//!   for the rolling statistics: SMA, Bollinger, volatility, volume z-score) and whose state
//!   is `Clone + Serialize + Deserialize`, so it can be snapshotted and resumed;
//! - a **batch** function over a slice, which drives the streaming form.
//!
//! The *lookback* of an indicator is the index of its first output: the first
//! `lookback` inputs produce `None` (absent, never zero). Lookbacks are given
//! in each item's documentation, e.g. SMA(n) = n-1, RSI(n) = n, ATR(n) = n,
//! MACD(12,26,9) = 33.
//!
//! Rolling means and standard deviations are recomputed from their window at every bar (a
//! corrected two-pass algorithm) instead of kept as running sums: their error depends on the
//! n values in the window only, not on the price level or the length of the series. Tested
//! against an exact computation at price levels 1 to 100,000 (`tests/levels.rs`).
//!
//! Inputs are not validated: a NaN or non-finite price propagates into the
//! outputs that depend on it. Validate bars before they reach an indicator.

mod atr;
mod bollinger;
mod macd;
mod moving;
mod range;
mod returns;
mod rsi;
mod volume;
mod window;

pub use atr::{Atr, TrueRange, atr};
pub use bollinger::{Bollinger, BollingerOutput, bollinger};
pub use macd::{Macd, MacdOutput, macd};
pub use moving::{Ema, Sma, ema, sma};
pub use range::{HlRange, hl_range};
pub use returns::{
    LogReturn, RollingVolatility, TRADING_DAYS_PER_YEAR, log_return, rolling_volatility,
};
pub use rsi::{Rsi, rsi};
pub use volume::{VolumeZScore, volume_zscore};

use serde::{Deserialize, Serialize};

/// One OHLCV bar as the indicators see it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// first traded price of the bar
    pub open: f64,
    /// highest traded price of the bar, ≥ low
    pub high: f64,
    /// lowest traded price of the bar
    pub low: f64,
    /// last traded price of the bar
    pub close: f64,
    /// traded quantity during the bar, ≥ 0
    pub volume: f64,
}

/// A parameter an indicator cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndicatorError {
    /// A period below the indicator's minimum.
    #[error("{indicator} period {period} is below the minimum of {min}")]
    PeriodTooSmall {
        /// indicator name, e.g. `"sma"`
        indicator: &'static str,
        /// the period that was given
        period: usize,
        /// the smallest accepted period
        min: usize,
    },
    /// MACD's fast period must be shorter than its slow period.
    #[error("macd fast period {fast} must be below slow period {slow}")]
    MacdPeriods {
        /// fast EMA period
        fast: usize,
        /// slow EMA period
        slow: usize,
    },
}

pub(crate) fn check_period(
    indicator: &'static str,
    period: usize,
    min: usize,
) -> Result<(), IndicatorError> {
    if period < min {
        return Err(IndicatorError::PeriodTooSmall {
            indicator,
            period,
            min,
        });
    }
    Ok(())
}

/// TA-Lib's `TA_IS_ZERO`: |v| < 1e-8.
pub(crate) fn ta_is_zero(v: f64) -> bool {
    -0.000_000_01 < v && v < 0.000_000_01
}
