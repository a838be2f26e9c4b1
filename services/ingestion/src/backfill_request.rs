//! A `StartBackfillRequest` checked and converted into a [`BackfillSpec`] before anything is
//! stored: every field's domain, the time range, the job's size, the symbols and, for CSV,
//! that the file lies inside the service's CSV directory. See docs/contracts.md for limits.

use std::path::{Component, Path, PathBuf};

use stockcast_market::convert::{interval_from_proto, seconds_from_proto};
use stockcast_market::sources::alpha_vantage::{AlphaVantageParams, OutputSize};
use stockcast_market::sources::csv::CsvParams;
use stockcast_market::sources::synthetic::SyntheticParams;
use stockcast_market::sources::{BackfillSpec, SourceParams};
use stockcast_market::{MIN_TS, Validator, echo, format_ts};
use stockcast_proto::stockcast::ingestion::v1 as pb;

use crate::error::Error;

/// Symbols one job may load.
pub const MAX_SYMBOLS: usize = 1_000;
/// Bar slots one job may span: symbols × (end − start) / interval.
pub const MAX_JOB_BARS: i64 = 50_000_000;
/// How far past now a range may end, seconds (a daily bar of today ends tomorrow).
pub const MAX_FUTURE_SECS: i64 = 86_400;

/// What a request is checked against.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The symbol rule of every bar.
    pub validator: Validator,
    /// The only directory CSV backfills may read.
    pub csv_dir: PathBuf,
}

/// Converts `request`, refusing anything that could not run or could never be valid.
pub fn backfill_spec(
    request: pb::StartBackfillRequest,
    rules: &Rules,
    now: i64,
) -> Result<BackfillSpec, Error> {
    let invalid = |message: String| Error::InvalidArgument(message);
    let interval = interval_from_proto(request.interval).map_err(|r| invalid(r.reason))?;
    let range = request
        .range
        .ok_or_else(|| invalid("range is missing".to_owned()))?;
    let start =
        seconds_from_proto(range.start.as_ref(), "range.start").map_err(|r| invalid(r.reason))?;
    let end = match range.end.as_ref() {
        // Up to the last completed bar: one still in progress is not a bar yet.
        None => interval.completed_until(now),
        Some(end) => seconds_from_proto(Some(end), "range.end").map_err(|r| invalid(r.reason))?,
    };
    let latest = now + MAX_FUTURE_SECS;
    for (field, value) in [("range.start", start), ("range.end", end)] {
        if !(MIN_TS..=latest).contains(&value) {
            return Err(Error::OutOfRange(format!(
                "{field} {} is outside 1900-01-01T00:00:00Z .. now + 1 day",
                format_ts(value)
            )));
        }
    }
    if end <= start {
        return Err(invalid(format!(
            "range.end {} is not after range.start {}",
            format_ts(end),
            format_ts(start)
        )));
    }
    let source = pb::BackfillSource::try_from(request.source).map_err(|_| {
        invalid(format!(
            "source {} is not a backfill source",
            request.source
        ))
    })?;
    let params = params(source, request.params, rules)?;
    let needs_symbols = !matches!(params, SourceParams::Csv(_));
    if needs_symbols && request.symbols.is_empty() {
        return Err(invalid("symbols is empty".to_owned()));
    }
    if request.symbols.len() > MAX_SYMBOLS {
        return Err(Error::OutOfRange(format!(
            "symbols has {} entries, more than {MAX_SYMBOLS}",
            request.symbols.len()
        )));
    }
    for (i, symbol) in request.symbols.iter().enumerate() {
        rules
            .validator
            .check_symbol(symbol)
            .map_err(|r| invalid(format!("symbols[{i}]: {}", r.reason)))?;
    }
    if needs_symbols {
        let slots = (end - start) / interval.seconds();
        let bars = slots.saturating_mul(request.symbols.len() as i64);
        if bars > MAX_JOB_BARS {
            return Err(Error::OutOfRange(format!(
                "range spans {slots} bars of {interval} for {} symbols, more than \
                 {MAX_JOB_BARS} in one job; split it",
                request.symbols.len()
            )));
        }
    }
    Ok(BackfillSpec {
        symbols: request.symbols,
        interval,
        start,
        end,
        params,
    })
}

