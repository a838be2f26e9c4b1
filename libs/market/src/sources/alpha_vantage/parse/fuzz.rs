//! A fuzz harness for the Alpha Vantage JSON reader that runs on stable as an ordinary test:
//! the recorded responses (`libs/testkit/fixtures/alpha_vantage`) are the seed corpus,
//! mutated deterministically (bit flips, truncation, hostile JSON values, duplicated and
//! deleted runs, deep nesting, giant strings) for a fixed time budget. The reader may never
//! panic; every bar it returns is for the requested symbol, within the requested range, in
//! ascending time order, and either passes the market validator or is refused by it naming a
//! field; every refusal and every failure message is bounded whatever the input's size.
//! Reproducible: the generator is seeded and a failure prints the seed and round.
//!
//! `STOCKCAST_FUZZ_SECS=600 cargo nextest run -p stockcast-market parse::fuzz` runs it longer
//! (docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use stockcast_proto::stockcast::types::v1::RejectReason;
use stockcast_testkit::fuzz::{self, Rng, budget};

use super::{Expect, Failure, parse_body};
use crate::sources::SourceRecord;
use crate::{Interval, ValidationSettings, Validator};

const SEED: u64 = 0x5eed_a1fa_0a47;

/// Longest message the reader may build, in bytes, whatever the input.
const MAX_MESSAGE: usize = 1_024;

const INTERESTING: &[&str] = &[
    "\"NaN\"",
    "\"nan\"",
    "\"Infinity\"",
    "\"-inf\"",
    "\"-1\"",
    "\"-0\"",
    "\"0\"",
    "\"\"",
    "\" \"",
    "\"1e999\"",
    "1e999",
    "-1e999",
    "\"179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000.0\"",
    "123456789012345678901234567890",
    "null",
    "true",
    "{}",
    "[]",
    "[1,2]",
    "{\"1. open\": \"1\"}",
    "\"1. open\": \"999\",",
    "\"2024-03-08\": {\"1. open\": \"1\", \"2. high\": \"2\", \"3. low\": \"1\", \"4. close\": \"2\", \"5. volume\": \"1\"},",
    "\"Time Series (Daily)\": {},",
    "\"Meta Data\": {\"2. Symbol\": \"MSFT\"},",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"🦀\"",
    "\"9999-12-31\"",
    "\"0000-01-01\"",
    "\"+275760-09-13\"",
    ",",
    ":",
    "\"",
    "{",
    "}",
];

/// A generic mutation of `input`, then maybe a JSON value replaced by a hostile one and a
/// giant string inserted.
fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let interesting: Vec<&[u8]> = INTERESTING.iter().map(|s| s.as_bytes()).collect();
    let mut out = fuzz::mutate(rng, input, corpus, &interesting, b"[{\"0 9-:");
    if rng.below(2) == 0 {
        // Replace the JSON value that ends after a random point.
        let at = rng.below(out.len() + 1);
        let end = out[at..]
            .iter()
            .position(|b| *b == b',' || *b == b'}')
            .map_or(at, |i| at + i);
        let start = out[..end]
            .iter()
            .rposition(|b| *b == b':')
            .map_or(end, |i| i + 1)
            .max(at.min(end));
        let text = INTERESTING[rng.below(INTERESTING.len())];
        out.splice(start..end, text.bytes());
    }
    if rng.below(8) == 0 {
        let at = rng.below(out.len() + 1);
        let giant = format!("\"{}\"", "x".repeat(rng.below(200_000)));
        out.splice(at..at, giant.bytes());
    }
    out
}

fn expects() -> [Expect; 2] {
    [
        Expect {
            symbol: "IBM".to_owned(),
            interval: Interval::D1,
            start: i64::MIN,
            end: i64::MAX,
        },
        Expect {
            symbol: "IBM".to_owned(),
            interval: Interval::M5,
            start: 1_700_000_000,
            end: 1_720_000_000,
        },
    ]
}

