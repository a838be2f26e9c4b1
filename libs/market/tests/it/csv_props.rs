//! Property tests of the CSV parser: no input makes it panic; valid rows, however laid out,
//! round-trip to the bars they were written from; chunking never changes the result.

use proptest::prelude::*;
use stockcast_market::sources::csv::{CsvContext, CsvParams, CsvSource, parse_csv};
use stockcast_market::sources::{BackfillSpec, Source, SourceParams, SourceRecord};
use stockcast_market::{Bar, Interval};

fn spec(symbols: &[&str], interval: Interval, params: CsvParams) -> BackfillSpec {
    BackfillSpec {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        interval,
        start: i64::MIN,
        end: i64::MAX,
        params: SourceParams::Csv(params),
    }
}

/// Contexts covering each code path: symbol column, fixed symbol with a time zone, split
/// date and time columns, quoted header.
fn contexts() -> Vec<CsvContext> {
    let zoned = CsvParams {
        time_zone: Some("Europe/Berlin".into()),
        symbol: Some("X".into()),
        ..CsvParams::default()
    };
    vec![
        CsvContext::new(
            b"Date,Symbol,Open,High,Low,Close,Adj Close,Volume",
            &CsvParams::default(),
            &spec(&["A", "B"], Interval::D1, CsvParams::default()),
        )
        .unwrap(),
        CsvContext::new(
            b",Datetime,Open,High,Low,Close,Volume\r\n",
            &zoned,
            &spec(&[], Interval::M5, zoned.clone()),
        )
        .unwrap(),
        CsvContext::new(
            b"\xEF\xBB\xBF\"Date\",\"Time\",\"Open\",\"High\",\"Low\",\"Close\",\"Volume\"",
            &CsvParams::default(),
            &spec(&["X"], Interval::M1, CsvParams::default()),
        )
        .unwrap(),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), first in 1u64..1_000) {
        for ctx in contexts() {
            let _ = parse_csv(&bytes, first, &ctx);
        }
        let _ = CsvContext::new(&bytes, &CsvParams::default(), &spec(&["X"], Interval::D1, CsvParams::default()));
    }

    #[test]
    fn near_csv_never_panics(text in "[0-9:. ,\"\r\n+TZUCtz eE-]{0,400}", first in 1u64..1_000) {
        for ctx in contexts() {
            let records = parse_csv(text.as_bytes(), first, &ctx);
            for record in records {
                if let SourceRecord::Unreadable(u) = record {
                    prop_assert!(u.index >= first as i64);
                    prop_assert!(!u.rejection.reason.is_empty());
                }
            }
        }
    }
}

/// How a generated file is laid out.
#[derive(Debug, Clone)]
struct Layout {
    daily: bool,
    symbol_column: bool,
    adj_close: bool,
    index_column: bool,
    /// Column order: a permutation of the columns present.
    order: Vec<usize>,
    upper_case: bool,
    quoted: bool,
    crlf: bool,
    trailing_newline: bool,
    /// Minutes east of UTC the times are written in (intraday only).
    offset_minutes: i32,
    /// 0: `YYYY-MM-DD HH:MM:SS±HH:MM`, 1: `YYYY-MM-DDTHH:MM±HH:MM`, 2: UTC with `Z`.
    time_form: u8,
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        Just((0..9usize).collect::<Vec<_>>()).prop_shuffle(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        (-56i32..=56).prop_map(|q| q * 15),
        0u8..3,
    )
        .prop_map(
            |(
                daily,
                symbol_column,
                adj_close,
                index_column,
                order,
                upper_case,
                quoted,
                crlf,
                trailing_newline,
                offset_minutes,
                time_form,
            )| Layout {
                daily,
                symbol_column,
                adj_close,
                index_column,
                order,
                upper_case,
                quoted,
                crlf,
                trailing_newline,
                offset_minutes,
                time_form,
            },
        )
}

fn price() -> impl Strategy<Value = f64> {
    prop_oneof![
        (1u64..100_000_000).prop_map(|cents| cents as f64 / 100.0),
        proptest::num::f64::POSITIVE | proptest::num::f64::NORMAL,
    ]
}

fn volume() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u64..10_000_000_000).prop_map(|v| v as f64),
        (0.0f64..1e12),
    ]
}

/// Rows as (symbol, day, minute of day, open, high, low, close, volume). Values need not
/// be consistent bars: the parser reads, the validator judges.
type Row = (String, i64, i64, f64, f64, f64, f64, f64);

fn rows() -> impl Strategy<Value = Vec<Row>> {
    proptest::collection::vec(
        (
            "[A-Z]{1,5}",
            0i64..2_900_000,
            0i64..1_440,
            price(),
            price(),
            price(),
            price(),
            volume(),
        ),
        0..40,
    )
}

const NAMES: [&str; 9] = [
    "Date",
    "Open",
    "High",
    "Low",
    "Close",
    "Volume",
    "Symbol",
    "Adj Close",
    "",
];

