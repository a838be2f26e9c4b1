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
