//! Volume z-score.

use serde::{Deserialize, Serialize};

use crate::window::Window;
use crate::{Bar, IndicatorError};

/// Z-score of the bar's volume against the last `n` volumes, the current one included:
/// `(v − mean) / σ` with the population σ.
///
/// `None` when σ = 0 (flat volume: no scale to measure against). Lookback `n - 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeZScore {
    period: usize,
    /// volumes minus `shift`, which keeps the running sums of squares well conditioned
    window: Window,
    shift: Option<f64>,
    sum: f64,
    sum_sq: f64,
}

impl VolumeZScore {
    /// A z-score over `period` ≥ 2 volumes.
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        crate::check_period("volume z-score", period, 2)?;
        Ok(Self {
            period,
            window: Window::new(period),
            shift: None,
            sum: 0.0,
            sum_sq: 0.0,
        })
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        self.period - 1
    }

    /// Feeds one bar.
    pub fn update(&mut self, bar: &Bar) -> Option<f64> {
        let shift = *self.shift.get_or_insert(bar.volume);
        let x = bar.volume - shift;
        self.sum += x;
        self.sum_sq += x * x;
        if let Some(old) = self.window.push(x) {
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        if !self.window.is_full() {
            return None;
        }
        let n = self.period as f64;
        let mean = self.sum / n;
        let variance = self.sum_sq / n - mean * mean;
        (variance > 0.0).then(|| (x - mean) / variance.sqrt())
    }
}

/// Batch [`VolumeZScore`]: one output per bar.
pub fn volume_zscore(bars: &[Bar], period: usize) -> Result<Vec<Option<f64>>, IndicatorError> {
    let mut z = VolumeZScore::new(period)?;
    Ok(bars.iter().map(|b| z.update(b)).collect())
}
