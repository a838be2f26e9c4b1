//! The MLflow client against a local HTTP server that fails on purpose: idempotent calls
//! are retried, others are not, the circuit breaker opens after consecutive failures and
//! refuses calls without sending them, deadlines hold, and error bodies map to precise errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::harness::mlflow_settings;
use axum::http::StatusCode;
use axum::routing::{get, post};
use stockcast_model_registry_proxy::registry::{MlflowRegistry, Registry, RegistryError};

#[derive(Clone, Default)]
struct Calls {
    get: Arc<AtomicUsize>,
    create: Arc<AtomicUsize>,
}

/// `registered-models/get` fails with 503 for the first `failures` calls, then answers;
/// `registered-models/create` always fails with 503; `model-versions/get` never answers in
/// time; `registered-models/alias` answers MLflow's not-found error.
async fn flaky_mlflow(failures: usize) -> (String, Calls) {
    let calls = Calls::default();
    let (get_calls, create_calls) = (calls.get.clone(), calls.create.clone());
    let app = axum::Router::new()
        .route(
            "/api/2.0/mlflow/registered-models/get",
            get(move || {
                let n = get_calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < failures {
                        (StatusCode::SERVICE_UNAVAILABLE, "busy".to_owned())
                    } else {
                        (
                            StatusCode::OK,
                            r#"{"registered_model":{"name":"m","latest_versions":[{"version":"2"}],
                                "aliases":[{"alias":"champion","version":"2"}]}}"#
                                .to_owned(),
                        )
                    }
                }
            }),
        )
        .route(
            "/api/2.0/mlflow/registered-models/create",
            post(move || {
                create_calls.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::INTERNAL_SERVER_ERROR, r#"{"error_code":"INTERNAL_ERROR","message":"db locked"}"#) }
            }),
        )
        .route(
            "/api/2.0/mlflow/model-versions/get",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "{}"
            }),
        )
        .route(
            "/api/2.0/mlflow/registered-models/alias",
            get(|| async {
                (
                    StatusCode::BAD_REQUEST,
                    r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Registered model alias nope not found."}"#,
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), calls)
}

fn client(url: &str, retries: u32, breaker_failures: u32) -> MlflowRegistry {
    let mut settings = mlflow_settings(url);
    settings.retries = retries;
    settings.retry_backoff_ms = 1;
    settings.breaker_failures = breaker_failures;
    settings.breaker_cooldown_ms = 3_600_000;
    settings.request_timeout_ms = 300;
    MlflowRegistry::new(&settings).unwrap()
}

#[tokio::test]
async fn idempotent_calls_are_retried_and_others_are_not() {
    let (url, calls) = flaky_mlflow(2).await;
    let mlflow = client(&url, 2, 100);
    let model = mlflow.get_model("m").await.unwrap();
    assert_eq!(model.aliases.get("champion"), Some(&2));
    assert_eq!(model.latest_version, 2);
    assert_eq!(
        calls.get.load(Ordering::SeqCst),
        3,
        "two failures, then the answer"
    );

    let error = mlflow.create_model("m", "").await.unwrap_err();
    assert!(
        matches!(&error, RegistryError::Unavailable(m) if m.contains("db locked")),
        "{error}"
    );
    assert_eq!(
        calls.create.load(Ordering::SeqCst),
        1,
        "a create is not repeated"
    );
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures() {
    let (url, calls) = flaky_mlflow(usize::MAX).await;
    let mlflow = client(&url, 2, 3);
    let error = mlflow.get_model("m").await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert_eq!(calls.get.load(Ordering::SeqCst), 3);
    let refused = mlflow.get_model("m").await.unwrap_err();
    assert!(
        refused.to_string().contains("circuit open after 3"),
        "{refused}"
    );
    assert_eq!(calls.get.load(Ordering::SeqCst), 3, "not sent while open");
}

#[tokio::test]
async fn deadlines_and_error_bodies() {
    let (url, _) = flaky_mlflow(0).await;
    let mlflow = client(&url, 0, 100);
    let slow = mlflow.get_version("m", 1).await.unwrap_err();
    assert!(
        matches!(&slow, RegistryError::Unavailable(m) if m.contains("timed out")),
        "{slow}"
    );
    let missing = mlflow.version_by_alias("m", "nope").await.unwrap_err();
    // In the project's words, naming the model (MLflow's text names neither).
    assert_eq!(
        missing,
        RegistryError::NotFound("model \"m\" has no alias \"nope\"".to_owned())
    );
    // Nothing listens on port 1.
    let down = client("http://127.0.0.1:1", 0, 100)
        .ping()
        .await
        .unwrap_err();
    assert!(
        matches!(&down, RegistryError::Unavailable(m) if m.contains("cannot connect")),
        "{down}"
    );
}
