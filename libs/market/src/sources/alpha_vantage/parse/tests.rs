//! Unit and property tests of the reader.

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
    assert!(matches!(&records[0], SourceRecord::Row(Row { bar: b, .. }) if b.ts == 1_730_619_000));
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
