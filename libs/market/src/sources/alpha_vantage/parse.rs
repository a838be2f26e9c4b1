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
use crate::{Bar, Interval, Rejection};

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
            format!("response body ends early (truncated JSON): {e}")
        } else if e.is_data() {
            format!("response is not a JSON object: {e}")
        } else {
            format!("response is not valid JSON: {e}")
        })
    })?;

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
                "response holds {:?}, not the requested {wanted_series:?}",
                other.0
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
    let series: Members<'_> = serde_json::from_str(series.get())
        .map_err(|e| Failure::Fatal(format!("{wanted_series:?} is not a JSON object: {e}")))?;

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
            let reason = format!("{key:?} appears more than once in the series");
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
    let meta: Members<'_> = serde_json::from_str(raw.get())
        .map_err(|e| Failure::Fatal(format!("\"Meta Data\" is not a JSON object: {e}")))?;
    let field = |name: &str| -> Result<String, Failure> {
        meta.get(name)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .ok_or_else(|| Failure::Fatal(format!("\"Meta Data\" has no text {name:?}")))
    };

    let symbol = field("2. Symbol")?;
    if !symbol.trim().eq_ignore_ascii_case(&expect.symbol) {
        return Err(Failure::Fatal(format!(
            "response is for symbol {symbol:?}, not the requested {:?}",
            expect.symbol
        )));
    }
    let Some(interval) = av_interval(expect.interval) else {
        return Ok(None);
    };
    let got = field("4. Interval")?;
    if got != interval {
        return Err(Failure::Fatal(format!(
            "\"4. Interval\" is {got:?}, not the requested {interval:?}"
        )));
    }
    let zone = field("6. Time Zone")?;
    zone.parse::<Tz>().map(Some).map_err(|_| {
        Failure::Fatal(format!(
            "\"6. Time Zone\" {zone:?} is not an IANA time zone"
        ))
    })
}

