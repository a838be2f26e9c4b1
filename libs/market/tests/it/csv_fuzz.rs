//! A fuzz harness for the CSV reader that runs on stable as an ordinary test: every fixture
//! file is the seed corpus, mutated deterministically (byte flips, inserted and deleted runs,
//! spliced lines, interesting bytes) for a fixed time budget, through the header reader and
//! the row parser. Neither may panic, and every record it returns is a bar or a rejection
//! naming a column. Reproducible: the generator is seeded and a failure
//! prints the seed and round.

use std::time::{Duration, Instant};

use stockcast_market::Interval;
use stockcast_market::sources::csv::{CsvContext, CsvParams, parse_csv};
use stockcast_market::sources::{BackfillSpec, SourceParams, SourceRecord};

/// Wall-clock budget of the harness (a bound on its cost, not an assertion).
const BUDGET: Duration = Duration::from_secs(3);
const SEED: u64 = 0x5eed_c5f0_f022;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

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

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let bytes = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, bytes.iter().copied());
            }
            2 => {
                let end = (at + rng.below(64)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len());
                let end = (from + rng.below(256)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            4 => {
                let run = vec![b"0,.-\"x"[rng.below(6)]; rng.below(4_096)];
                out.splice(at..at, run);
            }
            _ => out.truncate(at),
        }
    }
    out
}

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
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < BUDGET {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &corpus);
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
