//! Retrying with exponential backoff: the one loop every service uses to wait out a
//! dependency (a database or broker starting later, a source rate-limiting, a store refusing
//! for a while) — bounded, jittered, and stopped by shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::shutdown::Shutdown;

/// Exponential backoff: the delay before retry `n` (counted from 0) is `min · 2ⁿ`, capped at
/// `max`, then shortened by up to `jitter` of itself at random so that many clients retrying
/// together spread out. A delay never exceeds `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: f64,
}

/// Why a backoff cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    /// The first delay is zero.
    #[error("the first retry delay must be positive")]
    ZeroMin,
    /// The cap is below the first delay.
    #[error("the longest retry delay ({max:?}) is below the first ({min:?})")]
    MaxBelowMin {
        /// First delay.
        min: Duration,
        /// Cap.
        max: Duration,
    },
    /// The jitter is not a fraction.
    #[error("retry jitter {0} must be a fraction from 0 to 1")]
    Jitter(f64),
}

impl Backoff {
    /// The backoff every start-up wait uses: 200 ms doubling to 5 s, 50 % jitter.
    pub const STARTUP: Backoff = Backoff {
        min: Duration::from_millis(200),
        max: Duration::from_secs(5),
        jitter: 0.5,
    };

    /// A backoff from `min` doubling up to `max`, with 50 % jitter.
    pub fn new(min: Duration, max: Duration) -> Result<Self, BackoffError> {
        if min.is_zero() {
            return Err(BackoffError::ZeroMin);
        }
        if max < min {
            return Err(BackoffError::MaxBelowMin { min, max });
        }
        Ok(Self {
            min,
            max,
            jitter: 0.5,
        })
    }

    /// The same backoff with `jitter` (0 = none, 1 = anywhere from zero to the full delay).
    pub fn with_jitter(self, jitter: f64) -> Result<Self, BackoffError> {
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError::Jitter(jitter));
        }
        Ok(Self { jitter, ..self })
    }

    /// First delay.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// Longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay before retry `attempt` (0 for the first retry) before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
        self.min
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The delay before retry `attempt` (0 for the first retry), jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.jittered(attempt, rand::random::<f64>())
    }

    /// The delay before retry `attempt` with the random draw `unit` in `[0, 1)`.
    fn jittered(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt)
            .mul_f64(1.0 - self.jitter * unit.clamp(0.0, 1.0))
    }
}

/// How a retried operation ended without a result.
#[derive(Debug, PartialEq, Eq)]
pub enum RetryError<E> {
    /// The operation failed with an error that is not worth retrying, or the attempts or
    /// the time budget ran out; the last error.
    Failed(E),
    /// Shutdown fired while waiting to retry (the last error), or while an attempt was still
    /// running (`None`: a dependency that hangs must not hold up shutdown).
    Stopped(Option<E>),
}

impl<E> RetryError<E> {
    /// The last error, if an attempt ended with one.
    pub fn into_inner(self) -> Option<E> {
        match self {
            RetryError::Failed(e) => Some(e),
            RetryError::Stopped(e) => e,
        }
    }
}

/// A retry policy: a backoff, an optional number of attempts and an optional deadline.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    backoff: Backoff,
    attempts: Option<u32>,
    deadline: Option<Instant>,
}

