//! A fuzz harness for the CSV reader that runs on stable as an ordinary test: every fixture
//! file is the seed corpus, mutated deterministically (byte flips, inserted and deleted runs,
//! spliced lines, interesting bytes) for a fixed time budget, through the header reader and
//! the row parser. Neither may panic, and every record it returns is a bar or a rejection
//! naming a column. Reproducible: the generator is seeded and a failure
//! prints the seed and round.

use std::time::Instant;

use stockcast_market::Interval;
use stockcast_market::sources::csv::{CsvContext, CsvParams, parse_csv};
use stockcast_market::sources::{BackfillSpec, SourceParams, SourceRecord};
use stockcast_testkit::fuzz::{self, Rng, budget};

const SEED: u64 = 0x5eed_c5f0_f022;

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b",",
    b"\r\n",
    b"\n",
    b"\0",
    b"\xEF\xBB\xBF",
    b"NaN",
    b"inf",
    b"-1e309",
    b"1e400",
    b"9999-12-31",
    b"0000-00-00",
    b"2024-02-30",
    b" UTC",
    b"+25:00",
    b"\xff\xfe",
    b"\xF0\x9F\xA6\x80",
    b"\"\"\"",
    b"Date,Open,High,Low,Close,Volume\n",
];

fn run_one(input: &[u8]) {
    let split = memchr_line(input);
    let (header, body) = input.split_at(split);
    for (interval, params) in [
        (Interval::D1, CsvParams::default()),
        (
            Interval::M5,
            CsvParams {
                symbol: Some("X".into()),
                time_zone: Some("America/New_York".into()),
                ..CsvParams::default()
            },
        ),
    ] {
        let spec = BackfillSpec {
            symbols: vec!["X".into(), "A".into()],
            interval,
            start: i64::MIN,
            end: i64::MAX,
            params: SourceParams::Csv(params.clone()),
        };
        let Ok(ctx) = CsvContext::new(header, &params, &spec) else {
            continue;
        };
        for record in parse_csv(body, 2, &ctx) {
            if let SourceRecord::Unreadable(u) = record {
                // A rejection names its column. (Its reason still repeats the whole cell,
                // however long: to be cut like the services' echoes.)
                assert!(!u.rejection.field.is_empty() || !u.rejection.reason.is_empty());
            }
        }
    }
}

fn memchr_line(input: &[u8]) -> usize {
    input
        .iter()
        .position(|b| *b == b'\n')
        .map_or(input.len(), |i| i + 1)
}

#[test]
fn the_csv_reader_survives_mutations_of_every_fixture() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/csv");
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    corpus.sort();
    assert!(corpus.len() >= 10, "seed corpus in {}", dir.display());
    for input in &corpus {
        run_one(input);
    }
    let mut rng = Rng(SEED);
    let (started, budget) = (Instant::now(), budget());
    let mut rounds = 0u64;
    while started.elapsed() < budget {
        let base = &corpus[rng.below(corpus.len())];
        let input = fuzz::mutate(&mut rng, base, &corpus, INTERESTING, b"0,.-\"x");
        let result = std::panic::catch_unwind(|| run_one(&input));
        assert!(
            result.is_ok(),
            "seed {SEED:#x}, round {rounds}: the CSV reader panicked on {:?}",
            String::from_utf8_lossy(&input[..input.len().min(2_000)])
        );
        rounds += 1;
    }
    assert!(rounds > 0);
}
