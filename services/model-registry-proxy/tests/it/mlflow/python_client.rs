//! A model registered as users do it — `mlflow.onnx.log_model` of a scikit-learn model
//! converted by skl2onnx, contract in ONNX `metadata_props`, then
//! `MlflowClient().set_registered_model_alias` — is resolved and fetched through the proxy;
//! one logged with its tensors in ONNX external data is refused.

use std::time::Duration;

use crate::support::harness::{Harness, Kind, fetch, model_name, resolve, sha256};
use crate::support::venv::venv_bin;
use stockcast_model::metadata::metadata_props;
use stockcast_proto::stockcast::registry::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_logged_with_the_mlflow_client_is_resolved_and_fetched() {
    let url = stockcast_testkit::MLFLOW.require();
    let name = model_name("pyclient");
    let logged = log_with_python(&url, &name, &[]).await;
    let stored_sha = logged["sha256"].as_str().unwrap().to_owned();

    let h = Harness::start(Kind::Mlflow, Duration::ZERO).await;
    let mut client = h.client.clone();
    let uri = format!("models:/{name}@champion");
    let version = resolve(&mut client, &uri).await.unwrap().version.unwrap();
    assert_eq!(
        version.model.as_ref().unwrap().version,
        logged["version"].as_i64().unwrap()
    );
    assert_eq!(version.aliases, vec!["champion".to_owned()]);
    assert_eq!(version.format, pb::ArtifactFormat::MlflowOnnx as i32);
    assert_eq!(version.sha256, stored_sha, "the bytes MLflow stored");
    assert!(!version.run_id.is_empty());
    let contract = version.contract.expect("contract from metadata_props");
    assert_eq!(contract.feature_view, "daily");
    assert_eq!(contract.feature_view_version, 2);
    assert_eq!(contract.feature_names, vec!["ret_1", "rsi_14", "vol_20"]);
    assert_eq!(
        (contract.target.as_str(), contract.horizon_bars),
        ("log_return", 1)
    );

    let (header, bytes, _) = fetch(&mut client, &uri, 0, 0).await.unwrap();
    assert_eq!(header.sha256, stored_sha);
    assert_eq!(sha256(&bytes), stored_sha);
    let props = metadata_props(&bytes).expect("an ONNX model");
    assert_eq!(
        props.get("stockcast.target").map(String::as_str),
        Some("log_return")
    );
    h.stop().await;
}

/// Runs `tests/fixtures/log_onnx_model.py` for `name` (alias `champion`) with `extra`
/// arguments; returns the JSON line it prints.
async fn log_with_python(url: &str, name: &str, extra: &[&str]) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/log_onnx_model.py"
    );
    let python = venv_bin("python");
    let mut args = vec![
        script.to_owned(),
        url.to_owned(),
        name.to_owned(),
        "champion".to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new(python).args(args).output())
            .await
            .unwrap()
            .expect("run python");
    assert!(
        output.status.success(),
        "log_onnx_model.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_logged_with_external_data_is_refused() {
    let url = stockcast_testkit::MLFLOW.require();
    let name = model_name("pyexternal");
    let logged = log_with_python(&url, &name, &["external"]).await;
    let version = logged["version"].as_i64().unwrap();

    let h = Harness::start(Kind::Mlflow, Duration::ZERO).await;
    let mut client = h.client.clone();
    for uri in [
        format!("models:/{name}@champion"),
        format!("models:/{name}/{version}"),
    ] {
        let refused = resolve(&mut client, &uri).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused
                .message()
                .contains(&format!("models:/{name}/{version}")),
            "{refused:?}"
        );
        assert!(
            refused.message().contains("save_as_external_data=False"),
            "{refused:?}"
        );
        let refused = fetch(&mut client, &uri, 0, 0).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
    h.stop().await;
}
