//! Reading an Alpha Vantage `TIME_SERIES_DAILY` / `TIME_SERIES_INTRADAY` JSON response.
//!
//! Pure and synchronous, so that it can run on a blocking thread and be property-tested.

use std::collections::HashSet;
use std::fmt;

use chrono::{LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use stockcast_proto::stockcast::types::v1::RejectReason;

use crate::sources::{Row, SourceRecord, Unreadable};
use crate::{Bar, Interval, Rejection, echo};

/// What the request asked for, to check the response against.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    /// The requested symbol; bars carry it.
    pub symbol: String,
    /// The requested interval.
    pub interval: Interval,
    /// Keep bars with `start <= ts`, seconds since epoch UTC.
    pub start: i64,
    /// Keep bars with `ts < end`, seconds since epoch UTC.
    pub end: i64,
}

/// Why a response holds no series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// Asking again will not help.
    Fatal(String),
    /// Alpha Vantage refused the call because of its rate limit; `daily` when the text is
    /// about the calls of the day rather than their frequency.
    RateLimited {
        /// The server's text.
        message: String,
        /// The daily limit, not the per-minute one.
        daily: bool,
    },
}

/// The documented field names of one entry, with the field each fills.
const FIELDS: [(&str, &str); 5] = [
    ("1. open", "open"),
    ("2. high", "high"),
    ("3. low", "low"),
    ("4. close", "close"),
    ("5. volume", "volume"),
];

/// Alpha Vantage's name of an intraday interval (`5min`), `None` for daily.
pub(crate) fn av_interval(interval: Interval) -> Option<&'static str> {
    match interval {
        Interval::M1 => Some("1min"),
        Interval::M5 => Some("5min"),
        Interval::M15 => Some("15min"),
        Interval::M30 => Some("30min"),
        Interval::M60 => Some("60min"),
        Interval::D1 => None,
    }
}

/// The records of a response body: bars in ascending time order, each within
/// `[expect.start, expect.end)`, and the entries that could not be read.
pub(crate) fn parse_body(body: &[u8], expect: &Expect) -> Result<Vec<SourceRecord>, Failure> {
    let top: Members<'_> = serde_json::from_slice(body).map_err(|e| {
        Failure::Fatal(if e.is_eof() {
            format!(
                "response body ends early (truncated JSON): {}",
                json_error(&e)
            )
        } else if e.is_data() {
            format!("response is not a JSON object: {}", json_error(&e))
        } else {
            format!("response is not valid JSON: {}", json_error(&e))
        })
    })?;
    top.unique("response")?;

    if let Some(raw) = top.get("Error Message") {
        return Err(Failure::Fatal(text_of(raw)));
    }
    let wanted_series = match av_interval(expect.interval) {
        Some(name) => format!("Time Series ({name})"),
        None => "Time Series (Daily)".to_owned(),
    };
    let Some(series) = top.get(&wanted_series) else {
        if let Some(other) = top.0.iter().find(|(k, _)| k.starts_with("Time Series")) {
            return Err(Failure::Fatal(format!(
                "response holds {}, not the requested {wanted_series:?}",
                echo(&other.0)
            )));
        }
        for key in ["Note", "Information"] {
            if let Some(raw) = top.get(key) {
                return Err(classify_notice(key, &text_of(raw)));
            }
        }
        return Err(Failure::Fatal("response has no time series".to_owned()));
    };

    let zone = check_meta(&top, expect)?;
    let series: Members<'_> = serde_json::from_str(series.get()).map_err(|e| {
        Failure::Fatal(format!(
            "{wanted_series:?} is not a JSON object: {}",
            json_error(&e)
        ))
    })?;

    // Sort key: bar open time, then position in the response; unreadable entries without a
    // time go last.
    let mut records: Vec<(i64, usize, SourceRecord)> = Vec::with_capacity(series.0.len());
    let mut seen = HashSet::with_capacity(series.0.len());
    for (index, (key, raw)) in series.0.iter().enumerate() {
        let unreadable = |code, field, reason: String| {
            SourceRecord::Unreadable(Unreadable {
                payload: entry_payload(key, raw),
                payload_type: "application/json",
                index: i64::try_from(index).unwrap_or(-1),
                symbol: expect.symbol.clone(),
                rejection: Rejection::new(code, field, reason),
            })
        };
        let ts = match timestamp(key, zone) {
            Ok(ts) => ts,
            Err(reason) => {
                records.push((
                    i64::MAX,
                    index,
                    unreadable(RejectReason::InvalidTimestamp, "ts", reason),
                ));
                continue;
            }
        };
        if ts < expect.start || ts >= expect.end {
            continue;
        }
        if !seen.insert(ts) {
            let reason = format!("{} appears more than once in the series", echo(key));
            records.push((ts, index, unreadable(RejectReason::Malformed, "ts", reason)));
            continue;
        }
        let record = match values(raw) {
            Ok([open, high, low, close, volume]) => SourceRecord::Row(Row {
                bar: Bar {
                    symbol: expect.symbol.clone(),
                    interval: expect.interval,
                    ts,
                    open,
                    high,
                    low,
                    close,
                    volume,
                },
                index: i64::try_from(index).unwrap_or(-1),
                payload: entry_payload(key, raw),
                payload_type: "application/json",
            }),
            Err((code, field, reason)) => unreadable(code, field, reason),
        };
        records.push((ts, index, record));
    }
    records.sort_by_key(|(ts, index, _)| (*ts, *index));
    Ok(records.into_iter().map(|(_, _, record)| record).collect())
}

