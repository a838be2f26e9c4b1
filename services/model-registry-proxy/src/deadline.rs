//! The time a request may spend waiting for the registry. A call is cut by the caller's
//! deadline (`grpc-timeout`) or the server's `request_timeout_ms`, whichever comes first; a
//! cut call is answered with CANCELLED by the server, which hides the cached answer the
//! proxy could have given. So registry calls are budgeted to end a little before that
//! moment: retries that cannot finish in time are not started, each attempt's timeout is
//! capped by what is left, and the proxy then answers from its cache, or with
//! DEADLINE_EXCEEDED (the caller's deadline) or UNAVAILABLE (the server's limit).
//!
//! The budget of the request being served is a task-local, so that the registry clients
//! read it without every trait method taking a deadline. Work outside a request (polls,
//! webhooks) has none.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::registry::RegistryError;

/// When the registry must have answered, and whose limit that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Registry calls must be over by then.
    pub until: Instant,
    /// The caller's deadline is the earlier limit (else the server's request timeout).
    pub callers: bool,
}

/// Most time kept back from a request's limit to answer from the cache.
const MAX_RESERVE: Duration = Duration::from_millis(250);

impl Budget {
    /// The budget of a request that started at `start`, which the caller wants answered
    /// within `caller` (its `grpc-timeout`) and the server within `server`: the earlier
    /// limit, less a tenth of it (at most 250 ms) kept back for the answer.
    pub fn new(start: Instant, caller: Option<Duration>, server: Duration) -> Self {
        let (limit, callers) = match caller {
            Some(caller) if caller <= server => (caller, true),
            _ => (server, false),
        };
        let reserve = (limit / 10).min(MAX_RESERVE);
        Self {
            until: start + (limit - reserve),
            callers,
        }
    }

    /// What is left of the budget.
    pub fn remaining(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }

    /// The error for registry work cut by this budget: DEADLINE_EXCEEDED when it is the
    /// caller's deadline, UNAVAILABLE when it is the server's limit.
    pub fn spent(&self, what: &str) -> RegistryError {
        if self.callers {
            RegistryError::DeadlineExceeded(format!(
                "{what} did not finish within the call's deadline"
            ))
        } else {
            RegistryError::Unavailable(format!(
                "{what} did not finish within the server's request timeout"
            ))
        }
    }
}

tokio::task_local! {
    static BUDGET: Budget;
}

/// Runs `work` with `budget` as the budget of the registry calls it makes.
pub async fn within<F: Future>(budget: Budget, work: F) -> F::Output {
    BUDGET.scope(budget, work).await
}

/// The budget of the request being served on this task, if any.
pub fn current() -> Option<Budget> {
    BUDGET.try_with(|budget| *budget).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_limit_binds_less_a_reserve_for_the_answer() {
        let start = Instant::now();
        let server = Duration::from_secs(10);
        let budget = Budget::new(start, None, server);
        assert!(!budget.callers);
        assert_eq!(budget.until, start + Duration::from_millis(9_750));
        let budget = Budget::new(start, Some(Duration::from_secs(1)), server);
        assert!(budget.callers);
        assert_eq!(budget.until, start + Duration::from_millis(900));
        let budget = Budget::new(start, Some(Duration::from_secs(60)), server);
        assert!(!budget.callers);
        assert!(matches!(
            budget.spent("mlflow"),
            RegistryError::Unavailable(m) if m.contains("request timeout")
        ));
        let budget = Budget::new(start, Some(Duration::ZERO), server);
        assert_eq!(budget.until, start);
        assert!(matches!(
            budget.spent("mlflow"),
            RegistryError::DeadlineExceeded(m) if m.contains("deadline")
        ));
    }
}