/// Open time of the entry keyed `key`, seconds since epoch UTC. Daily bars open at 00:00 UTC
/// of the trading date; intraday keys are the open time in the exchange's zone.
fn timestamp(key: &str, zone: Option<Tz>) -> Result<i64, String> {
    let Some(zone) = zone else {
        let date = NaiveDate::parse_from_str(key, "%Y-%m-%d")
            .map_err(|e| format!("{key:?} is not a date YYYY-MM-DD: {e}"))?;
        return date
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .ok_or_else(|| format!("{key:?} has no midnight"));
    };
    let local = NaiveDateTime::parse_from_str(key, "%Y-%m-%d %H:%M:%S")
        .map_err(|e| format!("{key:?} is not a time YYYY-MM-DD HH:MM:SS: {e}"))?;
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

/// The text of a JSON string, or the raw JSON of anything else.
fn text_of(raw: &RawValue) -> String {
    serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_owned())
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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    const EASTERN: Tz = chrono_tz::US::Eastern;

    fn expect(interval: Interval) -> Expect {
        Expect {
            symbol: "IBM".to_owned(),
            interval,
            start: i64::MIN,
            end: i64::MAX,
        }
    }

    fn bars(records: &[SourceRecord]) -> Vec<Bar> {
        records
            .iter()
            .filter_map(|r| match r {
                SourceRecord::Row(Row { bar: b, .. }) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    /// The response Alpha Vantage would send for `bars`, newest first as it does.
    fn render(bars: &[Bar], interval: Interval) -> String {
        let (series, meta) = match av_interval(interval) {
            Some(name) => (
                format!("Time Series ({name})"),
                format!(
                    r#"{{"1. Information": "Intraday ({name}) open, high, low, close prices and volume", "2. Symbol": "IBM", "3. Last Refreshed": "2024-03-11 19:55:00", "4. Interval": "{name}", "5. Output Size": "Full size", "6. Time Zone": "US/Eastern"}}"#
                ),
            ),
            None => (
                "Time Series (Daily)".to_owned(),
                r#"{"1. Information": "Daily Prices (open, high, low, close) and Volumes", "2. Symbol": "IBM", "3. Last Refreshed": "2024-03-28", "4. Output Size": "Full size", "5. Time Zone": "US/Eastern"}"#.to_owned(),
            ),
        };
        let entries: Vec<String> = bars
            .iter()
            .rev()
            .map(|b| {
                let utc = chrono::DateTime::from_timestamp(b.ts, 0).unwrap();
                let key = if interval.is_intraday() {
                    utc.with_timezone(&EASTERN)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                } else {
                    utc.format("%Y-%m-%d").to_string()
                };
                format!(
                    r#""{key}": {{"1. open": "{:.4}", "2. high": "{:.4}", "3. low": "{:.4}", "4. close": "{:.4}", "5. volume": "{}"}}"#,
                    b.open, b.high, b.low, b.close, b.volume
                )
            })
            .collect();
        format!(
            r#"{{"Meta Data": {meta}, "{series}": {{{}}}}}"#,
            entries.join(",\n")
        )
    }

    #[test]
    fn daily_bars_open_at_midnight_utc() {
        let bar = Bar {
            symbol: "IBM".into(),
            interval: Interval::D1,
            ts: 1_709_856_000, // 2024-03-08T00:00:00Z
            open: 195.0,
            high: 196.5,
            low: 194.25,
            close: 196.0,
            volume: 4_000_000.0,
        };
        let body = render(std::slice::from_ref(&bar), Interval::D1);
        assert!(body.contains("\"2024-03-08\""), "{body}");
        let records = parse_body(body.as_bytes(), &expect(Interval::D1)).unwrap();
        assert_eq!(
            records
                .iter()
                .filter_map(SourceRecord::bar)
                .cloned()
                .collect::<Vec<_>>(),
            vec![bar]
        );
    }

    #[test]
    fn times_the_clock_skips_or_repeats_are_unreadable() {
        let body = r#"{"Meta Data": {"2. Symbol": "IBM", "4. Interval": "5min", "6. Time Zone": "US/Eastern"},
            "Time Series (5min)": {
              "2024-03-10 02:30:00": {"1. open": "1", "2. high": "1", "3. low": "1", "4. close": "1", "5. volume": "1"},
              "2024-11-03 01:30:00": {"1. open": "1", "2. high": "1", "3. low": "1", "4. close": "1", "5. volume": "1"},
              "2024-11-03 02:30:00": {"1. open": "1", "2. high": "1", "3. low": "1", "4. close": "1", "5. volume": "1"}}}"#;
        let records = parse_body(body.as_bytes(), &expect(Interval::M5)).unwrap();
        assert_eq!(records.len(), 3);
        // 02:30 EST on 3 November is 07:30 UTC; it sorts before the unreadable entries.
        assert!(
            matches!(&records[0], SourceRecord::Row(Row { bar: b, .. }) if b.ts == 1_730_619_000)
        );
        let reasons: Vec<_> = records[1..]
            .iter()
            .map(|r| match r {
                SourceRecord::Unreadable(u) => (u.index, u.rejection.reason.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                (
                    0,
                    "\"2024-03-10 02:30:00\" does not exist in US/Eastern: the clock skips it \
                     when daylight saving time begins"
                        .to_owned()
                ),
                (
                    1,
                    "\"2024-11-03 01:30:00\" is ambiguous in US/Eastern: it happens twice when \
                     daylight saving time ends (2024-11-03T05:30:00Z and 2024-11-03T06:30:00Z)"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_duplicate_timestamp_is_unreadable_after_the_first() {
        let body = r#"{"Meta Data": {"2. Symbol": "IBM"}, "Time Series (Daily)": {
            "2024-03-08": {"1. open": "1", "2. high": "2", "3. low": "1", "4. close": "2", "5. volume": "10"},
            "2024-03-08": {"1. open": "1", "2. high": "3", "3. low": "1", "4. close": "2", "5. volume": "10"}}}"#;
        let records = parse_body(body.as_bytes(), &expect(Interval::D1)).unwrap();
        assert!(matches!(&records[0], SourceRecord::Row(Row { bar: b, .. }) if b.high == 2.0));
        match &records[1] {
            SourceRecord::Unreadable(u) => {
                assert_eq!(
                    u.rejection.reason,
                    "\"2024-03-08\" appears more than once in the series"
                );
                assert_eq!(
                    String::from_utf8(u.payload.clone()).unwrap(),
                    r#"{"2024-03-08":{"1. open": "1", "2. high": "3", "3. low": "1", "4. close": "2", "5. volume": "10"}}"#
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn notices_are_told_apart() {
        let cases = [
            (
                "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to target a higher API call frequency.",
                Some(false),
            ),
            (
                "We have detected your API key as DEMO and our standard API rate limit is 25 requests per day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily rate limits.",
                Some(true),
            ),
            (
                "Burst pattern detected. Our standard API rate limit is 25 requests per day. Please consider spreading out your free API requests more sparingly (1 request per second).",
                Some(false),
            ),
            (
                "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints",
                None,
            ),
            ("The **demo** API key is for demo purposes only.", None),
        ];
        for (text, daily) in cases {
            match (classify_notice("Information", text), daily) {
                (Failure::RateLimited { daily: got, .. }, Some(want)) => {
                    assert_eq!(got, want, "{text}")
                }
                (Failure::Fatal(_), None) => {}
                (other, _) => panic!("{text}: {other:?}"),
            }
        }
    }

    prop_compose! {
        fn arb_bar(intraday: bool)(
            // 2000-01-03 .. ~2030, in days; a time of day within the extended session.
            day in 10_959i64..22_000,
            minute in (4 * 60)..(20 * 60i64),
            low_ticks in 1u64..5_000_000,
            spread in proptest::array::uniform3(0u64..100_000),
            volume in 0u64..10_000_000_000,
        ) -> Bar {
            let ts = if intraday {
                let local = chrono::DateTime::from_timestamp(day * 86_400, 0).unwrap().date_naive()
                    .and_hms_opt(0, 0, 0).unwrap() + chrono::Duration::minutes(minute - minute % 5);
                EASTERN.from_local_datetime(&local).single().unwrap().timestamp()
            } else {
                day * 86_400
            };
            let low = low_ticks as f64 / 10_000.0;
            let open = (low_ticks + spread[0]) as f64 / 10_000.0;
            let close = (low_ticks + spread[1]) as f64 / 10_000.0;
            let high = (low_ticks + spread[0].max(spread[1]) + spread[2]) as f64 / 10_000.0;
            Bar {
                symbol: "IBM".into(),
                interval: if intraday { Interval::M5 } else { Interval::D1 },
                ts, open, high, low, close, volume: volume as f64,
            }
        }
    }

    fn arb_series() -> impl Strategy<Value = Vec<Bar>> {
        any::<bool>()
            .prop_flat_map(|intraday| proptest::collection::vec(arb_bar(intraday), 0..40))
            .prop_map(|mut bars| {
                bars.sort_by_key(|b| b.ts);
                bars.dedup_by_key(|b| b.ts);
                bars
            })
    }

    /// Text that is nearly a response: the real skeleton with arbitrary pieces.
    fn arb_near_response() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\"1\"".to_owned()),
            Just("\"abc\"".to_owned()),
            Just("null".to_owned()),
            Just("{}".to_owned()),
            Just("[]".to_owned()),
            Just("-1e999".to_owned()),
            "\"[0-9 :.-]{0,20}\"",
        ];
        (
            "[0-9 :-]{0,22}",
            "(IBM|ibm|MSFT|)",
            "(5min|Daily|1min)",
            "(US/Eastern|UTC|Mars/Base|)",
            proptest::collection::vec(piece, 5),
        )
            .prop_map(|(key, symbol, interval, zone, pieces)| {
                format!(
                    r#"{{"Meta Data": {{"2. Symbol": "{symbol}", "4. Interval": "{interval}", "6. Time Zone": "{zone}"}}, "Time Series ({interval})": {{"{key}": {{"1. open": {}, "2. high": {}, "3. low": {}, "4. close": {}, "5. volume": {}}}}}}}"#,
                    pieces[0], pieces[1], pieces[2], pieces[3], pieces[4]
                )
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            for interval in [Interval::D1, Interval::M5] {
                let _ = parse_body(&body, &expect(interval));
            }
        }

        #[test]
        fn near_responses_never_panic(body in arb_near_response()) {
            for interval in [Interval::D1, Interval::M5, Interval::M1] {
                let _ = parse_body(body.as_bytes(), &expect(interval));
            }
        }

        #[test]
        fn generated_series_round_trip(bars in arb_series()) {
            let interval = bars.first().map_or(Interval::D1, |b| b.interval);
            let body = render(&bars, interval);
            let records = parse_body(body.as_bytes(), &expect(interval)).unwrap();
            prop_assert_eq!(records.len(), bars.len());
            prop_assert_eq!(super::tests::bars(&records), bars);
        }

        #[test]
        fn only_the_range_is_kept(bars in arb_series(), cut in 0usize..40, len in 0usize..40) {
            let interval = bars.first().map_or(Interval::D1, |b| b.interval);
            let body = render(&bars, interval);
            let start = bars.get(cut).map_or(i64::MAX, |b| b.ts);
            let end = bars.get(cut + len).map_or(i64::MAX, |b| b.ts);
            let range = Expect { start, end, ..expect(interval) };
            let kept = super::tests::bars(&parse_body(body.as_bytes(), &range).unwrap());
            let want: Vec<Bar> = bars.iter().filter(|b| b.ts >= start && b.ts < end).cloned().collect();
            prop_assert_eq!(kept, want);
        }
    }
}
