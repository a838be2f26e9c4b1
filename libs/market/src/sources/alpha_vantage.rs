//! Alpha Vantage REST source (being implemented).

use serde::{Deserialize, Serialize};

/// `outputsize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputSize {
    /// The latest 100 bars.
    #[default]
    Compact,
    /// The full history (daily: 20+ years; intraday: the requested month).
    Full,
}

/// Parameters of an Alpha Vantage backfill.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlphaVantageParams {
    /// `outputsize`.
    pub output_size: OutputSize,
    /// Include pre- and post-market intraday bars.
    pub extended_hours: bool,
}
