//! Validation of every bar before it is accepted.

use serde::{Deserialize, Serialize};
use stockcast_proto::stockcast::types::v1::RejectReason;

use crate::bar::Bar;

/// Why a bar was refused: a machine code, the field at fault and a message naming the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Machine-readable reason.
    pub code: RejectReason,
    /// The field at fault (`high`, `symbol`, …), empty when not one field.
    pub field: &'static str,
    /// What was wrong, with the offending value.
    pub reason: String,
}

impl Rejection {
    /// A rejection of `field`.
    pub fn new(code: RejectReason, field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            field,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Validation rules that deployments tune.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSettings {
    /// Regular expression a symbol must match entirely.
    pub symbol_pattern: String,
    /// How far after now a bar's close time (open time + interval) may be, seconds (clock skew
    /// between sources); a bar closing later is still in progress and refused.
    pub future_tolerance_secs: i64,
}

impl Default for ValidationSettings {
    fn default() -> Self {
        Self {
            symbol_pattern: DEFAULT_SYMBOL_PATTERN.to_owned(),
            future_tolerance_secs: 300,
        }
    }
}

/// Symbols as exchanges write them: upper-case letters, digits, `.` and `-`, 1 to 16 long.
pub const DEFAULT_SYMBOL_PATTERN: &str = "^[A-Z0-9.\\-]{1,16}$";

/// The earliest bar open time accepted, 1900-01-01T00:00:00Z in seconds since epoch: every
/// write and every time range a request names must lie between this and now plus the clock
/// skew tolerance.
pub const MIN_TS: i64 = -2_208_988_800;

/// Characters of a client's value repeated in a message; longer values are cut.
const ECHO_CHARS: usize = 64;

/// `value` as a message may repeat it: quoted, cut after 64 characters with its length in
/// bytes, so that an error never grows with the input (a 9 MiB symbol is not sent back).
pub fn echo(value: &str) -> String {
    let head = cut(value);
    if head.len() == value.len() {
        format!("{value:?}")
    } else {
        format!("{head:?}… ({} bytes)", value.len())
    }
}

/// `value` cut to at most 64 characters, for fields that carry a client's value back.
pub fn cut(value: &str) -> &str {
    stockcast_runtime::echo::prefix(value, ECHO_CHARS)
}

/// A number for a message: as written for everyday sizes, in exponent form when huge or tiny
/// (`{}` prints `1e300` as 301 digits, which would swamp the message).
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && magnitude.is_finite() && !(1e-6..1e15).contains(&magnitude) {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// Checks bars against the rules. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Validator {
    /// `None` for the default pattern, checked without a regex engine on the hot path.
    pattern: Option<regex::Regex>,
    pattern_text: String,
    future_tolerance_secs: i64,
}

impl Validator {
    /// Builds a validator; an invalid pattern is reported with its config key.
    pub fn new(settings: &ValidationSettings) -> Result<Self, String> {
        let pattern = if settings.symbol_pattern == DEFAULT_SYMBOL_PATTERN {
            None
        } else {
            Some(regex::Regex::new(&settings.symbol_pattern).map_err(|e| {
                format!(
                    "config key `validation.symbol_pattern`: {:?} is not a regular expression: {e}",
                    settings.symbol_pattern
                )
            })?)
        };
        Ok(Self {
            pattern,
            pattern_text: settings.symbol_pattern.clone(),
            future_tolerance_secs: settings.future_tolerance_secs,
        })
    }

    /// Checks one bar; `now` is seconds since epoch, UTC.
    pub fn check(&self, bar: &Bar, now: i64) -> Result<(), Rejection> {
        self.check_symbol(&bar.symbol)?;
        for (field, value) in [
            ("open", bar.open),
            ("high", bar.high),
            ("low", bar.low),
            ("close", bar.close),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Rejection::new(
                    RejectReason::InvalidPrice,
                    field,
                    format!("{field} {} is not a finite positive price", number(value)),
                ));
            }
        }
        if !(bar.volume.is_finite() && bar.volume >= 0.0) {
            return Err(Rejection::new(
                RejectReason::InvalidVolume,
                "volume",
                format!("volume {} is not a finite number >= 0", number(bar.volume)),
            ));
        }
        let body_low = bar.open.min(bar.close);
        let body_high = bar.open.max(bar.close);
        if bar.low > body_low {
            return Err(Rejection::new(
                RejectReason::InconsistentOhlc,
                "low",
                format!(
                    "low {} is above min(open, close) {}",
                    number(bar.low),
                    number(body_low)
                ),
            ));
        }
        if bar.high < body_high {
            return Err(Rejection::new(
                RejectReason::InconsistentOhlc,
                "high",
                format!(
                    "high {} is below max(open, close) {}",
                    number(bar.high),
                    number(body_high)
                ),
            ));
        }
        if bar.ts < MIN_TS {
            return Err(Rejection::new(
                RejectReason::InvalidTimestamp,
                "ts",
                format!(
                    "ts {} is before 1900-01-01T00:00:00Z, the earliest bar accepted",
                    format_ts(bar.ts)
                ),
            ));
        }
        if bar.ts.rem_euclid(bar.interval.seconds()) != 0 {
            return Err(Rejection::new(
                RejectReason::InvalidTimestamp,
                "ts",
                format!(
                    "ts {} is not aligned to the start of a {} bar",
                    format_ts(bar.ts),
                    bar.interval
                ),
            ));
        }
        // A bar is complete once it has closed (open time + interval): one still in progress
        // (today's daily bar, the current minute) is not a bar yet anywhere in the system, or
        // features would be dated after now. The tolerance allows for clock skew.
        let close = bar.ts.saturating_add(bar.interval.seconds());
        if close > now.saturating_add(self.future_tolerance_secs) {
            return Err(Rejection::new(
                RejectReason::FutureTimestamp,
                "ts",
                format!(
                    "the {} bar at {} closes at {}, after now (+{} s tolerance): an unfinished bar is not stored; send it once it has closed",
                    bar.interval,
                    format_ts(bar.ts),
                    format_ts(close),
                    self.future_tolerance_secs
                ),
            ));
        }
        Ok(())
    }

