//! High–low range.

use serde::{Deserialize, Serialize};

use crate::Bar;

/// High–low range relative to the close: `(high − low) / close`.
///
/// Stateless, lookback 0; `None` when the close is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HlRange;

impl HlRange {
    /// The (stateless) range indicator.
    pub fn new() -> Self {
        Self
    }

    /// Index of the first output.
    pub fn lookback(&self) -> usize {
        0
    }

    /// Feeds one bar.
    pub fn update(&mut self, bar: &Bar) -> Option<f64> {
        (bar.close != 0.0).then(|| (bar.high - bar.low) / bar.close)
    }
}

/// Batch [`HlRange`]: one output per bar.
pub fn hl_range(bars: &[Bar]) -> Vec<Option<f64>> {
    let mut r = HlRange::new();
    bars.iter().map(|b| r.update(b)).collect()
}
