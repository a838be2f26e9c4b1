//! Parse + validate throughput of the CSV source, in rows per second, on 1,000,000 daily
//! rows held in memory (no I/O): `env -u RUST_BACKTRACE cargo bench -p stockcast-market --bench csv`.
//!
//! Each case is measured twice: `csv/…` in wall time, `csv_cpu/…` in the CPU time of the
//! benchmark thread (Linux scheduler statistics). On a machine shared with compilers the
//! wall time includes waiting for a core; the CPU time is the one-core throughput.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stockcast_market::sources::csv::{CsvContext, CsvParams, parse_csv};
use stockcast_market::sources::synthetic::{SyntheticParams, SyntheticPath};
use stockcast_market::sources::{BackfillSpec, Row, SourceParams, SourceRecord};
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

fn bench<M: Measurement + 'static>(c: &mut Criterion<M>, group_name: &str) {
    let validator = Validator::new(&ValidationSettings::default()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    for (name, symbol_column, chunked) in [
        ("parse_validate/yahoo", false, false),
        ("parse_validate/yahoo_4mib_chunks", false, true),
        ("parse_validate/symbol_column", true, false),
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
            let SourceRecord::Row(Row { bar, .. }) = record else {
                panic!("unreadable row: {record:?}");
            };
            validator.check(bar, now).unwrap();
        }
        // Whole file in one call, or cut at line ends into the 4 MiB pieces a backfill
        // fetches (the records of one piece are dropped before the next is parsed).
        let pieces = if chunked {
            pieces(body.as_bytes(), 4 << 20)
        } else {
            vec![body.as_bytes()]
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut valid = 0usize;
                for piece in &pieces {
                    let records = parse_csv(black_box(piece), 2, &ctx);
                    for record in &records {
                        if let SourceRecord::Row(Row { bar, .. }) = record {
                            valid += usize::from(validator.check(bar, now).is_ok());
                        }
                    }
                }
                assert_eq!(valid, ROWS);
                black_box(valid)
            })
        });
    }
    group.finish();
}

/// `body` cut after the first line end at or past every `size` bytes.
fn pieces(body: &[u8], size: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let end = (start + size).min(body.len());
        let end = body[end..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| end + i + 1);
        pieces.push(&body[start..end]);
        start = end;
    }
    pieces
}

fn wall(c: &mut Criterion) {
    bench(c, "csv");
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    if thread_cpu_ns().is_some() {
        bench(c, "csv_cpu");
    }
}

/// CPU time of the calling thread in nanoseconds, from `/proc/thread-self/schedstat`.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Measures the CPU time of the benchmark thread instead of wall time.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns().unwrap_or(0)
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().unwrap_or(0).saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        for value in values {
            *value /= 1e6;
        }
        "ms cpu"
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (Throughput::Elements(n)
        | Throughput::Bytes(n)
        | Throughput::BytesDecimal(n)
        | Throughput::Bits(n)) = *throughput;
        for value in values {
            *value = n as f64 * 1e9 / *value / 1e6;
        }
        "M/s cpu"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
