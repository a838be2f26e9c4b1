//! HTTP to MLflow: deadlines on every call, jittered retries of idempotent calls
//! (`stockcast_runtime::retry`), a circuit breaker (`breaker.rs`), and MLflow's
//! `{"error_code", "message"}` bodies mapped to [`RegistryError`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use stockcast_runtime::echo::truncate_for_message;
use stockcast_runtime::retry::{Backoff, Retry, RetryError};
use stockcast_runtime::{Secret, Shutdown};

use super::MlflowSettings;
use super::breaker::Breaker;
use crate::deadline::Budget;
use crate::registry::RegistryError;

/// A shared HTTP client for one MLflow tracking server.
#[derive(Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: Url,
    token: Secret,
    request_timeout: Duration,
    artifact_timeout: Duration,
    retries: u32,
    backoff: Backoff,
    breaker: Breaker,
    /// Never fired: a call ends with its request's deadline or its own timeout.
    never: Shutdown,
}

/// Whether a call may be repeated without changing its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotent {
    Yes,
    No,
}

impl Http {
    pub(crate) fn new(settings: &MlflowSettings) -> Result<Self, RegistryError> {
        let mut base = Url::parse(&settings.tracking_uri).map_err(|e| {
            RegistryError::InvalidArgument(format!(
                "mlflow.tracking_uri {:?}: {e}",
                settings.tracking_uri
            ))
        })?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| RegistryError::Internal(format!("http client: {e}")))?;
        Ok(Self {
            client,
            base,
            token: settings.token.clone(),
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            artifact_timeout: Duration::from_millis(settings.artifact_timeout_ms),
            retries: settings.retries,
            backoff: backoff(Duration::from_millis(settings.retry_backoff_ms)),
            breaker: Breaker::new(
                settings.breaker_failures,
                Duration::from_millis(settings.breaker_cooldown_ms),
            ),
            never: Shutdown::new(),
        })
    }

    /// The URL of `path` (relative to the tracking URI) with `query`.
    pub(crate) fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, RegistryError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| RegistryError::Internal(format!("url {path:?}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// The URL of artifact `path` in the proxied artifact API.
    pub(crate) fn artifact_url(&self, path: &str) -> Result<Url, RegistryError> {
        let mut url = self.url("api/2.0/mlflow-artifacts/artifacts", &[])?;
        url.path_segments_mut()
            .map_err(|()| RegistryError::Internal("tracking uri cannot be a base".to_owned()))?
            .extend(path.split('/').filter(|s| !s.is_empty()));
        Ok(url)
    }

    /// Calls a REST 2.0 endpoint and decodes its JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        idempotent: Idempotent,
    ) -> Result<T, RegistryError> {
        let url = self.url(path, query)?;
        let response = self
            .send(idempotent, self.request_timeout, || {
                let mut request = self.client.request(method.clone(), url.clone());
                if let Some(body) = body {
                    request = request.json(body);
                }
                request
            })
            .await?;
        let bytes = self.read(response, path).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Internal(format!(
                "{method} {path}: unexpected answer ({e}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })
    }

    /// Starts downloading artifact `path`; the body is read by the caller.
    pub(crate) async fn download(&self, path: &str) -> Result<reqwest::Response, RegistryError> {
        let url = self.artifact_url(path)?;
        self.send(Idempotent::Yes, self.artifact_timeout, || {
            self.client.get(url.clone())
        })
        .await
    }

    /// Uploads `bytes` as artifact `path`.
    pub(crate) async fn upload(&self, path: &str, bytes: Bytes) -> Result<(), RegistryError> {
        let url = self.artifact_url(path)?;
        let response = self
            .send(Idempotent::Yes, self.artifact_timeout, || {
                self.client.put(url.clone()).body(bytes.clone())
            })
            .await?;
        self.read(response, path).await.map(|_| ())
    }

    async fn read(&self, response: reqwest::Response, path: &str) -> Result<Bytes, RegistryError> {
        response.bytes().await.map_err(|e| {
            self.breaker.failure();
            RegistryError::Unavailable(format!("reading the answer to {path}: {e}"))
        })
    }

    /// Sends a request built by `build`, retrying idempotent ones on transient failures, and
    /// returns a successful response or the mapped error. Within a request's budget
    /// ([`crate::deadline`]) each attempt's timeout is capped by what is left, and a retry
    /// that would start after the budget is spent is not made: the budget's error is
    /// returned instead, so that the caller answers from its cache.
    async fn send(
        &self,
        idempotent: Idempotent,
        timeout: Duration,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let attempts = match idempotent {
            Idempotent::Yes => self.retries + 1,
            Idempotent::No => 1,
        };
        let budget = crate::deadline::current();
        let mut retry = Retry::new(self.backoff).attempts(attempts);
        if let Some(budget) = budget {
            retry = retry.deadline(tokio::time::Instant::from_std(budget.until));
        }
        let made = AtomicU32::new(0);
        let outcome = retry
            .run(
                "calling mlflow",
                &self.never,
                |failure: &Failure| failure.retry,
                || {
                    if made.fetch_add(1, Ordering::Relaxed) > 0 {
                        crate::metrics::mlflow_retry();
                    }
                    self.attempt(timeout, budget, &build)
                },
            )
            .await;
        let made = made.load(Ordering::Relaxed);
        match outcome.map_err(RetryError::into_inner) {
            Ok(response) => Ok(response),
            Err(Some(failure)) => match budget {
                // Transient, and attempts left or none worth starting: the budget ran out.
                Some(budget)
                    if failure.retry
                        && (made < attempts
                            || budget.remaining() <= self.backoff.ceiling(made - 1)) =>
                {
                    tracing::debug!(made, error = %failure.error, "mlflow call failed; no time left to retry");
                    Err(budget.spent(&format!("calling mlflow ({})", failure.error)))
                }
                _ => Err(failure.error),
            },
            Err(None) => Err(RegistryError::Unavailable(
                "calling mlflow was stopped".to_owned(),
            )),
        }
    }

    /// One attempt of a call, within what is left of `budget`.
    async fn attempt(
        &self,
        timeout: Duration,
        budget: Option<Budget>,
        build: &impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Failure> {
        // An open circuit refuses at once; waiting to retry would not close it sooner.
        self.breaker.allow().map_err(Failure::last)?;
        let timeout = match budget {
            Some(budget) if budget.remaining().is_zero() => {
                return Err(Failure::last(budget.spent("calling mlflow")));
            }
            Some(budget) => timeout.min(budget.remaining()),
            None => timeout,
        };
        let mut request = build().timeout(timeout);
        if !self.token.is_empty() {
            request = request.bearer_auth(self.token.expose());
        }
        let error = match request.send().await {
            Ok(response) if response.status().is_success() => {
                self.breaker.success();
                return Ok(response);
            }
            Ok(response) => {
                let status = response.status();
                let body = response.bytes().await.unwrap_or_default();
                from_response(status, &body)
            }
            Err(error) => RegistryError::Unavailable(describe(&error)),
        };
        if matches!(error, RegistryError::Unavailable(_)) {
            self.breaker.failure();
        } else {
            // The server answered: it is up, whatever it thought of the request.
            self.breaker.success();
        }
        Err(Failure {
            retry: matches!(
                error,
                RegistryError::Unavailable(_) | RegistryError::ResourceExhausted(_)
            ),
            error,
        })
    }
}

/// A failed attempt, and whether another is worth making.
#[derive(Debug)]
struct Failure {
    error: RegistryError,
    retry: bool,
}

impl Failure {
    /// A failure that ends the call.
    fn last(error: RegistryError) -> Self {
        Self {
            error,
            retry: false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Retry waits starting at `first` (at least 1 ms, at most [`MAX_BACKOFF`]), doubling up to
/// [`MAX_BACKOFF`], shortened by up to half at random.
fn backoff(first: Duration) -> Backoff {
    let first = first.clamp(Duration::from_millis(1), MAX_BACKOFF);
    Backoff::new(first, MAX_BACKOFF).unwrap_or(Backoff::STARTUP)
}

fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let url = error.url().map(|u| u.path().to_owned()).unwrap_or_default();
    format!("mlflow {url}: {what}: {error}")
}

/// Maps an MLflow error answer to a [`RegistryError`]: by `error_code` when the body has one,
/// by HTTP status otherwise.
pub(crate) fn from_response(status: StatusCode, body: &[u8]) -> RegistryError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error_code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        // MLflow's text may repeat a whole input: keep a readable part.
        let message = format!(
            "mlflow {}: {}",
            parsed.error_code,
            truncate_for_message(&parsed.message)
        );
        return match parsed.error_code.as_str() {
            "RESOURCE_DOES_NOT_EXIST" | "ENDPOINT_NOT_FOUND"
                if status != StatusCode::NOT_IMPLEMENTED =>
            {
                if parsed.error_code == "ENDPOINT_NOT_FOUND" {
                    RegistryError::Unimplemented(message)
                } else {
                    RegistryError::NotFound(message)
                }
            }
            // MLflow reports a missing alias as an invalid parameter "… not found."
            "INVALID_PARAMETER_VALUE"
                if parsed.message.trim_end_matches('.').ends_with("not found") =>
            {
                RegistryError::NotFound(message)
            }
            "INVALID_PARAMETER_VALUE"
            | "BAD_REQUEST"
            | "MALFORMED_REQUEST"
            | "INVALID_ARGUMENT" => RegistryError::InvalidArgument(message),
            "RESOURCE_ALREADY_EXISTS" => RegistryError::AlreadyExists(message),
            "INVALID_STATE" | "RESOURCE_CONFLICT" => RegistryError::FailedPrecondition(message),
            "PERMISSION_DENIED" | "CUSTOMER_UNAUTHORIZED" => {
                RegistryError::PermissionDenied(message)
            }
            "UNAUTHENTICATED" => RegistryError::Unauthenticated(message),
            "REQUEST_LIMIT_EXCEEDED" | "RESOURCE_EXHAUSTED" => {
                RegistryError::ResourceExhausted(message)
            }
            "TEMPORARILY_UNAVAILABLE" | "SERVICE_UNDER_MAINTENANCE" | "DEADLINE_EXCEEDED" => {
                RegistryError::Unavailable(message)
            }
            "NOT_IMPLEMENTED" | "ENDPOINT_NOT_FOUND" => RegistryError::Unimplemented(message),
            _ if status.is_server_error() => RegistryError::Unavailable(message),
            _ => RegistryError::Internal(message),
        };
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_owned();
    let message = format!("mlflow answered HTTP {status}: {text}");
    match status {
        StatusCode::NOT_FOUND => RegistryError::NotFound(message),
        StatusCode::BAD_REQUEST => RegistryError::InvalidArgument(message),
        StatusCode::UNAUTHORIZED => RegistryError::Unauthenticated(message),
        StatusCode::FORBIDDEN => RegistryError::PermissionDenied(message),
        StatusCode::TOO_MANY_REQUESTS => RegistryError::ResourceExhausted(message),
        StatusCode::CONFLICT => RegistryError::AlreadyExists(message),
        s if s.is_server_error() => RegistryError::Unavailable(message),
        _ => RegistryError::Internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_doubles_up_to_a_cap_and_never_overflows() {
        let b = backoff(Duration::from_millis(100));
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(400));
        assert_eq!(b.ceiling(39), MAX_BACKOFF);
        assert_eq!(b.ceiling(u32::MAX), MAX_BACKOFF);
        assert_eq!(backoff(Duration::MAX).ceiling(4), MAX_BACKOFF);
        assert!(backoff(Duration::MAX).delay(u32::MAX) <= MAX_BACKOFF);
        // A zero first wait still waits a little (and is not refused).
        assert_eq!(backoff(Duration::ZERO).min(), Duration::from_millis(1));
    }

    #[test]
    fn mlflow_error_codes_map_to_precise_errors() {
        let map = |status: u16, body: &str| {
            from_response(
                StatusCode::from_u16(status).unwrap_or_default(),
                body.as_bytes(),
            )
        };
        assert!(matches!(
            map(404, r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"Registered Model with name=x not found"}"#),
            RegistryError::NotFound(m) if m.contains("name=x not found")
        ));
        assert!(matches!(
            map(
                400,
                r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Registered model alias champ not found."}"#
            ),
            RegistryError::NotFound(_)
        ));
        assert!(matches!(
            map(
                400,
                r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Invalid value for version"}"#
            ),
            RegistryError::InvalidArgument(_)
        ));
        assert!(matches!(
            map(
                400,
                r#"{"error_code":"RESOURCE_ALREADY_EXISTS","message":"exists"}"#
            ),
            RegistryError::AlreadyExists(_)
        ));
        assert!(matches!(
            map(403, r#"{"error_code":"PERMISSION_DENIED","message":"no"}"#),
            RegistryError::PermissionDenied(_)
        ));
        assert!(matches!(
            map(
                429,
                r#"{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"slow down"}"#
            ),
            RegistryError::ResourceExhausted(_)
        ));
        assert!(matches!(
            map(500, r#"{"error_code":"INTERNAL_ERROR","message":"boom"}"#),
            RegistryError::Unavailable(_)
        ));
        assert!(matches!(
            map(502, "<html>bad gateway</html>"),
            RegistryError::Unavailable(_)
        ));
        assert!(matches!(map(401, ""), RegistryError::Unauthenticated(_)));
        assert!(matches!(
            map(
                404,
                r#"{"error_code":"ENDPOINT_NOT_FOUND","message":"no such route"}"#
            ),
            RegistryError::Unimplemented(_)
        ));
    }
}
