//! An alias moved in MLflow is recorded through MLflow's registry webhook, with polling off.
//! The test runs its own MLflow server, allowed to deliver to plain HTTP on loopback.

use std::sync::Arc;
use std::time::Duration;

use crate::support::harness::{Harness, Kind, mlflow_settings, model_name};
use crate::support::venv::OwnMlflow;
use stockcast_model_registry_proxy::registry::{MlflowRegistry, Registry};
use stockcast_proto::stockcast::events::v1::ChangeOrigin;
use stockcast_runtime::Secret;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_moved_in_mlflow_arrives_through_its_webhook() {
    let mlflow = OwnMlflow::start_with_env(&[
        ("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https"),
        ("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true"),
    ])
    .await;
    let registry: Arc<dyn Registry> =
        Arc::new(MlflowRegistry::new(&mlflow_settings(&mlflow.url)).unwrap());
    let port = stockcast_testkit::free_port();
    let secret = "webhook-secret";
    let h = Harness::start_with_bus(
        Kind::Mlflow,
        registry,
        None,
        Duration::ZERO, // no polling: only the webhook can report the change
        tempfile::tempdir().unwrap(),
        &|settings| {
            settings.webhook.listen_addr = Some(([127, 0, 0, 1], port).into());
            settings.webhook.secret = Secret::new(secret);
        },
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/mlflow/webhook");
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/api/2.0/mlflow/webhooks", mlflow.url))
        .json(&serde_json::json!({
            "name": "stockcast-registry-proxy",
            "url": url,
            "secret": secret,
            "events": [
                {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"},
                {"entity": "MODEL_VERSION_ALIAS", "action": "DELETED"},
            ],
        }))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text().await);

    let name = model_name("webhook");
    crate::support::cases::alias_moves_in_the_registry_are_reported(
        &h,
        &name,
        ChangeOrigin::MlflowWebhook,
    )
    .await;

    // A delivery that MLflow did not sign is refused.
    let forged = http
        .post(&url)
        .header("x-mlflow-delivery-id", "d")
        .header(
            "x-mlflow-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("x-mlflow-signature", "v1,AAAA")
        .body(format!(
            r#"{{"entity":"model_version_alias","data":{{"name":"{name}"}}}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert!(forged.text().await.unwrap().contains("does not match"));
    h.stop().await;
}