fn params(
    source: pb::BackfillSource,
    params: Option<pb::start_backfill_request::Params>,
    rules: &Rules,
) -> Result<SourceParams, Error> {
    use pb::start_backfill_request::Params;
    let invalid = |message: String| Error::InvalidArgument(message);
    Ok(match (source, params) {
        (pb::BackfillSource::Unspecified, _) => {
            return Err(invalid("source is unspecified".to_owned()));
        }
        (pb::BackfillSource::AlphaVantage, None) => {
            SourceParams::AlphaVantage(AlphaVantageParams::default())
        }
        (pb::BackfillSource::AlphaVantage, Some(Params::AlphaVantage(p))) => {
            SourceParams::AlphaVantage(AlphaVantageParams {
                output_size: match pb::AlphaVantageOutputSize::try_from(p.output_size) {
                    Ok(pb::AlphaVantageOutputSize::Full) => OutputSize::Full,
                    Ok(_) => OutputSize::Compact,
                    Err(_) => {
                        return Err(invalid(format!(
                            "alpha_vantage.output_size {} is not an output size",
                            p.output_size
                        )));
                    }
                },
                extended_hours: p.extended_hours,
            })
        }
        (pb::BackfillSource::Csv, Some(Params::Csv(p))) => {
            if p.path.is_empty() {
                return Err(invalid("csv.path is empty".to_owned()));
            }
            confine(&rules.csv_dir, &p.path)?;
            if !p.symbol.is_empty() {
                rules
                    .validator
                    .check_symbol(&p.symbol)
                    .map_err(|r| invalid(format!("csv.symbol: {}", r.reason)))?;
            }
            if !p.time_zone.is_empty() && p.time_zone.parse::<chrono_tz::Tz>().is_err() {
                return Err(invalid(format!(
                    "csv.time_zone {} is not an IANA time zone",
                    echo(&p.time_zone)
                )));
            }
            SourceParams::Csv(CsvParams {
                path: p.path.into(),
                symbol: Some(p.symbol).filter(|s| !s.is_empty()),
                time_zone: Some(p.time_zone).filter(|s| !s.is_empty()),
                ..Default::default()
            })
        }
        (pb::BackfillSource::Csv, None) => {
            return Err(invalid("csv.path is missing for source CSV".to_owned()));
        }
        (pb::BackfillSource::Synthetic, None) => {
            SourceParams::Synthetic(SyntheticParams::default())
        }
        (pb::BackfillSource::Synthetic, Some(Params::Synthetic(p))) => {
            // Zero means the server default for every parameter (proto3 scalars).
            let defaults = SyntheticParams::default();
            let or = |value: f64, default: f64| if value == 0.0 { default } else { value };
            let params = SyntheticParams {
                seed: if p.seed == 0 { defaults.seed } else { p.seed },
                initial_price: or(p.initial_price, defaults.initial_price),
                annual_drift: or(p.annual_drift, defaults.annual_drift),
                annual_volatility: or(p.annual_volatility, defaults.annual_volatility),
                turbulent_volatility_multiplier: or(
                    p.turbulent_volatility_multiplier,
                    defaults.turbulent_volatility_multiplier,
                ),
                regime_switch_probability: or(
                    p.regime_switch_probability,
                    defaults.regime_switch_probability,
                ),
                jumps_per_year: or(p.jumps_per_year, defaults.jumps_per_year),
                jump_volatility: or(p.jump_volatility, defaults.jump_volatility),
            };
            params.validate().map_err(|e| {
                invalid(format!(
                    "synthetic.{} {} is {}",
                    e.field, e.value, e.expected
                ))
            })?;
            SourceParams::Synthetic(params)
        }
        (source, Some(_)) => {
            return Err(invalid(format!(
                "params do not match source {}",
                source.as_str_name()
            )));
        }
    })
}

/// Refuses a CSV path that is not a regular file inside `root` once symlinks are resolved.
/// Every refusal has the same message, which names neither the directory nor whether the
/// file exists: a client learns nothing about the server's file system beyond `root`.
fn confine(root: &Path, path: &str) -> Result<(), Error> {
    let refused = || {
        Error::InvalidArgument(format!(
            "csv.path {} is not a readable file inside the service's CSV directory \
             (a relative path without `..`)",
            echo(path)
        ))
    };
    let relative = Path::new(path);
    let lexically_inside = !path.contains('\0')
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !lexically_inside {
        return Err(refused());
    }
    let root = root.canonicalize().map_err(|_| refused())?;
    let full = root.join(relative).canonicalize().map_err(|_| refused())?;
    let is_file = std::fs::metadata(&full).is_ok_and(|m| m.is_file());
    if !full.starts_with(&root) || !is_file {
        return Err(refused());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_paths_are_confined_lexically_and_after_resolving_links() {
        let root = tempfile_dir();
        std::fs::write(root.join("a.csv"), "x").unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/b.csv"), "x").unwrap();
        assert!(confine(&root, "a.csv").is_ok());
        assert!(confine(&root, "./sub/b.csv").is_ok());
        for bad in [
            "/etc/passwd",
            "../a.csv",
            "sub/../../a.csv",
            "sub/../a.csv",
            "sub",
            "nope.csv",
            "a.csv\0",
        ] {
            let error = confine(&root, bad).unwrap_err().to_string();
            assert!(error.contains("csv.path"), "{error}");
            assert!(!error.contains(&*root.to_string_lossy()), "{error}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("confine-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