    /// Checks a symbol against the configured pattern.
    pub fn check_symbol(&self, symbol: &str) -> Result<(), Rejection> {
        let ok = match &self.pattern {
            None => {
                (1..=16).contains(&symbol.len())
                    && symbol.bytes().all(|b| {
                        b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                    })
            }
            Some(pattern) => pattern.is_match(symbol),
        };
        if ok {
            return Ok(());
        }
        let reason = if symbol.is_empty() {
            "symbol is empty".to_owned()
        } else {
            format!(
                "symbol {} does not match {}",
                echo(symbol),
                self.pattern_text
            )
        };
        Err(Rejection::new(
            RejectReason::InvalidSymbol,
            "symbol",
            reason,
        ))
    }
}

/// RFC 3339 text of a timestamp, for messages.
pub fn format_ts(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Interval;

    const NOW: i64 = 1_700_000_000;

    fn bar() -> Bar {
        Bar {
            symbol: "AAPL".to_owned(),
            interval: Interval::M1,
            ts: NOW - NOW % 60 - 60,
            open: 10.0,
            high: 11.0,
            low: 9.5,
            close: 10.5,
            volume: 1_000.0,
        }
    }

    fn check(bar: &Bar) -> Result<(), Rejection> {
        Validator::new(&ValidationSettings::default())
            .unwrap()
            .check(bar, NOW)
    }

    fn rejected(bar: Bar) -> Rejection {
        check(&bar).unwrap_err()
    }

    #[test]
    fn a_good_bar_passes() {
        assert_eq!(check(&bar()), Ok(()));
        assert_eq!(
            check(&Bar {
                symbol: "BRK.B".into(),
                ..bar()
            }),
            Ok(())
        );
        assert_eq!(
            check(&Bar {
                volume: 0.0,
                ..bar()
            }),
            Ok(())
        );
        let flat = Bar {
            open: 10.0,
            high: 10.0,
            low: 10.0,
            close: 10.0,
            ..bar()
        };
        assert_eq!(check(&flat), Ok(()));
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases = [
            (
                Bar {
                    symbol: "".into(),
                    ..bar()
                },
                "symbol",
                RejectReason::InvalidSymbol,
            ),
            (
                Bar {
                    symbol: "aapl".into(),
                    ..bar()
                },
                "symbol",
                RejectReason::InvalidSymbol,
            ),
            (
                Bar {
                    symbol: "A".repeat(17),
                    ..bar()
                },
                "symbol",
                RejectReason::InvalidSymbol,
            ),
            (
                Bar {
                    open: f64::NAN,
                    ..bar()
                },
                "open",
                RejectReason::InvalidPrice,
            ),
            (
                Bar {
                    close: -1.0,
                    ..bar()
                },
                "close",
                RejectReason::InvalidPrice,
            ),
            (
                Bar {
                    high: f64::INFINITY,
                    ..bar()
                },
                "high",
                RejectReason::InvalidPrice,
            ),
            (Bar { low: 0.0, ..bar() }, "low", RejectReason::InvalidPrice),
            (
                Bar {
                    volume: -5.0,
                    ..bar()
                },
                "volume",
                RejectReason::InvalidVolume,
            ),
            (
                Bar {
                    volume: f64::NAN,
                    ..bar()
                },
                "volume",
                RejectReason::InvalidVolume,
            ),
            (
                Bar { low: 10.2, ..bar() },
                "low",
                RejectReason::InconsistentOhlc,
            ),
            (
                Bar {
                    high: 10.4,
                    ..bar()
                },
                "high",
                RejectReason::InconsistentOhlc,
            ),
            (
                Bar {
                    ts: bar().ts + 7,
                    ..bar()
                },
                "ts",
                RejectReason::InvalidTimestamp,
            ),
            (
                Bar {
                    ts: NOW - NOW % 60 + 3_600,
                    ..bar()
                },
                "ts",
                RejectReason::FutureTimestamp,
            ),
        ];
        for (bar, field, code) in cases {
            let rejection = rejected(bar.clone());
            assert_eq!(
                (rejection.field, rejection.code),
                (field, code),
                "{bar:?}: {rejection:?}"
            );
        }
    }

    #[test]
    fn long_values_are_cut_in_messages_and_ancient_bars_are_rejected() {
        let symbol = "Z".repeat(1 << 20);
        let reason = rejected(Bar {
            symbol: symbol.clone(),
            ..bar()
        })
        .reason;
        assert!(reason.len() < 200, "{}", reason.len());
        assert!(reason.contains("1048576 bytes"), "{reason}");
        assert_eq!(cut(&symbol).len(), 64);
        assert_eq!(echo("🦀"), "\"🦀\"");
        let ancient = Bar {
            interval: Interval::D1,
            ts: MIN_TS - 86_400,
            ..bar()
        };
        let rejection = rejected(ancient);
        assert_eq!(
            (rejection.field, rejection.code),
            ("ts", RejectReason::InvalidTimestamp)
        );
        assert!(
            check(&Bar {
                interval: Interval::D1,
                ts: MIN_TS,
                ..bar()
            })
            .is_ok()
        );
    }

    #[test]
    fn a_bar_that_has_not_closed_is_not_a_bar_yet() {
        let day = NOW - NOW.rem_euclid(86_400);
        let daily = |ts| Bar {
            interval: Interval::D1,
            ts,
            ..bar()
        };
        // Yesterday's bar closed at midnight: complete.
        assert_eq!(check(&daily(day - 86_400)), Ok(()));
        // Today's bar opened hours ago but closes at midnight tonight.
        let today = rejected(daily(day));
        assert_eq!(
            (today.field, today.code),
            ("ts", RejectReason::FutureTimestamp),
            "{today:?}"
        );
        assert!(today.reason.contains("closes at"), "{}", today.reason);
        // The hour bar in progress likewise (NOW is 13 min 20 s past the hour); a minute bar
        // that closes within the clock-skew tolerance passes.
        let hour = NOW - NOW % 3_600;
        assert_eq!(
            rejected(Bar {
                interval: Interval::M60,
                ts: hour,
                ..bar()
            })
            .code,
            RejectReason::FutureTimestamp
        );
        let minute = NOW - NOW % 60;
        assert_eq!(
            Validator::new(&ValidationSettings::default())
                .unwrap()
                .check(
                    &Bar {
                        ts: minute - 60,
                        ..bar()
                    },
                    minute - 1
                ),
            Ok(())
        );
    }

    #[test]
    fn messages_carry_the_value() {
        let r = rejected(Bar {
            high: 10.4,
            ..bar()
        });
        assert_eq!(r.reason, "high 10.4 is below max(open, close) 10.5");
        let r = rejected(Bar {
            symbol: "".into(),
            ..bar()
        });
        assert_eq!(r.reason, "symbol is empty");
    }

    #[test]
    fn a_custom_symbol_pattern_applies() {
        let settings = ValidationSettings {
            symbol_pattern: "^[A-Z]{1,4}\\.XETR$".into(),
            ..Default::default()
        };
        let validator = Validator::new(&settings).unwrap();
        assert!(
            validator
                .check(
                    &Bar {
                        symbol: "SAP.XETR".into(),
                        ..bar()
                    },
                    NOW
                )
                .is_ok()
        );
        assert!(validator.check(&bar(), NOW).is_err());
        let bad = ValidationSettings {
            symbol_pattern: "([".into(),
            ..Default::default()
        };
        assert!(
            Validator::new(&bad)
                .unwrap_err()
                .contains("validation.symbol_pattern")
        );
    }

    #[test]
    fn the_default_pattern_fast_path_agrees_with_the_regex() {
        let regex = regex::Regex::new(DEFAULT_SYMBOL_PATTERN).unwrap();
        let fast = Validator::new(&ValidationSettings::default()).unwrap();
        for symbol in [
            "A",
            "BRK.B",
            "BF-B",
            "X1",
            "",
            "a",
            "ÄPL",
            "TOO_LONG",
            "ABCDEFGHIJKLMNOPQ",
            "A B",
        ] {
            assert_eq!(
                fast.check_symbol(symbol).is_ok(),
                regex.is_match(symbol),
                "{symbol:?}"
            );
        }
    }

    #[test]
    fn huge_and_tiny_prices_are_named_in_exponent_form_so_the_reason_stays_short() {
        let huge = Bar {
            open: f64::MAX,
            high: 1e300,
            low: f64::MAX,
            close: 1e300,
            ..bar()
        };
        let rejection = rejected(huge);
        assert_eq!(rejection.field, "low");
        assert!(rejection.reason.len() < 100, "{}", rejection.reason);
        assert!(rejection.reason.contains("1e300"), "{}", rejection.reason);
        let tiny = rejected(Bar {
            volume: -1e-300,
            ..bar()
        });
        assert!(tiny.reason.contains("-1e-300"), "{}", tiny.reason);
        // everyday numbers read as written
        let low = rejected(Bar {
            low: 10.25,
            ..bar()
        });
        assert!(low.reason.contains("low 10.25 "), "{}", low.reason);
    }
}