fn render(layout: &Layout, rows: &[Row]) -> (String, String, Vec<Bar>) {
    let present = |c: usize| match c {
        6 => layout.symbol_column,
        7 => layout.adj_close,
        8 => layout.index_column,
        _ => true,
    };
    let columns: Vec<usize> = layout
        .order
        .iter()
        .copied()
        .filter(|&c| present(c))
        .collect();
    let newline = if layout.crlf { "\r\n" } else { "\n" };
    let cell = |text: String| {
        if layout.quoted {
            format!("\"{text}\"")
        } else {
            text
        }
    };
    let header: Vec<String> = columns
        .iter()
        .map(|&c| {
            let name = if layout.upper_case {
                NAMES[c].to_uppercase()
            } else {
                NAMES[c].to_lowercase()
            };
            cell(name)
        })
        .collect();
    let header = header.join(",") + newline;

    let interval = if layout.daily {
        Interval::D1
    } else {
        Interval::M1
    };
    let mut body = String::new();
    let mut bars = Vec::new();
    for (i, (symbol, day, minute, open, high, low, close, volume)) in rows.iter().enumerate() {
        let symbol = if layout.symbol_column {
            symbol.clone()
        } else {
            "SYM".to_owned()
        };
        let ts = if layout.daily {
            day * 86_400
        } else {
            day * 86_400 + minute * 60
        };
        let date = if layout.daily {
            chrono::DateTime::from_timestamp(ts, 0)
                .unwrap()
                .format("%Y-%m-%d")
                .to_string()
        } else {
            let offset = i64::from(layout.offset_minutes) * 60;
            let local = chrono::DateTime::from_timestamp(ts + offset, 0).unwrap();
            let sign = if offset < 0 { '-' } else { '+' };
            let (h, m) = (offset.abs() / 3_600, offset.abs() / 60 % 60);
            match layout.time_form {
                0 => format!("{}{sign}{h:02}:{m:02}", local.format("%Y-%m-%d %H:%M:%S")),
                1 => format!("{}{sign}{h:02}:{m:02}", local.format("%Y-%m-%dT%H:%M")),
                _ => chrono::DateTime::from_timestamp(ts, 0)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            }
        };
        let cells: Vec<String> = columns
            .iter()
            .map(|&c| match c {
                0 => cell(date.clone()),
                1 => cell(open.to_string()),
                2 => cell(high.to_string()),
                3 => cell(low.to_string()),
                4 => cell(close.to_string()),
                5 => cell(volume.to_string()),
                6 => cell(symbol.clone()),
                7 => cell((close * 0.5).to_string()),
                _ => i.to_string(),
            })
            .collect();
        body.push_str(&cells.join(","));
        if i + 1 < rows.len() || layout.trailing_newline {
            body.push_str(newline);
        }
        bars.push(Bar {
            symbol,
            interval,
            ts,
            open: *open,
            high: *high,
            low: *low,
            close: *close,
            volume: *volume,
        });
    }
    (header, body, bars)
}

fn params_for(layout: &Layout) -> CsvParams {
    CsvParams {
        symbol: (!layout.symbol_column).then(|| "SYM".to_owned()),
        ..CsvParams::default()
    }
}

fn as_bars(records: Vec<SourceRecord>) -> Result<Vec<Bar>, TestCaseError> {
    records
        .into_iter()
        .map(|r| match r {
            SourceRecord::Row(row) => Ok(row.bar),
            SourceRecord::Bar(bar) => Err(TestCaseError::fail(format!(
                "a CSV row without its line: {bar:?}"
            ))),
            SourceRecord::Unreadable(u) => Err(TestCaseError::fail(format!(
                "line {}: {} ({:?})",
                u.index,
                u.rejection.reason,
                String::from_utf8_lossy(&u.payload)
            ))),
        })
        .collect()
}

proptest! {
    #[test]
    fn valid_rows_round_trip(layout in layout(), rows in rows()) {
        let (header, body, expected) = render(&layout, &rows);
        let params = params_for(&layout);
        let interval = if layout.daily { Interval::D1 } else { Interval::M1 };
        let ctx = CsvContext::new(header.as_bytes(), &params, &spec(&[], interval, params.clone()))
            .map_err(|e| TestCaseError::fail(format!("{header:?}: {e}")))?;
        let bars = as_bars(parse_csv(body.as_bytes(), 2, &ctx))?;
        prop_assert_eq!(bars.len(), expected.len());
        for (bar, expected) in bars.iter().zip(&expected) {
            prop_assert_eq!(bar, expected);
            prop_assert!(bar.same_values(expected));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn chunking_never_changes_the_result(layout in layout(), rows in rows(), chunk_bytes in 1u64..300) {
        let (header, body, _) = render(&layout, &rows);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        std::fs::write(&path, format!("{header}{body}")).unwrap();
        let interval = if layout.daily { Interval::D1 } else { Interval::M1 };
        let params = CsvParams { path, chunk_bytes: Some(chunk_bytes), ..params_for(&layout) };
        let spec = spec(&[], interval, params.clone());
        let whole = parse_csv(body.as_bytes(), 2, &CsvContext::new(header.as_bytes(), &params, &spec).unwrap());

        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let chunked = runtime.block_on(async {
            let source = CsvSource::new();
            let mut records = Vec::new();
            for chunk in source.plan(&spec).await.unwrap() {
                records.extend(source.fetch(&spec, &chunk).await.unwrap());
            }
            records
        });
        prop_assert_eq!(chunked, whole);
    }
}