/// Parses `body` as each expected response and checks every record; the number of bars that
/// passed the validator.
fn run_one(body: &[u8], validator: &Validator) -> usize {
    let mut valid = 0;
    for expect in expects() {
        let records = match parse_body(body, &expect) {
            Ok(records) => records,
            Err(Failure::Fatal(message) | Failure::RateLimited { message, .. }) => {
                assert!(
                    message.len() <= MAX_MESSAGE,
                    "{} bytes: {}…",
                    message.len(),
                    &message[..200]
                );
                continue;
            }
        };
        let mut last = i64::MIN;
        for record in records {
            match record {
                SourceRecord::Row(row) => {
                    let bar = &row.bar;
                    assert_eq!(
                        (bar.symbol.as_str(), bar.interval),
                        ("IBM", expect.interval)
                    );
                    assert!(
                        expect.start <= bar.ts && bar.ts < expect.end,
                        "ts {}",
                        bar.ts
                    );
                    assert!(bar.ts > last, "bars not ascending and unique at {}", bar.ts);
                    last = bar.ts;
                    match validator.check(bar, i64::MAX / 2) {
                        Ok(()) => valid += 1,
                        Err(rejection) => {
                            assert!(!rejection.field.is_empty(), "{rejection:?}");
                            assert!(rejection.reason.len() <= MAX_MESSAGE);
                        }
                    }
                }
                SourceRecord::Unreadable(u) => {
                    assert!(!u.rejection.reason.is_empty());
                    assert!(
                        u.rejection.reason.len() <= MAX_MESSAGE,
                        "reason {} bytes: {}…",
                        u.rejection.reason.len(),
                        &u.rejection.reason[..200]
                    );
                    assert!(u.index >= 0);
                }
                SourceRecord::Bar(bar) => panic!("the reader made a bar itself: {bar:?}"),
            }
        }
    }
    valid
}

fn corpus() -> Vec<Vec<u8>> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/alpha_vantage");
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    corpus.sort();
    assert!(corpus.len() >= 10, "seed corpus in {}", dir.display());
    corpus
}

#[test]
fn the_reader_survives_mutations_of_every_recorded_response() {
    let validator = Validator::new(&ValidationSettings::default()).unwrap();
    let corpus = corpus();
    let seeded: usize = corpus.iter().map(|c| run_one(c, &validator)).sum();
    assert!(seeded > 100, "the recorded responses hold valid bars");
    let mut rng = Rng(SEED);
    let (started, budget) = (Instant::now(), budget());
    let mut rounds = 0u64;
    while started.elapsed() < budget {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &corpus);
        let result = std::panic::catch_unwind(|| run_one(&input, &validator));
        assert!(
            result.is_ok(),
            "seed {SEED:#x}, round {rounds}: the reader panicked on {:?}",
            String::from_utf8_lossy(&input[..input.len().min(2_000)])
        );
        rounds += 1;
    }
    assert!(rounds > 0);
}

/// A daily response with one entry whose `"1. open"` is `open` (raw JSON).
fn with_open(open: &str) -> String {
    format!(
        r#"{{"Meta Data": {{"2. Symbol": "IBM"}}, "Time Series (Daily)": {{"2024-03-08": {{"1. open": {open}, "2. high": "200", "3. low": "100", "4. close": "150", "5. volume": "10"}}}}}}"#
    )
}

#[test]
fn a_hostile_price_is_never_a_valid_bar() {
    let validator = Validator::new(&ValidationSettings::default()).unwrap();
    let [daily, _] = expects();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let giant = format!("\"{}\"", "9".repeat(1_000_000));
    for open in [
        "\"NaN\"",
        "\"nan\"",
        "\"Infinity\"",
        "\"inf\"",
        "\"-inf\"",
        "\"-1\"",
        "\"0\"",
        "\"-0\"",
        "\"\"",
        "\"  \"",
        "\"1e999\"",
        "1e999",
        "-5",
        "0",
        "null",
        "true",
        "{}",
        "[]",
        "[\"150\"]",
        "{\"v\": \"150\"}",
        "\"150 USD\"",
        "\"0x96\"",
        "\"1_50\"",
        &deep,
        &giant,
    ] {
        let body = with_open(open);
        let records = parse_body(body.as_bytes(), &daily).unwrap();
        let [record] = records.as_slice() else {
            panic!("{open}: {records:?}")
        };
        let (field, reason) = match record {
            SourceRecord::Row(row) => {
                let rejection = validator.check(&row.bar, i64::MAX / 2).unwrap_err();
                (rejection.field, rejection.reason)
            }
            SourceRecord::Unreadable(u) => {
                assert_eq!(u.payload_type, "application/json");
                assert!(String::from_utf8_lossy(&u.payload).starts_with("{\"2024-03-08\":"));
                (u.rejection.field, u.rejection.reason.clone())
            }
            SourceRecord::Bar(bar) => panic!("{bar:?}"),
        };
        assert_eq!(field, "open", "{}: {reason}", &open[..open.len().min(40)]);
        assert!(reason.len() <= MAX_MESSAGE, "{} bytes", reason.len());
    }
}

