//! Fixed-capacity ring buffer shared by the rolling indicators, and the rolling statistics
//! computed from it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The last `cap` values pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Window {
    cap: usize,
    values: VecDeque<f64>,
}

impl Window {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            values: VecDeque::with_capacity(cap),
        }
    }

    /// Appends `v`; returns the value that fell out once the window is full.
    pub(crate) fn push(&mut self, v: f64) -> Option<f64> {
        let evicted = if self.values.len() == self.cap {
            self.values.pop_front()
        } else {
            None
        };
        self.values.push_back(v);
        evicted
    }

    pub(crate) fn is_full(&self) -> bool {
        self.values.len() == self.cap
    }

    /// The oldest value held.
    pub(crate) fn front(&self) -> Option<f64> {
        self.values.front().copied()
    }

    /// Sum of the values held, oldest first.
    pub(crate) fn sum(&self) -> f64 {
        self.values.iter().sum()
    }

    /// Mean of the values held, recomputed from them.
    ///
    /// Rolling statistics are recomputed from the window (O(n) per bar, n = the period)
    /// instead of kept as running sums: a running sum of prices carries the rounding of every
    /// value ever added and removed, and a running sum of squares cancels catastrophically when
    /// the price level is large against its variation (mean(x²) − mean(x)² at a level of
    /// 100,000 loses ten of the sixteen digits). From the window, the error depends only on
    /// the n values held, whatever the length of the series.
    pub(crate) fn mean(&self) -> f64 {
        self.sum() / self.values.len() as f64
    }

    /// The mean and the sum of squared deviations from it (M2) of the values held, by the
    /// corrected two-pass algorithm (Chan, Golub & LeVeque 1983): M2 = Σd² − (Σd)²/n with
    /// d = x − mean. The second term removes the rounding error of the mean; for n equal
    /// values M2 is exactly 0.
    pub(crate) fn moments(&self) -> (f64, f64) {
        let n = self.values.len() as f64;
        let mean = self.mean();
        let (mut sum_d, mut sum_d2) = (0.0, 0.0);
        for &v in &self.values {
            let d = v - mean;
            sum_d += d;
            sum_d2 += d * d;
        }
        (mean, (sum_d2 - sum_d * sum_d / n).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(values: &[f64]) -> Window {
        let mut w = Window::new(values.len());
        for &v in values {
            w.push(v);
        }
        w
    }

    #[test]
    fn equal_values_have_exactly_zero_spread() {
        for level in [0.1, 1.0, 1_000.3, 100_000.07, 123_456_789.123] {
            let (mean, m2) = window(&[level; 20]).moments();
            assert_eq!(m2, 0.0, "level {level}");
            assert!((mean - level).abs() <= level * 1e-15, "level {level}");
        }
    }

    #[test]
    fn moments_do_not_depend_on_the_level() {
        // Deviations of ±1 around any level: M2 = n exactly.
        for level in [0.0, 1e3, 1e5, 1e9] {
            let values: Vec<f64> = (0..20)
                .map(|i| level + if i % 2 == 0 { 1.0 } else { -1.0 })
                .collect();
            let (mean, m2) = window(&values).moments();
            assert_eq!(m2, 20.0, "level {level}");
            assert_eq!(mean, level, "level {level}");
        }
    }
}
