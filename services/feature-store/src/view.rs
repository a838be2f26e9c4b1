//! Feature views: named, versioned, ordered lists of features of one symbol, computed from
//! bars of one interval, and the streaming engine that computes them.
//!
//! A view is declared in configuration ([`ViewSpec`]) and compiled into a [`View`]. The
//! engine state of one symbol ([`ViewState`]) is O(1) to update per bar and serializes to
//! JSON, so the stream processor can snapshot it with every committed batch. Computing a
//! series with [`View::compute`] (batch) drives the same streaming code, so both agree bit
//! for bit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stockcast_indicators as ind;
use stockcast_market::{Bar, Interval};

use crate::store::{Ts, ViewId};

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

/// Why a view definition is unusable; names the view, the feature and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("view {view}: {what}")]
pub struct ViewError {
    /// `name:vN`.
    pub view: String,
    /// What is wrong, naming the feature and parameter.
    pub what: String,
}

/// A compiled feature view.
#[derive(Debug, Clone)]
pub struct View {
    /// Name and version.
    pub id: ViewId,
    /// Whether this version is served for version 0.
    pub current: bool,
    /// What the view is for.
    pub description: String,
    /// Bar interval.
    pub interval: Interval,
    /// STALE threshold.
    pub max_age: Duration,
    /// Online store expiry.
    pub online_ttl: Duration,
    /// Features in vector order.
    pub features: Vec<Feature>,
    /// Bars needed before every feature is present (max lookback + 1).
    pub warmup_bars: usize,
    /// Feature names in vector order.
    pub names: Vec<String>,
    /// When this version was first served (recorded in the offline store); `None` until the
    /// service has registered it.
    pub created_at: Option<Ts>,
    /// The canonical definition (JSON of the spec without `current`/`description`), recorded
    /// in the offline store so that a changed definition under an old version is refused.
    pub definition: String,
}