impl Retry {
    /// Retries with `backoff`, without limit until one of [`Retry::attempts`] or
    /// [`Retry::deadline`] is set.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            attempts: None,
            deadline: None,
        }
    }

    /// At most `attempts` tries in all (the first call included; 0 counts as 1).
    pub fn attempts(self, attempts: u32) -> Self {
        Self {
            attempts: Some(attempts.max(1)),
            ..self
        }
    }

    /// No retry starts whose wait would end after `deadline`.
    pub fn deadline(self, deadline: Instant) -> Self {
        Self {
            deadline: Some(deadline),
            ..self
        }
    }

    /// Calls `op` until it succeeds, fails with an error `is_transient` says is permanent,
    /// the attempts or the deadline run out, or `shutdown` fires while waiting. Each retry is
    /// logged at `warn` with `what` and the error.
    pub async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        shutdown: &Shutdown,
        is_transient: impl Fn(&E) -> bool,
        mut op: F,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut attempt: u32 = 0;
        loop {
            let outcome = tokio::select! {
                biased;
                () = shutdown.wait() => return Err(RetryError::Stopped(None)),
                outcome = op() => outcome,
            };
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            attempt = attempt.saturating_add(1);
            if !is_transient(&error) || self.attempts.is_some_and(|n| attempt >= n) {
                return Err(RetryError::Failed(error));
            }
            let wait = self.backoff.delay(attempt - 1);
            if self.deadline.is_some_and(|d| Instant::now() + wait > d) {
                return Err(RetryError::Failed(error));
            }
            if shutdown.is_triggered() {
                return Err(RetryError::Stopped(Some(error)));
            }
            tracing::warn!(
                what,
                attempt,
                wait_ms = wait.as_millis() as u64,
                %error,
                "not available yet; retrying"
            );
            tokio::select! {
                biased;
                () = shutdown.wait() => return Err(RetryError::Stopped(Some(error))),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Sleeps for `wait` unless `shutdown` fires first; `false` when it did.
pub async fn sleep_unless(shutdown: &Shutdown, wait: Duration) -> bool {
    tokio::select! {
        biased;
        () = shutdown.wait() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn invalid_backoffs_are_refused() {
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::from_secs(1)),
            Err(BackoffError::ZeroMin)
        );
        assert!(matches!(
            Backoff::new(Duration::from_secs(2), Duration::from_secs(1)),
            Err(BackoffError::MaxBelowMin { .. })
        ));
        let b = Backoff::new(Duration::from_millis(1), Duration::from_secs(1)).unwrap();
        assert!(b.with_jitter(1.5).is_err());
        assert!(b.with_jitter(f64::NAN).is_err());
        assert!(b.with_jitter(-0.1).is_err());
    }

    #[test]
    fn delays_double_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
            .unwrap()
            .with_jitter(0.0)
            .unwrap();
        let delays: Vec<u64> = (0..6).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    proptest! {
        #[test]
        fn a_delay_stays_within_its_jitter_band_and_the_cap(
            min_ms in 1u64..10_000,
            extra_ms in 0u64..100_000,
            jitter in 0.0f64..=1.0,
            attempt in any::<u32>(),
            unit in 0.0f64..1.0,
        ) {
            let b = Backoff::new(
                Duration::from_millis(min_ms),
                Duration::from_millis(min_ms + extra_ms),
            ).unwrap().with_jitter(jitter).unwrap();
            let ceiling = b.ceiling(attempt);
            let delay = b.jittered(attempt, unit);
            prop_assert!(ceiling <= b.max());
            prop_assert!(ceiling >= b.min().min(b.max()));
            prop_assert!(delay <= ceiling);
            prop_assert!(delay >= ceiling.mul_f64(1.0 - jitter) - Duration::from_nanos(1));
            // Never shorter for a later attempt, before jitter.
            prop_assert!(b.ceiling(attempt.saturating_add(1)) >= ceiling);
        }
    }

    fn quick() -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(2)).unwrap()
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let out = Retry::new(quick())
            .run(
                "test",
                &Shutdown::new(),
                |_: &String| true,
                || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n < 3 {
                            Err(format!("down {n}"))
                        } else {
                            Ok(n)
                        }
                    }
                },
            )
            .await;
        assert_eq!(out, Ok(3));
    }

    #[tokio::test]
    async fn a_permanent_error_is_returned_at_once() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = Retry::new(quick())
            .run(
                "test",
                &Shutdown::new(),
                |e: &String| e != "fatal",
                || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err("fatal".to_owned()) }
                },
            )
            .await;
        assert_eq!(out, Err(RetryError::Failed("fatal".to_owned())));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn attempts_bound_the_calls() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = Retry::new(quick())
            .attempts(4)
            .run(
                "test",
                &Shutdown::new(),
                |_: &String| true,
                || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err("down".to_owned()) }
                },
            )
            .await;
        assert_eq!(out, Err(RetryError::Failed("down".to_owned())));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn shutdown_stops_the_wait() {
        let shutdown = Shutdown::new();
        // An hour-long wait: only shutdown can end this test.
        let slow = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600)).unwrap();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.trigger();
        });
        let out: Result<(), _> = Retry::new(slow)
            .run(
                "test",
                &shutdown,
                |_: &String| true,
                || async { Err("down".to_owned()) },
            )
            .await;
        assert_eq!(out, Err(RetryError::Stopped(Some("down".to_owned()))));
    }

    #[tokio::test]
    async fn shutdown_stops_an_attempt_that_hangs() {
        // A dependency that accepts connections and never answers.
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.trigger();
        });
        let out: Result<(), RetryError<String>> = Retry::new(quick())
            .run(
                "test",
                &shutdown,
                |_: &String| true,
                std::future::pending::<Result<(), String>>,
            )
            .await;
        assert_eq!(out, Err(RetryError::Stopped(None)));
    }

    #[tokio::test]
    async fn no_retry_waits_past_the_deadline() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = Retry::new(quick())
            .deadline(Instant::now())
            .run(
                "test",
                &Shutdown::new(),
                |_: &String| true,
                || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err("down".to_owned()) }
                },
            )
            .await;
        assert!(matches!(out, Err(RetryError::Failed(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let out: Result<(), _> = Retry::new(quick())
            .deadline(Instant::now() + Duration::from_secs(3600))
            .attempts(3)
            .run(
                "test",
                &Shutdown::new(),
                |_: &String| true,
                || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err("down".to_owned()) }
                },
            )
            .await;
        assert!(matches!(out, Err(RetryError::Failed(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
