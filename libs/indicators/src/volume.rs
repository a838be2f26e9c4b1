//! Volume z-score.

use serde::{Deserialize, Serialize};

use crate::window::Window;
use crate::{Bar, IndicatorError};

/// Z-score of the bar's volume against the last `n` volumes, the current one included:
/// `(v − mean) / σ` with the population σ.
///
/// `None` when σ = 0 (flat volume: no scale to measure against). Lookback `n - 1`. The mean
/// and σ are computed from the window by a two-pass algorithm, so a volume level far above
/// its variation (10⁹ ± 10³) keeps its precision over any length of series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeZScore {
    period: usize,
    window: Window,
}

impl VolumeZScore {
    /// A z-score over `period` ≥ 2 volumes.
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        crate::check_period("volume z-score", period, 2)?;
        Ok(Self {
            period,
            window: Window::new(period),
        })
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        self.period - 1
    }

    /// Feeds one bar.
    pub fn update(&mut self, bar: &Bar) -> Option<f64> {
        self.window.push(bar.volume);
        if !self.window.is_full() {
            return None;
        }
        let (mean, m2) = self.window.moments();
        let variance = m2 / self.period as f64;
        (variance > 0.0).then(|| (bar.volume - mean) / variance.sqrt())
    }
}

/// Batch [`VolumeZScore`]: one output per bar.
pub fn volume_zscore(bars: &[Bar], period: usize) -> Result<Vec<Option<f64>>, IndicatorError> {
    let mut z = VolumeZScore::new(period)?;
    Ok(bars.iter().map(|b| z.update(b)).collect())
}