/// Tells a rate-limit notice from the others (premium endpoint, demo key, …).
fn classify_notice(key: &str, text: &str) -> Failure {
    let lower = text.to_ascii_lowercase();
    let rate_limited = [
        "call frequency",
        "rate limit",
        "requests per day",
        "calls per day",
    ]
    .iter()
    .any(|marker| lower.contains(marker));
    if rate_limited {
        // The daily-limit text also says "premium plans", hence this check comes first. A
        // text that names a per-minute or per-second pace is about frequency even when it
        // also quotes the daily figure, and waiting a little helps.
        let paced = ["per minute", "per second", "call frequency", "sparingly"]
            .iter()
            .any(|marker| lower.contains(marker));
        let daily = !paced && lower.contains("per day");
        return Failure::RateLimited {
            message: text.to_owned(),
            daily,
        };
    }
    if lower.contains("premium") {
        return Failure::Fatal(format!("premium endpoint: {text}"));
    }
    Failure::Fatal(format!("{key}: {text}"))
}

/// Checks symbol and interval in `"Meta Data"`; the exchange time zone for intraday series.
fn check_meta(top: &Members<'_>, expect: &Expect) -> Result<Option<Tz>, Failure> {
    let raw = top
        .get("Meta Data")
        .ok_or_else(|| Failure::Fatal("response has no \"Meta Data\"".to_owned()))?;
    let meta: Members<'_> = serde_json::from_str(raw.get()).map_err(|e| {
        Failure::Fatal(format!(
            "\"Meta Data\" is not a JSON object: {}",
            json_error(&e)
        ))
    })?;
    meta.unique("response")?;
    let field = |name: &str| -> Result<String, Failure> {
        meta.get(name)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .ok_or_else(|| Failure::Fatal(format!("\"Meta Data\" has no text {name:?}")))
    };

    let symbol = field("2. Symbol")?;
    if !symbol.trim().eq_ignore_ascii_case(&expect.symbol) {
        return Err(Failure::Fatal(format!(
            "response is for symbol {}, not the requested {:?}",
            echo(&symbol),
            expect.symbol
        )));
    }
    let Some(interval) = av_interval(expect.interval) else {
        return Ok(None);
    };
    let got = field("4. Interval")?;
    if got != interval {
        return Err(Failure::Fatal(format!(
            "\"4. Interval\" is {}, not the requested {interval:?}",
            echo(&got)
        )));
    }
    let zone = field("6. Time Zone")?;
    zone.parse::<Tz>().map(Some).map_err(|_| {
        Failure::Fatal(format!(
            "\"6. Time Zone\" {} is not an IANA time zone",
            echo(&zone)
        ))
    })
}

