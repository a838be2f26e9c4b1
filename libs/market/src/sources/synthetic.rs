//! Synthetic generator (being implemented).

use serde::{Deserialize, Serialize};

/// Parameters of the synthetic generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticParams {
    /// Seed; the same seed, symbol and range give the same bars.
    pub seed: u64,
    /// First open price.
    pub initial_price: f64,
    /// Annualized drift, a fraction (0.05 = 5 % a year).
    pub annual_drift: f64,
    /// Annualized volatility in the calm regime, a fraction.
    pub annual_volatility: f64,
    /// Volatility multiplier in the turbulent regime.
    pub turbulent_volatility_multiplier: f64,
    /// Probability per bar of switching regime.
    pub regime_switch_probability: f64,
    /// Expected jumps per year.
    pub jumps_per_year: f64,
    /// Standard deviation of a jump's log return.
    pub jump_volatility: f64,
}

impl Default for SyntheticParams {
    fn default() -> Self {
        Self {
            seed: 42,
            initial_price: 100.0,
            annual_drift: 0.05,
            annual_volatility: 0.2,
            turbulent_volatility_multiplier: 3.0,
            regime_switch_probability: 0.002,
            jumps_per_year: 4.0,
            jump_volatility: 0.04,
        }
    }
}
