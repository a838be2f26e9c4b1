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
/// Matches TA-Lib `BBANDS(n, k, k, SMA)`: σ² = mean(x²) − mean(x)² from running sums,
/// and σ = 0 when σ² < 1e-8. Lookback `n - 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bollinger {
    period: usize,
    width: f64,
    window: Window,
    /// sums of the newest `n - 1` values and squares once warm (TA-Lib's order)
    sum: f64,
    sum_sq: f64,
}

impl Bollinger {
    /// Bands over `period` ≥ 1 closes, `width` standard deviations apart from the middle.
    pub fn new(period: usize, width: f64) -> Result<Self, IndicatorError> {
        crate::check_period("bollinger", period, 1)?;
        Ok(Self {
            period,
            width,
            window: Window::new(period),
            sum: 0.0,
            sum_sq: 0.0,
        })
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        self.period - 1
    }

    /// Feeds one close.
    pub fn update(&mut self, close: f64) -> Option<BollingerOutput> {
        self.sum += close;
        self.sum_sq += close * close;
        self.window.push(close);
        if !self.window.is_full() {
            return None;
        }
        let n = self.period as f64;
        let middle = self.sum / n;
        let variance = self.sum_sq / n - middle * middle;
        if let Some(oldest) = self.window.front() {
            self.sum -= oldest;
            self.sum_sq -= oldest * oldest;
        }
        // TA_IS_ZERO_OR_NEG
        let sd = if variance < 0.000_000_01 {
            0.0
        } else {
            variance.sqrt()
        };
        let offset = sd * self.width;
        let upper = middle + offset;
        let lower = middle - offset;
        let spread = upper - lower;
        Some(BollingerOutput {
            upper,
            middle,
            lower,
            percent_b: (spread != 0.0).then(|| (close - lower) / spread),
            bandwidth: (middle != 0.0).then(|| spread / middle),
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
