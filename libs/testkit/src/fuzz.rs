//! Support for the fuzz harnesses that run on stable as ordinary tests: a seeded generator,
//! so that a failure names its seed and round and replays, and the wall-clock budget of one
//! run (3 s, `STOCKCAST_FUZZ_SECS` to run longer; see docs/testing.md).

use std::time::Duration;

/// A small deterministic generator (xorshift64*); not for anything but tests.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// How long one harness mutates its corpus: `STOCKCAST_FUZZ_SECS` seconds, 3 by default. A
/// bound on the harness's cost, never an assertion.
pub fn budget() -> Duration {
    let secs = std::env::var("STOCKCAST_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(secs)
}

/// `input` changed one to five times: a bit flipped, one of `interesting` inserted, a run
/// deleted, a piece of another corpus entry spliced in, a run of up to 100,000 copies of
/// one of `run_bytes` (deep nesting, giant numbers) inserted, or the end cut off.
pub fn mutate(
    rng: &mut Rng,
    input: &[u8],
    corpus: &[Vec<u8>],
    interesting: &[&[u8]],
    run_bytes: &[u8],
) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 if !interesting.is_empty() => {
                let bytes = interesting[rng.below(interesting.len())];
                out.splice(at..at, bytes.iter().copied());
            }
            2 => {
                let end = (at + rng.below(64)).min(out.len());
                out.drain(at..end);
            }
            3 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len());
                let end = (from + rng.below(512)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            4 if !run_bytes.is_empty() => {
                let byte = run_bytes[rng.below(run_bytes.len())];
                out.splice(at..at, vec![byte; rng.below(100_000)]);
            }
            _ => out.truncate(at),
        }
    }
    out
}
