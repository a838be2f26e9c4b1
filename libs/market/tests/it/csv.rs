//! The CSV source against fixture files: the export formats it reads, unreadable rows with
//! their line numbers across chunks, and the fatal errors.

use std::path::{Path, PathBuf};

use stockcast_market::sources::csv::{CsvParams, CsvSource};
use stockcast_market::sources::{
    BackfillSpec, ChunkPosition, Row, Source, SourceError, SourceParams, SourceRecord,
};
use stockcast_market::{Bar, Interval, ValidationSettings, Validator};
use stockcast_proto::stockcast::types::v1::RejectReason;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/csv")
        .join(name)
}

fn ts(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp()
}

fn spec(params: CsvParams, symbols: &[&str], interval: Interval) -> BackfillSpec {
    BackfillSpec {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        interval,
        start: 0,
        end: ts("2100-01-01T00:00:00Z"),
        params: SourceParams::Csv(params),
    }
}

fn params(name: &str) -> CsvParams {
    CsvParams {
        path: fixture(name),
        ..CsvParams::default()
    }
}

/// Plans and fetches every chunk, in plan order.
async fn load(spec: &BackfillSpec) -> Result<Vec<SourceRecord>, SourceError> {
    let source = CsvSource::new();
    let mut records = Vec::new();
    for chunk in source.plan(spec).await? {
        records.extend(source.fetch(spec, &chunk).await?);
    }
    Ok(records)
}

fn bars(records: &[SourceRecord]) -> Vec<Bar> {
    records
        .iter()
        .map(|r| match r {
            SourceRecord::Row(Row { bar, .. }) => bar.clone(),
            other => panic!("expected a row read from the file: {other:?}"),
        })
        .collect()
}

/// Loads a fixture that must be entirely good; every bar must pass validation.
async fn good(spec: &BackfillSpec) -> Vec<Bar> {
    let bars = bars(&load(spec).await.unwrap());
    let validator = Validator::new(&ValidationSettings::default()).unwrap();
    let now = chrono::Utc::now().timestamp();
    for bar in &bars {
        validator
            .check(bar, now)
            .unwrap_or_else(|r| panic!("{bar:?}: {r}"));
    }
    bars
}

fn summary(bars: &[Bar]) -> Vec<(String, i64, f64, f64)> {
    bars.iter()
        .map(|b| (b.symbol.clone(), b.ts, b.close, b.volume))
        .collect()
}

#[tokio::test]
async fn yahoo_export() {
    let bars = good(&spec(params("yahoo.csv"), &["AAPL"], Interval::D1)).await;
    assert_eq!(bars.len(), 5);
    // Close, not Adj Close.
    assert_eq!(
        bars[0],
        Bar {
            symbol: "AAPL".into(),
            interval: Interval::D1,
            ts: ts("2024-01-02T00:00:00Z"),
            open: 187.149994,
            high: 188.440002,
            low: 183.889999,
            close: 185.639999,
            volume: 82_488_700.0,
        }
    );
    assert_eq!(bars[4].ts, ts("2024-01-08T00:00:00Z"));
}

#[tokio::test]
async fn pandas_with_index_any_order_and_case() {
    let params = CsvParams {
        symbol: Some("SPY".into()),
        ..params("pandas_index.csv")
    };
    let bars = good(&spec(params, &[], Interval::D1)).await;
    assert_eq!(
        summary(&bars),
        [
            (
                "SPY".into(),
                ts("2024-01-02T00:00:00Z"),
                470.5,
                123_623_700.0
            ),
            (
                "SPY".into(),
                ts("2024-01-03T00:00:00Z"),
                468.79,
                103_585_900.0
            ),
            (
                "SPY".into(),
                ts("2024-01-04T00:00:00Z"),
                467.28,
                84_232_200.0
            ),
        ]
    );
    assert_eq!(
        (bars[0].open, bars[0].high, bars[0].low),
        (472.16, 473.67, 470.49)
    );
}

