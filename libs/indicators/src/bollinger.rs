//! Bollinger bands (TA-Lib `BBANDS` with an SMA middle band).

use serde::{Deserialize, Serialize};

use crate::IndicatorError;
use crate::window::Window;

/// One Bollinger output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BollingerOutput {
    /// middle + k·σ, price units
    pub upper: f64,
    /// SMA(n) of the closes, price units
    pub middle: f64,
    /// middle − k·σ, price units
    pub lower: f64,
    /// %b = (close − lower) / (upper − lower); `None` when the bands coincide (σ = 0)
    pub percent_b: Option<f64>,
    /// (upper − lower) / middle; `None` when the middle band is 0
    pub bandwidth: Option<f64>,
}

/// Bollinger bands(n, k): SMA(n) ± k · population standard deviation over `n` closes.
///
/// Matches TA-Lib `BBANDS(n, k, k, SMA)`, with σ = 0 when σ² < 1e-8 as TA-Lib has it. The
/// mean and σ are computed from the window by a two-pass algorithm rather than from running
/// sums of x and x², so they keep their precision at any price level (`window.rs`).
/// Lookback `n - 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bollinger {
    period: usize,
    width: f64,
    window: Window,
}

impl Bollinger {
    /// Bands over `period` ≥ 1 closes, `width` standard deviations apart from the middle.
    pub fn new(period: usize, width: f64) -> Result<Self, IndicatorError> {
        crate::check_period("bollinger", period, 1)?;
        Ok(Self {
            period,
            width,
            window: Window::new(period),
        })
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        self.period - 1
    }

    /// Feeds one close.
    pub fn update(&mut self, close: f64) -> Option<BollingerOutput> {
        self.window.push(close);
        if !self.window.is_full() {
            return None;
        }
        let (middle, m2) = self.window.moments();
        let variance = m2 / self.period as f64;
        // TA_IS_ZERO_OR_NEG
        let sd = if variance < 0.000_000_01 {
            0.0
        } else {
            variance.sqrt()
        };
        let offset = sd * self.width;
        // %b and bandwidth from the offset, not from the bands: upper − lower at a level of
        // 100,000 would round away the digits that a narrow band is made of.
        Some(BollingerOutput {
            upper: middle + offset,
            middle,
            lower: middle - offset,
            percent_b: (offset != 0.0).then(|| 0.5 + (close - middle) / (2.0 * offset)),
            bandwidth: (middle != 0.0).then(|| 2.0 * offset / middle),
        })
    }
}

/// Batch [`Bollinger`]: one output per close.
pub fn bollinger(
    closes: &[f64],
    period: usize,
    width: f64,
) -> Result<Vec<Option<BollingerOutput>>, IndicatorError> {
    let mut b = Bollinger::new(period, width)?;
    Ok(closes.iter().map(|&c| b.update(c)).collect())
}
