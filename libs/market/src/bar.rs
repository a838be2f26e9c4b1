//! A market bar and its interval.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Bar length. The open time of a bar is a multiple of its length in UTC (daily bars open at
/// 00:00 UTC of the trading date).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Interval {
    /// One minute.
    #[serde(rename = "1m")]
    M1,
    /// Five minutes.
    #[serde(rename = "5m")]
    M5,
    /// Fifteen minutes.
    #[serde(rename = "15m")]
    M15,
    /// Thirty minutes.
    #[serde(rename = "30m")]
    M30,
    /// Sixty minutes.
    #[serde(rename = "60m")]
    M60,
    /// One trading day.
    #[serde(rename = "1d")]
    D1,
}

impl Interval {
    /// Every interval, shortest first.
    pub const ALL: [Interval; 6] = [
        Interval::M1,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::M60,
        Interval::D1,
    ];

    /// Length in seconds.
    pub const fn seconds(self) -> i64 {
        match self {
            Interval::M1 => 60,
            Interval::M5 => 300,
            Interval::M15 => 900,
            Interval::M30 => 1_800,
            Interval::M60 => 3_600,
            Interval::D1 => 86_400,
        }
    }

    /// The open time that the bars completed by `now` (seconds, UTC) end before: every bar
    /// opening earlier has closed. The exclusive range end of a history up to now, which leaves
    /// out the bar still in progress (today's daily bar closes at midnight tonight).
    pub const fn completed_until(self, now: i64) -> i64 {
        now - now.rem_euclid(self.seconds())
    }

    /// Short name used in storage, config and the CLI: `1m`, `5m`, `15m`, `30m`, `60m`, `1d`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::M60 => "60m",
            Interval::D1 => "1d",
        }
    }

    /// Whether the bar is intraday.
    pub const fn is_intraday(self) -> bool {
        !matches!(self, Interval::D1)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An interval name that is not one of `1m 5m 15m 30m 60m 1d`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interval {0:?} is not one of 1m, 5m, 15m, 30m, 60m, 1d")]
pub struct ParseIntervalError(pub String);

impl FromStr for Interval {
    type Err = ParseIntervalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "1m" | "1min" => Interval::M1,
            "5m" | "5min" => Interval::M5,
            "15m" | "15min" => Interval::M15,
            "30m" | "30min" => Interval::M30,
            "60m" | "60min" | "1h" => Interval::M60,
            "1d" | "daily" | "d" => Interval::D1,
            _ => return Err(ParseIntervalError(s.to_owned())),
        })
    }
}

/// One OHLCV bar. Validity is checked by [`crate::Validator`], not by construction,
/// because invalid bars must travel to the dead-letter topic intact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Ticker, e.g. `AAPL`, `BRK.B`.
    pub symbol: String,
    /// Bar length.
    pub interval: Interval,
    /// Bar open time, seconds since epoch, UTC.
    pub ts: i64,
    /// First trade price.
    pub open: f64,
    /// Highest trade price.
    pub high: f64,
    /// Lowest trade price.
    pub low: f64,
    /// Last trade price.
    pub close: f64,
    /// Traded quantity (shares); fractional for sources that report it so.
    pub volume: f64,
}

impl Bar {
    /// Whether every value equals `other`'s (prices compared bit for bit, so a correction of
    /// 1e-12 is still a correction).
    pub fn same_values(&self, other: &Bar) -> bool {
        self.open.to_bits() == other.open.to_bits()
            && self.high.to_bits() == other.high.to_bits()
            && self.low.to_bits() == other.low.to_bits()
            && self.close.to_bits() == other.close.to_bits()
            && self.volume.to_bits() == other.volume.to_bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_names_round_trip() {
        for interval in Interval::ALL {
            assert_eq!(interval.as_str().parse::<Interval>(), Ok(interval));
        }
        assert_eq!("5min".parse::<Interval>(), Ok(Interval::M5));
        assert!("2m".parse::<Interval>().is_err());
    }
}