/// `DataFrame.to_csv()` of a frame indexed by date writes the index first with an empty name:
/// `,Open,High,Low,Close,Volume`. Both fixtures were written by pandas 3.1 itself.
#[tokio::test]
async fn pandas_date_index_with_an_empty_header_cell() {
    let daily = CsvParams {
        symbol: Some("SPY".into()),
        ..params("pandas_date_index.csv")
    };
    let bars = good(&spec(daily, &[], Interval::D1)).await;
    assert_eq!(
        summary(&bars)
            .iter()
            .map(|(_, ts, close, _)| (*ts, *close))
            .collect::<Vec<_>>(),
        [
            (ts("2024-01-02T00:00:00Z"), 470.5),
            (ts("2024-01-03T00:00:00Z"), 468.79),
            (ts("2024-01-04T00:00:00Z"), 467.28),
            (ts("2024-01-05T00:00:00Z"), 467.92),
        ]
    );

    // A time-zone-aware minute index: pandas writes the offset.
    let minutes = CsvParams {
        symbol: Some("AAPL".into()),
        ..params("pandas_datetime_index.csv")
    };
    let bars = good(&spec(minutes, &[], Interval::M1)).await;
    assert_eq!(
        bars.iter().map(|b| b.ts).collect::<Vec<_>>(),
        [
            ts("2024-01-02T14:30:00Z"),
            ts("2024-01-02T14:31:00Z"),
            ts("2024-01-02T14:32:00Z"),
        ]
    );
}

#[tokio::test]
async fn symbol_column_with_and_without_a_filter() {
    let all = good(&spec(params("symbols.csv"), &[], Interval::D1)).await;
    let symbols: Vec<_> = all.iter().map(|b| b.symbol.as_str()).collect();
    assert_eq!(symbols, ["AAPL", "MSFT", "AAPL", "MSFT", "GOOG"]);

    let filtered = good(&spec(
        params("symbols.csv"),
        &["MSFT", "GOOG"],
        Interval::D1,
    ))
    .await;
    let symbols: Vec<_> = filtered.iter().map(|b| b.symbol.as_str()).collect();
    assert_eq!(symbols, ["MSFT", "MSFT", "GOOG"]);
    assert_eq!(filtered[1].close, 370.6);

    let one = CsvParams {
        symbol: Some("AAPL".into()),
        ..params("symbols.csv")
    };
    assert_eq!(good(&spec(one, &[], Interval::D1)).await.len(), 2);
}

#[tokio::test]
async fn datetimes_with_offsets() {
    let bars = good(&spec(params("offsets.csv"), &["X"], Interval::M5)).await;
    let times: Vec<_> = bars.iter().map(|b| b.ts).collect();
    assert_eq!(
        times,
        [
            ts("2024-01-02T14:30:00Z"),
            ts("2024-01-02T14:35:00Z"),
            ts("2024-01-02T14:40:00Z"),
            ts("2024-01-02T14:45:00Z"),
            ts("2024-01-02T20:50:00Z"),
        ]
    );
    assert_eq!(bars[0].volume, 1200.5);
}

#[tokio::test]
async fn daily_bars_at_local_midnight_keep_their_date() {
    let bars = good(&spec(
        params("yfinance_history.csv"),
        &["AAPL"],
        Interval::D1,
    ))
    .await;
    let times: Vec<_> = bars.iter().map(|b| b.ts).collect();
    assert_eq!(
        times,
        [ts("2024-01-02T00:00:00Z"), ts("2024-01-03T00:00:00Z")]
    );
}