/// Open time of the entry keyed `key`, seconds since epoch UTC. Daily bars open at 00:00 UTC
/// of the trading date; intraday keys are the open time in the exchange's zone.
fn timestamp(key: &str, zone: Option<Tz>) -> Result<i64, String> {
    let Some(zone) = zone else {
        let date = NaiveDate::parse_from_str(key, "%Y-%m-%d")
            .map_err(|e| format!("{} is not a date YYYY-MM-DD: {e}", echo(key)))?;
        return date
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .ok_or_else(|| format!("{} has no midnight", echo(key)));
    };
    let local = NaiveDateTime::parse_from_str(key, "%Y-%m-%d %H:%M:%S")
        .map_err(|e| format!("{} is not a time YYYY-MM-DD HH:MM:SS: {e}", echo(key)))?;
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.timestamp()),
        LocalResult::Ambiguous(first, second) => Err(format!(
            "{key:?} is ambiguous in {zone}: it happens twice when daylight saving time ends \
             ({} and {})",
            first.naive_utc().format("%Y-%m-%dT%H:%M:%SZ"),
            second.naive_utc().format("%Y-%m-%dT%H:%M:%SZ"),
        )),
        LocalResult::None => Err(format!(
            "{key:?} does not exist in {zone}: the clock skips it when daylight saving time \
             begins"
        )),
    }
}

/// `[open, high, low, close, volume]` of one entry, or the code, field and reason it fails.
fn values(raw: &RawValue) -> Result<[f64; 5], (RejectReason, &'static str, String)> {
    let entry: Members<'_> = serde_json::from_str(raw.get()).map_err(|_| {
        (
            RejectReason::Malformed,
            "",
            format!("entry is not a JSON object: {}", clip(raw.get())),
        )
    })?;
    if let Err(name) = entry.unique_key() {
        let field = FIELDS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, f)| *f);
        let reason = format!("{} appears more than once in the entry", echo(name));
        return Err((RejectReason::Malformed, field, reason));
    }
    let mut out = [0.0; 5];
    for (slot, (name, field)) in out.iter_mut().zip(FIELDS) {
        let raw = entry.get(name).ok_or_else(|| {
            (
                RejectReason::MissingField,
                field,
                format!("{name:?} is missing"),
            )
        })?;
        let number = match serde_json::from_str::<String>(raw.get()) {
            Ok(text) => text.trim().parse::<f64>().ok(),
            // A JSON number is unambiguous even though Alpha Vantage documents strings.
            Err(_) => serde_json::from_str::<f64>(raw.get()).ok(),
        };
        *slot = number.ok_or_else(|| {
            (
                RejectReason::Malformed,
                field,
                format!("{name:?} is {}, not a number", clip(raw.get())),
            )
        })?;
    }
    Ok(out)
}

/// The entry as a one-member JSON object, so the dead letter keeps its timestamp.
fn entry_payload(key: &str, raw: &RawValue) -> Vec<u8> {
    let key = serde_json::to_string(key).unwrap_or_default();
    let mut out = Vec::with_capacity(key.len() + raw.get().len() + 3);
    out.push(b'{');
    out.extend_from_slice(key.as_bytes());
    out.push(b':');
    out.extend_from_slice(raw.get().as_bytes());
    out.push(b'}');
    out
}

/// The text of a JSON string, or the raw JSON of anything else, cut to a readable length (a
/// server's notice is about 250 characters).
fn text_of(raw: &RawValue) -> String {
    let text = serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_owned());
    match text.char_indices().nth(512) {
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
        None => text,
    }
}

/// A JSON error for a message: serde_json repeats the offending value whole (a 100 kB
/// string), so the text is cut, keeping the position.
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.len() <= 200 {
        return text;
    }
    let head = stockcast_runtime::echo::prefix(&text, 120);
    format!("{head}… at line {} column {}", e.line(), e.column())
}

/// At most 80 characters of `text`, for messages.
fn clip(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The members of a JSON object in document order, values kept as raw JSON.
#[derive(Debug)]
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'a> Members<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// `Err(key)` for the first key that appears twice: which of two values is meant is
    /// unknown, so neither is read.
    fn unique_key(&self) -> Result<(), &str> {
        let mut seen = HashSet::with_capacity(self.0.len());
        match self.0.iter().find(|(k, _)| !seen.insert(k.as_str())) {
            Some((key, _)) => Err(key),
            None => Ok(()),
        }
    }

    /// [`unique_key`](Self::unique_key) as the failure of the object `what`.
    fn unique(&self, what: &str) -> Result<(), Failure> {
        self.unique_key().map_err(|key| {
            Failure::Fatal(format!(
                "{} appears more than once in the {what}",
                echo(key)
            ))
        })
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
