//! Compiling a declared view into a [`View`]: names checked, parameters parsed with their
//! defaults filled in, lookbacks and the canonical definition computed.

use std::collections::{BTreeMap, BTreeSet};

use super::engine::{BandPart, Kind, MacdPart};
use super::{Feature, FeatureSpec, INDICATORS, View, ViewId, ViewSpec};

/// Why a view definition is unusable; names the view, the feature and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("view {view}: {what}")]
pub struct ViewError {
    /// `name:vN`.
    pub view: String,
    /// What is wrong, naming the feature and parameter.
    pub what: String,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::default_view;

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
}
