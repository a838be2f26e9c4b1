//! What configuration declares: a view (`[[views]]`) and its features, the indicators a
//! feature can use, and the built-in `default` view.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stockcast_market::Interval;

/// A view as declared in configuration (`[[views]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewSpec {
    /// View name: lower-case letters, digits, `_` and `-`.
    pub name: String,
    /// Version, ≥ 1. Changing `features` or `interval` requires a new version.
    pub version: i32,
    /// Whether this version answers requests that give version 0 (one per name; when none
    /// is marked, the highest version is current).
    #[serde(default)]
    pub current: bool,
    /// What the view is for.
    #[serde(default)]
    pub description: String,
    /// Interval of the bars the features are computed from.
    pub interval: Interval,
    /// Maximum age (now − event time) before online reads mark a vector STALE.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How long the online store keeps a vector after its last write; defaults to 4 ×
    /// `max_age`. Past it the symbol reads NOT_FOUND.
    #[serde(default, with = "humantime_serde")]
    pub online_ttl: Option<Duration>,
    /// Features, in vector order.
    pub features: Vec<FeatureSpec>,
}

/// One feature of a [`ViewSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Feature name, unique in the view.
    pub name: String,
    /// Indicator: one of [`INDICATORS`].
    pub indicator: String,
    /// Parameters of the indicator (all optional, defaults in [`INDICATORS`]).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// The indicators a feature can use, with their parameters and defaults.
pub const INDICATORS: &[(&str, &str)] = &[
    ("log_return", "bars=1: ln(close / close n bars ago)"),
    (
        "volatility",
        "period=20, periods_per_year=252: sample std. dev. of 1-bar log returns × √periods_per_year",
    ),
    ("sma_ratio", "period=20: close / SMA(period) − 1"),
    ("ema_ratio", "period=20: close / EMA(period) − 1"),
    ("rsi", "period=14: Wilder RSI, 0..100"),
    ("macd_line", "fast=12, slow=26, signal=9: MACD line / close"),
    (
        "macd_signal",
        "fast=12, slow=26, signal=9: MACD signal / close",
    ),
    (
        "macd_histogram",
        "fast=12, slow=26, signal=9: MACD histogram / close",
    ),
    ("bollinger_percent_b", "period=20, width=2: %b"),
    (
        "bollinger_bandwidth",
        "period=20, width=2: (upper − lower) / middle",
    ),
    ("atr_ratio", "period=14: Wilder ATR / close"),
    (
        "volume_zscore",
        "period=20: (volume − mean) / σ over period bars",
    ),
    ("hl_range", "(high − low) / close"),
];

/// The built-in `default` view, version 1: scale-free daily features for models.
pub fn default_view() -> ViewSpec {
    let f = |name: &str, indicator: &str, params: &[(&str, &str)]| FeatureSpec {
        name: name.to_owned(),
        indicator: indicator.to_owned(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    ViewSpec {
        name: "default".to_owned(),
        version: 1,
        current: true,
        description: "Scale-free daily features: returns, trend, momentum, volatility, volume"
            .to_owned(),
        interval: Interval::D1,
        // Friday's close is still current on Monday morning; a long weekend adds a day.
        max_age: Duration::from_secs(4 * 86_400),
        online_ttl: Some(Duration::from_secs(30 * 86_400)),
        features: vec![
            f("log_return_1", "log_return", &[("bars", "1")]),
            f("log_return_5", "log_return", &[("bars", "5")]),
            f("log_return_20", "log_return", &[("bars", "20")]),
            f("close_sma_20", "sma_ratio", &[("period", "20")]),
            f("close_sma_50", "sma_ratio", &[("period", "50")]),
            f("close_ema_12", "ema_ratio", &[("period", "12")]),
            f("rsi_14", "rsi", &[("period", "14")]),
            f("macd_line", "macd_line", &[]),
            f("macd_signal", "macd_signal", &[]),
            f("macd_histogram", "macd_histogram", &[]),
            f("bb_percent_b", "bollinger_percent_b", &[]),
            f("bb_bandwidth", "bollinger_bandwidth", &[]),
            f("atr_14", "atr_ratio", &[("period", "14")]),
            f("volatility_20", "volatility", &[("period", "20")]),
            f("volume_z_20", "volume_zscore", &[("period", "20")]),
            f("hl_range", "hl_range", &[]),
        ],
    }
}
