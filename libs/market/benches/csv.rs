//! Parse + validate throughput of the CSV source, in rows per second, on 1,000,000 daily
//! rows held in memory (no I/O): `env -u RUST_BACKTRACE cargo bench -p stockcast-market --bench csv`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stockcast_market::sources::csv::{CsvContext, CsvParams, parse_csv};
use stockcast_market::sources::synthetic::{SyntheticParams, SyntheticPath};
use stockcast_market::sources::{BackfillSpec, SourceParams, SourceRecord};
use stockcast_market::{Interval, ValidationSettings, Validator};

const ROWS: usize = 1_000_000;
/// 1985-01-01.
const START: i64 = 473_385_600;

/// A file of `ROWS` daily rows: 100 symbols × 10,000 days with a Symbol column, or one
/// symbol Yahoo-style (`Adj Close` included) whose 10,000 dates repeat.
fn file(symbol_column: bool) -> (String, String) {
    let header = if symbol_column {
        "Date,Symbol,Open,High,Low,Close,Adj Close,Volume\n"
    } else {
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
    };
    let mut body = String::with_capacity(ROWS * 70);
    let symbols = if symbol_column { 100 } else { 1 };
    for s in 0..symbols {
        let symbol = format!("SYM{s:03}");
        let path = SyntheticPath::new(&symbol, Interval::D1, START, &SyntheticParams::default())
            .unwrap()
            .take(10_000);
        let bars: Vec<_> = path.collect();
        for i in 0..ROWS / symbols {
            let bar = &bars[i % bars.len()];
            let date = chrono::DateTime::from_timestamp(bar.ts, 0)
                .unwrap()
                .format("%Y-%m-%d");
            if symbol_column {
                write!(body, "{date},{symbol},").unwrap();
            } else {
                write!(body, "{date},").unwrap();
            }
            writeln!(
                body,
                "{},{},{},{},{},{}",
                bar.open, bar.high, bar.low, bar.close, bar.close, bar.volume
            )
            .unwrap();
        }
    }
    (header.to_owned(), body)
}

fn bench(c: &mut Criterion) {
    let validator = Validator::new(&ValidationSettings::default()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut group = c.benchmark_group("csv");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    for (name, symbol_column) in [
        ("parse_validate/yahoo", false),
        ("parse_validate/symbol_column", true),
    ] {
        let (header, body) = file(symbol_column);
        let spec = BackfillSpec {
            symbols: if symbol_column {
                vec![]
            } else {
                vec!["SPY".into()]
            },
            interval: Interval::D1,
            start: 0,
            end: i64::MAX,
            params: SourceParams::Csv(CsvParams::default()),
        };
        let ctx = CsvContext::new(header.as_bytes(), &CsvParams::default(), &spec).unwrap();
        // Every row must be a valid bar, or the benchmark measures the wrong path.
        let records = parse_csv(body.as_bytes(), 2, &ctx);
        assert_eq!(records.len(), ROWS);
        for record in &records {
            let SourceRecord::Bar(bar) = record else {
                panic!("unreadable row: {record:?}");
            };
            validator.check(bar, now).unwrap();
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                let records = parse_csv(black_box(body.as_bytes()), 2, &ctx);
                let mut valid = 0usize;
                for record in &records {
                    if let SourceRecord::Bar(bar) = record {
                        valid += usize::from(validator.check(bar, now).is_ok());
                    }
                }
                black_box(valid)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
