//! The circuit breaker in front of MLflow: after a run of failures, calls are refused at
//! once for a cool-down instead of each waiting for its timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use stockcast_runtime::sync::unpoisoned;

use crate::registry::RegistryError;

/// Opens after `threshold` consecutive failures; after `cooldown`, lets one trial call
/// through (half-open) and closes again on its success.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        unpoisoned(self.state.lock())
    }

    /// Refuses the call while open.
    pub(crate) fn allow(&self) -> Result<(), RegistryError> {
        let mut state = self.lock();
        match state.open_until {
            Some(until) if Instant::now() < until => Err(RegistryError::Unavailable(format!(
                "circuit open after {} consecutive failures; next trial in {} ms",
                state.failures,
                until.saturating_duration_since(Instant::now()).as_millis()
            ))),
            Some(_) => {
                // Half-open: this call is the trial; others wait for its outcome.
                state.open_until = Some(Instant::now() + self.cooldown);
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub(crate) fn success(&self) {
        let mut state = self.lock();
        if state.open_until.is_some() {
            tracing::info!("mlflow answers again; circuit closed");
        }
        *state = BreakerState::default();
    }

    pub(crate) fn failure(&self) {
        let mut state = self.lock();
        state.failures = state.failures.saturating_add(1);
        if state.failures >= self.threshold {
            if state.open_until.is_none() {
                tracing::warn!(
                    failures = state.failures,
                    "mlflow unreachable; circuit open"
                );
                crate::metrics::breaker_opened();
            }
            state.open_until = Some(Instant::now() + self.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_half_opens_after_cooldown() {
        let breaker = Breaker::new(2, Duration::ZERO);
        breaker.failure();
        assert!(breaker.allow().is_ok());
        let long = Breaker::new(2, Duration::from_secs(3600));
        long.failure();
        long.failure();
        let refused = long.allow().unwrap_err();
        assert!(
            refused.to_string().contains("circuit open after 2"),
            "{refused}"
        );
        long.success();
        assert!(long.allow().is_ok());
        // Zero cooldown: open, but the next call is the half-open trial.
        breaker.failure();
        assert!(breaker.allow().is_ok());
    }
}
