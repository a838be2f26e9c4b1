//! How a service starts: the one error shape for a start that failed, and the wait for a
//! dependency that is not reachable yet (containers start in any order) that SIGTERM ends.

use std::future::Future;

use crate::grpc::ServeError;
use crate::retry::{Backoff, Retry, RetryError};
use crate::shutdown::Shutdown;

/// Why a service could not start, or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// A dependency could not be set up or stayed unreachable.
    #[error("{dependency}: {reason}")]
    Dependency {
        /// What it is: `database`, `event-bus`, `online-store`, …
        dependency: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Shutdown was requested while a dependency was still being waited for.
    #[error("shutdown requested while waiting for the {0}")]
    Interrupted(&'static str),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl StartError {
    /// An unusable setting.
    pub fn config(reason: impl std::fmt::Display) -> Self {
        StartError::Config(reason.to_string())
    }

    /// A dependency that failed.
    pub fn dependency(dependency: &'static str, reason: impl std::fmt::Display) -> Self {
        StartError::Dependency {
            dependency,
            reason: reason.to_string(),
        }
    }
}

/// Attempts while waiting for a dependency at start-up: 13 to 26 s of waiting in all with
/// [`Backoff::STARTUP`]'s jitter.
pub const STARTUP_ATTEMPTS: u32 = 10;

/// Runs `op` until it succeeds, retrying errors that `is_transient` accepts with
/// [`Backoff::STARTUP`] for [`STARTUP_ATTEMPTS`]; SIGTERM ends the wait at once
/// ([`StartError::Interrupted`]).
pub async fn wait_for<T, E, F, Fut>(
    dependency: &'static str,
    shutdown: &Shutdown,
    is_transient: impl Fn(&E) -> bool,
    op: F,
) -> Result<T, StartError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    Retry::new(Backoff::STARTUP)
        .attempts(STARTUP_ATTEMPTS)
        .run(dependency, shutdown, is_transient, op)
        .await
        .map_err(|e| match e {
            RetryError::Failed(e) => StartError::dependency(dependency, e),
            RetryError::Stopped(_) => StartError::Interrupted(dependency),
        })
}