#[test]
fn a_duplicated_price_field_is_refused_naming_it() {
    let [daily, _] = expects();
    let body = r#"{"Meta Data": {"2. Symbol": "IBM"}, "Time Series (Daily)": {"2024-03-08": {"1. open": "150", "2. high": "200", "3. low": "100", "4. close": "150", "4. close": "9999", "5. volume": "10"}}}"#;
    let records = parse_body(body.as_bytes(), &daily).unwrap();
    match records.as_slice() {
        [SourceRecord::Unreadable(u)] => {
            assert_eq!(
                (
                    u.rejection.code,
                    u.rejection.field,
                    u.rejection.reason.as_str()
                ),
                (
                    RejectReason::Malformed,
                    "close",
                    "\"4. close\" appears more than once in the entry"
                )
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_duplicated_series_or_meta_data_is_refused() {
    let [daily, _] = expects();
    let entry = r#"{"2024-03-08": {"1. open": "150", "2. high": "200", "3. low": "100", "4. close": "150", "5. volume": "10"}}"#;
    for (body, key) in [
        (
            format!(
                r#"{{"Meta Data": {{"2. Symbol": "IBM"}}, "Time Series (Daily)": {entry}, "Time Series (Daily)": {{}}}}"#
            ),
            "Time Series (Daily)",
        ),
        (
            format!(
                r#"{{"Meta Data": {{"2. Symbol": "IBM"}}, "Meta Data": {{"2. Symbol": "MSFT"}}, "Time Series (Daily)": {entry}}}"#
            ),
            "Meta Data",
        ),
        (
            format!(
                r#"{{"Meta Data": {{"2. Symbol": "IBM", "2. Symbol": "MSFT"}}, "Time Series (Daily)": {entry}}}"#
            ),
            "2. Symbol",
        ),
    ] {
        match parse_body(body.as_bytes(), &daily) {
            Err(Failure::Fatal(message)) => assert_eq!(
                message,
                format!("{key:?} appears more than once in the response")
            ),
            other => panic!("{key}: {other:?}"),
        }
    }
}

#[test]
fn giant_keys_and_texts_are_cut_in_messages() {
    let [daily, intraday] = expects();
    let giant = "x".repeat(1_000_000);
    let bodies = [
        format!(
            r#"{{"Meta Data": {{"2. Symbol": "IBM"}}, "Time Series (Daily)": {{"{giant}": {{}}}}}}"#
        ),
        format!(r#"{{"Meta Data": {{"2. Symbol": "{giant}"}}, "Time Series (Daily)": {{}}}}"#),
        format!(
            r#"{{"Meta Data": {{"2. Symbol": "IBM", "4. Interval": "{giant}"}}, "Time Series (5min)": {{}}}}"#
        ),
        format!(
            r#"{{"Meta Data": {{"2. Symbol": "IBM", "4. Interval": "5min", "6. Time Zone": "{giant}"}}, "Time Series (5min)": {{}}}}"#
        ),
        format!(r#"{{"Error Message": "{giant}"}}"#),
        format!(r#"{{"Information": "{giant}"}}"#),
        format!(r#"{{"Time Series {giant}": {{}}}}"#),
        format!(
            r#"{{"Meta Data": {{"2. Symbol": "IBM"}}, "Time Series (Daily)": {{"2024-03-08": {{"1. open": "1", "2. high": "1", "3. low": "1", "4. close": "1", "5. volume": "1", "{giant}": 1}}, "2024-03-08": "{giant}"}}}}"#
        ),
    ];
    for body in &bodies {
        for expect in [&daily, &intraday] {
            let messages: Vec<String> = match parse_body(body.as_bytes(), expect) {
                Ok(records) => records
                    .into_iter()
                    .filter_map(|r| match r {
                        SourceRecord::Unreadable(u) => Some(u.rejection.reason),
                        SourceRecord::Row(_) | SourceRecord::Bar(_) => None,
                    })
                    .collect(),
                Err(Failure::Fatal(m) | Failure::RateLimited { message: m, .. }) => vec![m],
            };
            for message in messages {
                assert!(message.len() <= MAX_MESSAGE, "{}…", &message[..300]);
            }
        }
    }
}