/// One compiled feature.
#[derive(Debug, Clone)]
pub struct Feature {
    /// Feature name.
    pub name: String,
    /// Indicator name.
    pub indicator: String,
    /// Parameters with defaults filled in.
    pub params: BTreeMap<String, String>,
    /// Bars needed before the first value (TA-Lib lookback + 1).
    pub lookback_bars: usize,
    /// Meaning and unit.
    pub description: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    LogReturn(usize),
    Volatility(usize, f64),
    SmaRatio(usize),
    EmaRatio(usize),
    Rsi(usize),
    Macd(usize, usize, usize, MacdPart),
    Bollinger(usize, f64, BandPart),
    AtrRatio(usize),
    VolumeZScore(usize),
    HlRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MacdPart {
    Line,
    Signal,
    Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BandPart {
    PercentB,
    Bandwidth,
}

/// The streaming state of one indicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", content = "s")]
enum IndState {
    LogReturn(ind::LogReturn),
    Volatility(ind::RollingVolatility),
    Sma(ind::Sma),
    Ema(ind::Ema),
    Rsi(ind::Rsi),
    Macd(ind::Macd),
    Bollinger(ind::Bollinger),
    Atr(ind::Atr),
    VolumeZScore(ind::VolumeZScore),
    HlRange(ind::HlRange),
}

/// The engine state of one symbol for one view: every feature's indicator state, plus the
/// last bar folded in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewState {
    states: Vec<IndState>,
    /// Open time of the last bar folded in.
    pub last_bar_ts: Option<Ts>,
    /// Bars folded in so far.
    pub bars_seen: i64,
}

impl ViewState {
    /// Serializes the state for a snapshot.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs of numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Restores a snapshot of `view`; fails when it does not belong to that definition.
    pub fn from_bytes(view: &View, bytes: &[u8]) -> Result<Self, String> {
        let state: ViewState = serde_json::from_slice(bytes)
            .map_err(|e| format!("state snapshot of {}: {e}", view.id))?;
        if state.states.len() != view.features.len() {
            return Err(format!(
                "state snapshot of {} has {} features, the view {}",
                view.id,
                state.states.len(),
                view.features.len()
            ));
        }
        Ok(state)
    }
}

fn param<T: std::str::FromStr + ToString>(
    spec: &FeatureSpec,
    params: &mut BTreeMap<String, String>,
    key: &str,
    default: T,
    check: impl Fn(&T) -> bool,
    expect: &str,
) -> Result<T, String> {
    match spec.params.get(key) {
        None => {
            params.insert(key.to_owned(), default.to_string());
            Ok(default)
        }
        Some(raw) => {
            let value: T = raw.trim().parse().map_err(|_| {
                format!(
                    "feature {:?} parameter {key} = {raw:?}: expected {expect}",
                    spec.name
                )
            })?;
            if !check(&value) {
                return Err(format!(
                    "feature {:?} parameter {key} = {raw:?}: expected {expect}",
                    spec.name
                ));
            }
            params.insert(key.to_owned(), raw.trim().to_owned());
            Ok(value)
        }
    }
}

fn compile_feature(spec: &FeatureSpec) -> Result<Feature, String> {
    let mut params = BTreeMap::new();
    let p = |params: &mut BTreeMap<String, String>, key: &str, default: usize, min: usize| {
        param(
            spec,
            params,
            key,
            default,
            |v| *v >= min && *v <= 100_000,
            &format!("an integer in {min}..=100000"),
        )
    };
    let width = |params: &mut BTreeMap<String, String>| {
        param(
            spec,
            params,
            "width",
            2.0_f64,
            |v| v.is_finite() && *v > 0.0,
            "a positive number",
        )
    };
    let macd = |params: &mut BTreeMap<String, String>| -> Result<(usize, usize, usize), String> {
        let fast = p(params, "fast", 12, 2)?;
        let slow = p(params, "slow", 26, 2)?;
        let signal = p(params, "signal", 9, 1)?;
        if fast >= slow {
            return Err(format!(
                "feature {:?}: parameter fast = {fast} must be below slow = {slow}",
                spec.name
            ));
        }
        Ok((fast, slow, signal))
    };
    let (kind, description) = match spec.indicator.as_str() {
        "log_return" => {
            let n = p(&mut params, "bars", 1, 1)?;
            (Kind::LogReturn(n), format!("{n}-bar log return, ln units"))
        }
        "volatility" => {
            let n = p(&mut params, "period", 20, 2)?;
            let ppy = param(
                spec,
                &mut params,
                "periods_per_year",
                252.0_f64,
                |v| v.is_finite() && *v > 0.0,
                "a positive number",
            )?;
            (
                Kind::Volatility(n, ppy),
                format!("{n}-bar volatility of log returns, annualized over {ppy} bars"),
            )
        }
        "sma_ratio" => {
            let n = p(&mut params, "period", 20, 1)?;
            (Kind::SmaRatio(n), format!("close / SMA({n}) − 1"))
        }
        "ema_ratio" => {
            let n = p(&mut params, "period", 20, 1)?;
            (Kind::EmaRatio(n), format!("close / EMA({n}) − 1"))
        }
        "rsi" => {
            let n = p(&mut params, "period", 14, 2)?;
            (Kind::Rsi(n), format!("{n}-bar Wilder RSI, 0..100"))
        }
        "macd_line" | "macd_signal" | "macd_histogram" => {
            let (f, s, g) = macd(&mut params)?;
            let part = match spec.indicator.as_str() {
                "macd_line" => MacdPart::Line,
                "macd_signal" => MacdPart::Signal,
                _ => MacdPart::Histogram,
            };
            (
                Kind::Macd(f, s, g, part),
                format!("MACD({f},{s},{g}) {part:?} / close"),
            )
        }
        "bollinger_percent_b" | "bollinger_bandwidth" => {
            let n = p(&mut params, "period", 20, 2)?;
            let k = width(&mut params)?;
            let part = if spec.indicator == "bollinger_percent_b" {
                BandPart::PercentB
            } else {
                BandPart::Bandwidth
            };
            (
                Kind::Bollinger(n, k, part),
                match part {
                    BandPart::PercentB => format!("Bollinger({n},{k}) %b"),
                    BandPart::Bandwidth => format!("Bollinger({n},{k}) (upper − lower) / middle"),
                },
            )
        }
        "atr_ratio" => {
            let n = p(&mut params, "period", 14, 1)?;
            (Kind::AtrRatio(n), format!("Wilder ATR({n}) / close"))
        }
        "volume_zscore" => {
            let n = p(&mut params, "period", 20, 2)?;
            (Kind::VolumeZScore(n), format!("{n}-bar volume z-score"))
        }
        "hl_range" => (Kind::HlRange, "(high − low) / close".to_owned()),
        other => {
            let known: Vec<&str> = INDICATORS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "feature {:?}: indicator {other:?} is not one of {}",
                spec.name,
                known.join(", ")
            ));
        }
    };
    for key in spec.params.keys() {
        if !params.contains_key(key) {
            return Err(format!(
                "feature {:?}: indicator {} has no parameter {key:?} (it takes {})",
                spec.name,
                spec.indicator,
                params.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let state = kind
        .new_state()
        .map_err(|e| format!("feature {:?}: {e}", spec.name))?;
    Ok(Feature {
        name: spec.name.clone(),
        indicator: spec.indicator.clone(),
        params,
        lookback_bars: state.lookback() + 1,
        description,
        kind,
    })
}

impl Kind {
    fn new_state(self) -> Result<IndState, ind::IndicatorError> {
        Ok(match self {
            Kind::LogReturn(n) => IndState::LogReturn(ind::LogReturn::new(n)?),
            Kind::Volatility(n, _) => IndState::Volatility(ind::RollingVolatility::new(n)?),
            Kind::SmaRatio(n) => IndState::Sma(ind::Sma::new(n)?),
            Kind::EmaRatio(n) => IndState::Ema(ind::Ema::new(n)?),
            Kind::Rsi(n) => IndState::Rsi(ind::Rsi::new(n)?),
            Kind::Macd(f, s, g, _) => IndState::Macd(ind::Macd::new(f, s, g)?),
            Kind::Bollinger(n, k, _) => IndState::Bollinger(ind::Bollinger::new(n, k)?),
            Kind::AtrRatio(n) => IndState::Atr(ind::Atr::new(n)?),
            Kind::VolumeZScore(n) => IndState::VolumeZScore(ind::VolumeZScore::new(n)?),
            Kind::HlRange => IndState::HlRange(ind::HlRange::new()),
        })
    }
}

impl IndState {
    fn lookback(&self) -> usize {
        match self {
            IndState::LogReturn(s) => s.lookback(),
            IndState::Volatility(s) => s.lookback(),
            IndState::Sma(s) => s.lookback(),
            IndState::Ema(s) => s.lookback(),
            IndState::Rsi(s) => s.lookback(),
            IndState::Macd(s) => s.lookback(),
            IndState::Bollinger(s) => s.lookback(),
            IndState::Atr(s) => s.lookback(),
            IndState::VolumeZScore(s) => s.lookback(),
            IndState::HlRange(s) => s.lookback(),
        }
    }

    #[inline]
    fn update(&mut self, kind: Kind, bar: &ind::Bar) -> Option<f64> {
        let close = bar.close;
        let rel = |v: f64| (close != 0.0).then(|| v / close);
        match (self, kind) {
            (IndState::LogReturn(s), _) => s.update(close),
            (IndState::Volatility(s), Kind::Volatility(_, ppy)) => s
                .update(close)
                .map(|v| v * (ppy / ind::TRADING_DAYS_PER_YEAR).sqrt()),
            (IndState::Sma(s), _) => s
                .update(close)
                .and_then(|m| (m != 0.0).then(|| close / m - 1.0)),
            (IndState::Ema(s), _) => s
                .update(close)
                .and_then(|m| (m != 0.0).then(|| close / m - 1.0)),
            (IndState::Rsi(s), _) => s.update(close),
            (IndState::Macd(s), Kind::Macd(_, _, _, part)) => s.update(close).and_then(|o| {
                rel(match part {
                    MacdPart::Line => o.macd,
                    MacdPart::Signal => o.signal,
                    MacdPart::Histogram => o.hist,
                })
            }),
            (IndState::Bollinger(s), Kind::Bollinger(_, _, part)) => {
                s.update(close).and_then(|o| match part {
                    BandPart::PercentB => o.percent_b,
                    BandPart::Bandwidth => o.bandwidth,
                })
            }
            (IndState::Atr(s), _) => s.update(bar).and_then(rel),
            (IndState::VolumeZScore(s), _) => s.update(bar),
            (IndState::HlRange(s), _) => s.update(bar),
            // States are built from their kinds, so the pairs above are exhaustive.
            _ => None,
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl View {
    /// Compiles a declared view; the error names the view, the feature and the parameter.
    pub fn compile(spec: &ViewSpec) -> Result<Self, ViewError> {
        let id = ViewId::new(spec.name.clone(), spec.version);
        let err = |what: String| ViewError {
            view: id.to_string(),
            what,
        };
        if !valid_name(&spec.name) {
            return Err(err(format!(
                "name {:?}: expected 1..64 of a-z, 0-9, '_' and '-'",
                spec.name
            )));
        }
        if spec.version < 1 {
            return Err(err(format!("version {}: expected >= 1", spec.version)));
        }
        if spec.features.is_empty() {
            return Err(err("features: at least one feature is needed".to_owned()));
        }
        if spec.max_age.is_zero() {
            return Err(err("max_age: must be positive".to_owned()));
        }
        let mut seen = BTreeSet::new();
        let mut features = Vec::with_capacity(spec.features.len());
        for f in &spec.features {
            if !valid_name(&f.name) {
                return Err(err(format!(
                    "feature name {:?}: expected 1..64 of a-z, 0-9, '_' and '-'",
                    f.name
                )));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(err(format!("feature {:?} is declared twice", f.name)));
            }
            features.push(compile_feature(f).map_err(err)?);
        }
        let online_ttl = spec.online_ttl.unwrap_or(spec.max_age * 4);
        if online_ttl < spec.max_age {
            return Err(err(format!(
                "online_ttl {} is shorter than max_age {}: vectors would expire before they are stale",
                humantime::format_duration(online_ttl),
                humantime::format_duration(spec.max_age)
            )));
        }
        let warmup_bars = features.iter().map(|f| f.lookback_bars).max().unwrap_or(1);
        let names = features.iter().map(|f| f.name.clone()).collect();
        let canonical = serde_json::json!({
            "name": spec.name,
            "version": spec.version,
            "interval": spec.interval.as_str(),
            "features": features.iter().map(|f| serde_json::json!({
                "name": f.name, "indicator": f.indicator, "params": f.params,
            })).collect::<Vec<_>>(),
        });
        Ok(View {
            id,
            current: spec.current,
            description: spec.description.clone(),
            interval: spec.interval,
            max_age: spec.max_age,
            online_ttl,
            features,
            warmup_bars,
            names,
            created_at: None,
            definition: canonical.to_string(),
        })
    }

    /// A fresh engine state (no bars seen).
    pub fn new_state(&self) -> ViewState {
        ViewState {
            states: self
                .features
                .iter()
                // Every kind was instantiated once in `compile`, so this cannot fail.
                .filter_map(|f| f.kind.new_state().ok())
                .collect(),
            last_bar_ts: None,
            bars_seen: 0,
        }
    }

    /// Folds one bar into `state` and writes the vector (NaN = absent) into `out`, which
    /// must be as long as the view's features.
    #[inline]
    pub fn update(&self, state: &mut ViewState, bar: &Bar, out: &mut [f64]) {
        let b = ind::Bar {
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
        };
        for ((s, f), o) in state
            .states
            .iter_mut()
            .zip(&self.features)
            .zip(out.iter_mut())
        {
            *o = s.update(f.kind, &b).unwrap_or(f64::NAN);
        }
        state.last_bar_ts = Some(bar.ts);
        state.bars_seen += 1;
    }

    /// Event time of the vector that ends with a bar opened at `bar_ts`.
    pub fn event_time(&self, bar_ts: Ts) -> Ts {
        bar_ts + self.interval.seconds()
    }

    /// Batch form: the vector after each bar of `bars` (ascending, one symbol), starting
    /// from a fresh state.
    pub fn compute(&self, bars: &[Bar]) -> Vec<Vec<f64>> {
        let mut state = self.new_state();
        bars.iter()
            .map(|b| {
                let mut out = vec![0.0; self.features.len()];
                self.update(&mut state, b, &mut out);
                out
            })
            .collect()
    }
}

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

/// Every served view version, by name and version.
#[derive(Debug, Clone)]
pub struct Catalog {
    views: Vec<View>,
}

impl Catalog {
    /// Compiles the declared views; refuses duplicates and more than one current version
    /// per name.
    pub fn new(specs: &[ViewSpec]) -> Result<Self, ViewError> {
        let mut views: Vec<View> = specs.iter().map(View::compile).collect::<Result<_, _>>()?;
        views.sort_by(|a, b| a.id.cmp(&b.id));
        for pair in views.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(ViewError {
                    view: pair[0].id.to_string(),
                    what: "declared twice".to_owned(),
                });
            }
        }
        let names: BTreeSet<String> = views.iter().map(|v| v.id.name.clone()).collect();
        for name in names {
            let marked: Vec<i32> = views
                .iter()
                .filter(|v| v.id.name == name && v.current)
                .map(|v| v.id.version)
                .collect();
            if marked.len() > 1 {
                return Err(ViewError {
                    view: name,
                    what: format!("versions {marked:?} are all marked current; mark one"),
                });
            }
            if marked.is_empty()
                && let Some(last) = views.iter_mut().filter(|v| v.id.name == name).last()
            {
                last.current = true;
            }
        }
        Ok(Self { views })
    }

    /// Every view version, ordered by name then version.
    pub fn views(&self) -> &[View] {
        &self.views
    }

    /// Every view version, to fill in what the stores know (creation times).
    pub fn views_mut(&mut self) -> &mut [View] {
        &mut self.views
    }

    /// The view `name` at `version`, or its current version for 0.
    pub fn get(&self, name: &str, version: i32) -> Option<&View> {
        self.views
            .iter()
            .find(|v| v.id.name == name && (v.id.version == version || (version == 0 && v.current)))
    }

    /// Views computed from bars of `interval`.
    pub fn for_interval(&self, interval: Interval) -> impl Iterator<Item = &View> {
        self.views.iter().filter(move |v| v.interval == interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(n: usize) -> Vec<Bar> {
        (0..n)
            .map(|i| {
                let x = i as f64;
                let close = 100.0 + (x * 0.37).sin() * 5.0 + x * 0.05;
                Bar {
                    symbol: "T".into(),
                    interval: Interval::D1,
                    ts: 1_700_000_000 + i as i64 * 86_400,
                    open: close - 0.3,
                    high: close + 1.0 + (x * 0.11).cos().abs(),
                    low: close - 1.0,
                    close,
                    volume: 1e6 + (x * 0.7).sin() * 2e5,
                }
            })
            .collect()
    }

    #[test]
    fn default_view_compiles_with_documented_warmup() {
        let view = View::compile(&default_view()).unwrap();
        assert_eq!(view.features.len(), 16);
        // SMA(50): lookback 49 → 50 bars; MACD(12,26,9): lookback 33 → 34 bars.
        assert_eq!(view.warmup_bars, 50);
        let macd = view
            .features
            .iter()
            .find(|f| f.name == "macd_line")
            .unwrap();
        assert_eq!(macd.lookback_bars, 34);
        let rsi = view.features.iter().find(|f| f.name == "rsi_14").unwrap();
        assert_eq!(rsi.lookback_bars, 15);
    }

    #[test]
    fn values_match_the_indicator_library() {
        let view = View::compile(&default_view()).unwrap();
        let bars = bars(120);
        let out = view.compute(&bars);
        let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
        let rsi = ind::rsi(&closes, 14).unwrap();
        let sma = ind::sma(&closes, 50).unwrap();
        let col = |name: &str| view.names.iter().position(|n| n == name).unwrap();
        for (i, row) in out.iter().enumerate() {
            match rsi[i] {
                Some(v) => assert_eq!(row[col("rsi_14")].to_bits(), v.to_bits(), "rsi at {i}"),
                None => assert!(row[col("rsi_14")].is_nan(), "rsi warm-up at {i}"),
            }
            match sma[i] {
                Some(m) => assert_eq!(row[col("close_sma_50")], closes[i] / m - 1.0),
                None => assert!(row[col("close_sma_50")].is_nan()),
            }
        }
        // Inside the warm-up at least one value is absent; after it none.
        assert!(out[48].iter().any(|v| v.is_nan()));
        assert!(out[49].iter().all(|v| !v.is_nan()), "{:?}", out[49]);
    }

    #[test]
    fn snapshot_resume_equals_uninterrupted() {
        let view = View::compile(&default_view()).unwrap();
        let bars = bars(200);
        let whole = view.compute(&bars);
        let mut state = view.new_state();
        let mut out = vec![0.0; view.features.len()];
        for b in &bars[..77] {
            view.update(&mut state, b, &mut out);
        }
        let mut state = ViewState::from_bytes(&view, &state.to_bytes()).unwrap();
        for (i, b) in bars.iter().enumerate().skip(77) {
            view.update(&mut state, b, &mut out);
            let same = out
                .iter()
                .zip(&whole[i])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "bar {i}: {out:?} vs {:?}", whole[i]);
        }
        assert_eq!(state.bars_seen, 200);
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let mut spec = default_view();
        spec.features[6]
            .params
            .insert("period".into(), "zero".into());
        let e = View::compile(&spec).unwrap_err().to_string();
        assert!(
            e.contains("default:v1") && e.contains("rsi_14") && e.contains("period"),
            "{e}"
        );

        let mut spec = default_view();
        spec.features[0].indicator = "vwap".into();
        let e = View::compile(&spec).unwrap_err().to_string();
        assert!(e.contains("\"vwap\"") && e.contains("log_return"), "{e}");

        let mut spec = default_view();
        spec.features[0].params.insert("window".into(), "3".into());
        let e = View::compile(&spec).unwrap_err().to_string();
        assert!(e.contains("no parameter \"window\""), "{e}");

        let mut spec = default_view();
        spec.features[1].name = "log_return_1".into();
        let e = View::compile(&spec).unwrap_err().to_string();
        assert!(e.contains("declared twice"), "{e}");
    }

    #[test]
    fn catalog_resolves_current_versions() {
        let v1 = default_view();
        let mut v2 = default_view();
        v2.version = 2;
        v2.current = false;
        v2.features.pop();
        let catalog = Catalog::new(&[v1.clone(), v2.clone()]).unwrap();
        assert_eq!(catalog.get("default", 0).unwrap().id.version, 1);
        assert_eq!(catalog.get("default", 2).unwrap().features.len(), 15);
        assert!(catalog.get("default", 3).is_none());
        let mut v1b = v1.clone();
        v1b.current = false;
        let catalog = Catalog::new(&[v1b, v2.clone()]).unwrap();
        assert_eq!(catalog.get("default", 0).unwrap().id.version, 2);
        let mut v2c = v2;
        v2c.current = true;
        assert!(Catalog::new(&[v1, v2c]).is_err());
    }
}