#[tokio::test]
async fn time_zone_conversion_follows_dst() {
    let params = CsvParams {
        time_zone: Some("America/New_York".into()),
        ..params("new_york_dst.csv")
    };
    let records = load(&spec(params, &["X"], Interval::M5)).await.unwrap();
    let (good, bad): (Vec<_>, Vec<_>) = records
        .iter()
        .partition(|r| matches!(r, SourceRecord::Row(_)));
    let times: Vec<_> = good
        .iter()
        .map(|r| match r {
            SourceRecord::Row(Row { bar: b, .. }) => b.ts,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        times,
        [
            ts("2024-03-08T14:30:00Z"),
            ts("2024-03-11T13:30:00Z"),
            ts("2024-10-31T19:55:00Z"),
            ts("2024-11-04T20:55:00Z"),
        ]
    );
    let bad: Vec<_> = bad
        .iter()
        .map(|r| match r {
            SourceRecord::Unreadable(u) => (u.index, u.rejection.reason.clone()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0].0, 6);
    assert!(
        bad[0].1.contains("occurs twice in America/New_York"),
        "{}",
        bad[0].1
    );
    assert_eq!(bad[1].0, 7);
    assert!(
        bad[1].1.contains("does not exist in America/New_York"),
        "{}",
        bad[1].1
    );
}

#[tokio::test]
async fn separate_date_and_time_columns() {
    let params = CsvParams {
        time_zone: Some("America/New_York".into()),
        ..params("date_time_columns.csv")
    };
    let bars = good(&spec(params, &["X"], Interval::M1)).await;
    let times: Vec<_> = bars.iter().map(|b| b.ts).collect();
    assert_eq!(
        times,
        [ts("2024-07-01T13:30:00Z"), ts("2024-07-01T13:31:00Z")]
    );
}

#[tokio::test]
async fn quotes_crlf_bom_blank_lines_and_trailing_commas() {
    let bars = good(&spec(params("quoted_crlf_bom.csv"), &["X"], Interval::D1)).await;
    let rows: Vec<_> = bars
        .iter()
        .map(|b| (b.ts, b.open, b.high, b.low, b.close, b.volume))
        .collect();
    assert_eq!(
        rows,
        [
            (
                ts("2024-01-02T00:00:00Z"),
                1234.5,
                1240.0,
                1230.25,
                1238.0,
                1000.0
            ),
            (
                ts("2024-01-03T00:00:00Z"),
                1238.0,
                1245.0,
                1236.0,
                1244.0,
                2000.0
            ),
            (
                ts("2024-01-04T00:00:00Z"),
                1244.0,
                1250.0,
                1240.0,
                1249.0,
                3000.0
            ),
            (
                ts("2024-01-05T00:00:00Z"),
                1249.0,
                1251.0,
                1248.0,
                1250.0,
                1000.0
            ),
        ]
    );
}

#[tokio::test]
async fn the_range_is_start_inclusive_end_exclusive() {
    let mut spec = spec(params("yahoo.csv"), &["AAPL"], Interval::D1);
    spec.start = ts("2024-01-03T00:00:00Z");
    spec.end = ts("2024-01-05T00:00:00Z");
    let bars = good(&spec).await;
    let times: Vec<_> = bars.iter().map(|b| b.ts).collect();
    assert_eq!(
        times,
        [ts("2024-01-03T00:00:00Z"), ts("2024-01-04T00:00:00Z")]
    );
}

/// (line, field, reason) of each unreadable row, and the line-independent bars.
fn outcome(records: &[SourceRecord]) -> (Vec<(i64, &'static str, String)>, Vec<Bar>) {
    let mut bad = Vec::new();
    let mut bars = Vec::new();
    for record in records {
        match record {
            SourceRecord::Row(Row { bar, .. }) => bars.push(bar.clone()),
            SourceRecord::Bar(bar) => panic!("a CSV row without its line: {bar:?}"),
            SourceRecord::Unreadable(u) => {
                assert_eq!(u.payload_type, "text/csv");
                bad.push((u.index, u.rejection.field, u.rejection.reason.clone()));
            }
        }
    }
    (bad, bars)
}

#[tokio::test]
async fn bad_rows_are_unreadable_with_their_line_numbers_in_every_chunking() {
    let text = std::fs::read_to_string(fixture("bad_rows.csv")).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    let expected_fields = [
        (3, "open"),
        (4, "high"),
        (5, "volume"),
        (6, "ts"),
        (7, "low"),
        (9, "symbol"),
        (10, "close"),
        (11, ""),
        (12, "ts"),
        (16, "volume"),
        (17, "high"),
    ];
    let mut reference = None;
    for chunk_bytes in [1, 7, 40, 64, 100, 1_000_000] {
        let params = CsvParams {
            chunk_bytes: Some(chunk_bytes),
            ..params("bad_rows.csv")
        };
        let spec = spec(params, &[], Interval::D1);
        let chunks = CsvSource::new().plan(&spec).await.unwrap();
        if chunk_bytes <= 40 {
            assert!(chunks.len() >= 8, "{chunk_bytes}: {} chunks", chunks.len());
        }
        let records = load(&spec).await.unwrap();
        for record in &records {
            if let SourceRecord::Unreadable(u) = record {
                // The payload is the line as written.
                assert_eq!(u.payload, lines[u.index as usize - 1].as_bytes());
            }
        }
        let (bad, bars) = outcome(&records);
        let fields: Vec<_> = bad.iter().map(|(line, field, _)| (*line, *field)).collect();
        assert_eq!(fields, expected_fields, "chunk size {chunk_bytes}");
        let days: Vec<_> = bars.iter().map(|b| b.ts).collect();
        assert_eq!(
            days,
            [
                ts("2024-01-02T00:00:00Z"),
                ts("2024-01-15T00:00:00Z"),
                ts("2024-01-16T00:00:00Z"),
                ts("2024-01-19T00:00:00Z"),
            ]
        );
        match &reference {
            None => reference = Some(records),
            Some(reference) => assert_eq!(&records, reference, "chunk size {chunk_bytes}"),
        }
    }
    let (bad, _) = outcome(&reference.unwrap());
    let reason = |line: i64| bad.iter().find(|b| b.0 == line).unwrap().2.clone();
    assert_eq!(reason(3), r#"column "Open" is "abc", not a number"#);
    assert_eq!(reason(4), r#"column "High" is "1O.5", not a number"#);
    assert_eq!(reason(5), r#"column "Volume" is empty"#);
    assert!(reason(6).starts_with(r#"column "Date" is "2024-13-01", not a date"#));
    assert_eq!(
        reason(7),
        r#"column "Low" is missing (the row has 4 fields)"#
    );
    assert_eq!(reason(9), r#"column "Symbol" is empty"#);
    assert_eq!(reason(10), r#"column "Close" is "null", not a number"#);
    assert!(reason(11).contains("quote"));
}

#[tokio::test]
async fn rejection_codes() {
    let records = load(&spec(params("bad_rows.csv"), &[], Interval::D1))
        .await
        .unwrap();
    let codes: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            SourceRecord::Unreadable(u) => Some((u.index, u.rejection.code, u.symbol.as_str())),
            _ => None,
        })
        .collect();
    assert!(codes.contains(&(3, RejectReason::Malformed, "AAA")));
    assert!(codes.contains(&(5, RejectReason::MissingField, "AAA")));
    assert!(codes.contains(&(6, RejectReason::InvalidTimestamp, "AAA")));
    assert!(codes.contains(&(7, RejectReason::MissingField, "AAA")));
    assert!(codes.contains(&(9, RejectReason::MissingField, "")));
}

#[tokio::test]
async fn a_chunk_key_without_its_line_counts_the_lines() {
    let params = CsvParams {
        chunk_bytes: Some(100),
        ..params("bad_rows.csv")
    };
    let spec = spec(params, &[], Interval::D1);
    let source = CsvSource::new();
    for mut chunk in source.plan(&spec).await.unwrap() {
        let with_line = source.fetch(&spec, &chunk).await.unwrap();
        let ChunkPosition::Bytes { start, end } = chunk.position else {
            panic!("{chunk:?}");
        };
        assert!(chunk.key.starts_with(&format!("bytes/{start}-{end}/line/")));
        chunk.key = format!("bytes/{start}-{end}");
        assert_eq!(source.fetch(&spec, &chunk).await.unwrap(), with_line);
        chunk.key = format!("bytes/{start}-{}", end + 1);
        assert!(matches!(
            source.fetch(&spec, &chunk).await,
            Err(SourceError::Fatal(_))
        ));
    }
}

fn fatal(result: Result<Vec<SourceRecord>, SourceError>) -> String {
    match result {
        Err(SourceError::Fatal(message)) => message,
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

#[tokio::test]
async fn fatal_errors_name_the_file_and_the_problem() {
    let missing = fatal(load(&spec(params("no_such_file.csv"), &["X"], Interval::D1)).await);
    assert!(
        missing.contains("no_such_file.csv") && missing.contains("cannot be opened"),
        "{missing}"
    );

    let no_close = fatal(load(&spec(params("no_close.csv"), &["X"], Interval::D1)).await);
    assert!(
        no_close.contains("no_close.csv") && no_close.contains("no Close column"),
        "{no_close}"
    );

    let two = fatal(load(&spec(params("two_closes.csv"), &["X"], Interval::D1)).await);
    assert!(two.contains("two Close columns"), "{two}");

    let empty = fatal(load(&spec(params("empty.csv"), &["X"], Interval::D1)).await);
    assert!(empty.contains("empty"), "{empty}");

    let no_symbol = fatal(load(&spec(params("yahoo.csv"), &[], Interval::D1)).await);
    assert!(no_symbol.contains("no Symbol column"), "{no_symbol}");
    let two_symbols = fatal(load(&spec(params("yahoo.csv"), &["A", "B"], Interval::D1)).await);
    assert!(two_symbols.contains("no Symbol column"), "{two_symbols}");

    let bad_zone = CsvParams {
        time_zone: Some("Mars/Olympus".into()),
        ..params("yahoo.csv")
    };
    let zone = fatal(load(&spec(bad_zone, &["X"], Interval::D1)).await);
    assert!(zone.contains("Mars/Olympus"), "{zone}");

    let wrong_symbol = CsvParams {
        symbol: Some("MSFT".into()),
        ..params("yahoo.csv")
    };
    let wrong = fatal(load(&spec(wrong_symbol, &["AAPL"], Interval::D1)).await);
    assert!(wrong.contains("MSFT"), "{wrong}");
}

#[tokio::test]
async fn a_header_only_file_plans_nothing() {
    let spec = spec(params("header_only.csv"), &["X"], Interval::D1);
    assert!(CsvSource::new().plan(&spec).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_file_changed_since_the_plan_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.csv");
    std::fs::copy(fixture("yahoo.csv"), &path).unwrap();
    let params = CsvParams {
        path: path.clone(),
        chunk_bytes: Some(100),
        ..CsvParams::default()
    };
    let spec = spec(params, &["AAPL"], Interval::D1);
    let source = CsvSource::new();
    let chunks = source.plan(&spec).await.unwrap();
    assert!(chunks.len() >= 2);
    // One more character in the first row moves every later line.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("187.149994", "187.1499940", 1);
    std::fs::write(&path, text).unwrap();
    let last = chunks.last().unwrap();
    let message = fatal(source.fetch(&spec, last).await);
    assert!(
        message.contains("changed since the backfill was planned"),
        "{message}"
    );
}

#[tokio::test]
async fn a_rooted_source_reads_only_inside_its_directory() {
    let root = fixture("");
    let source = CsvSource::within(&root);
    let inside = spec(
        CsvParams {
            path: "yahoo.csv".into(),
            ..CsvParams::default()
        },
        &["AAPL"],
        Interval::D1,
    );
    assert_eq!(source.plan(&inside).await.unwrap().len(), 1);
    let outside = spec(
        CsvParams {
            path: "../../../Cargo.toml".into(),
            ..CsvParams::default()
        },
        &["AAPL"],
        Interval::D1,
    );
    match source.plan(&outside).await {
        Err(SourceError::Fatal(message)) => {
            assert!(message.contains("outside the CSV directory"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
