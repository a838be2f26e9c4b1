//! `stockcast train` as users run it, against the feature store of a running demo: the demo's
//! own champion, a model trained and registered in a local directory and in a real MLflow
//! server, the errors for bad input; and a model logged by MLflow's Python client, fetched
//! from MLflow as the registry proxy fetches it, runs through libs/model like onnxruntime.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use futures::StreamExt as _;
use stockcast_model::Model;
use stockcast_model_registry_proxy::registry::{
    LocalRegistry, MlflowRegistry, MlflowSettings, Registry,
};
use stockcast_testkit::process::ChildGuard;

/// A demo that has generated its history and trained its champion, its files in `dir`, and
/// its feature store's address.
fn demo(dir: &Path) -> (ChildGuard, String) {
    let mut command = super::stockcast();
    command
        .args([
            "demo",
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .arg("--keep-data")
        .arg(dir)
        .env("NO_COLOR", "1");
    let mut demo = ChildGuard::spawn("demo", command);
    let line = demo.wait_for_line(
        "stockcast::demo: serving service=\"feature-store\"",
        Duration::from_secs(120),
    );
    let at = line.find("grpc=").unwrap() + 5;
    let feature_store = line[at..].split_whitespace().next().unwrap().to_owned();
    demo.wait_for_line(
        "trained and registered the demo model",
        Duration::from_secs(180),
    );
    (demo, feature_store)
}

fn train(args: &[&str]) -> Output {
    super::stockcast()
        .arg("train")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn version_bytes(
    registry: &dyn Registry,
    name: &str,
    alias: &str,
) -> (Vec<u8>, BTreeMap<String, String>) {
    let version = registry.version_by_alias(name, alias).await.unwrap();
    let mut body = registry.open_artifact(&version).await.unwrap().body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    (bytes, version.tags)
}

fn check_registered(bytes: &[u8], tags: &BTreeMap<String, String>, algorithm: &str) {
    let model = Model::load(bytes).unwrap();
    assert_eq!(model.contract().feature_view, "default");
    assert_eq!(model.contract().feature_names.len(), 16);
    assert_eq!(tags["stockcast.train.algorithm"], algorithm);
    assert_eq!(tags["stockcast.feature_view"], "default");
    let metrics: serde_json::Value =
        serde_json::from_str(&tags["stockcast.train.metrics"]).unwrap();
    for who in ["model", "zero", "momentum"] {
        assert!(metrics[who]["rmse"].as_f64().unwrap() > 0.0, "{metrics}");
    }
    assert!(tags.contains_key("stockcast.train.fold.1"));
    assert!(tags.contains_key("stockcast.baseline.rsi_14"));
    use sha2::Digest as _;
    assert_eq!(tags["sha256"], format!("{:x}", sha2::Sha256::digest(bytes)));
    let out = model.run(&[0.0f32; 16 * 3]).unwrap();
    assert_eq!(out.values.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn train_registers_models_locally_and_in_mlflow_and_names_bad_input() {
    let mlflow = stockcast_testkit::MLFLOW.require();
    let dir = tempfile::tempdir().unwrap();
    let (_demo, feature_store) = demo(&dir.path().join("demo"));
    let fs = feature_store.as_str();

    // the demo's own champion
    let local = LocalRegistry::open(
        dir.path().join("demo/models"),
        stockcast_runtime::clock::system(),
    )
    .await
    .unwrap();
    let (bytes, tags) = version_bytes(&local, "daily-return", "champion").await;
    check_registered(&bytes, &tags, "gbt");

    // ridge into a file and a local registry
    let file = dir.path().join("ridge.onnx");
    let registry = dir.path().join("registry");
    let out = train(&[
        "--feature-store",
        fs,
        "--symbols",
        "DEMO.A,DEMO.B,DEMO.C",
        "--model",
        "ridge",
        "--horizon",
        "5",
        "--folds",
        "3",
        "--output",
        file.to_str().unwrap(),
        "--name",
        "ridge-5",
        "--registry-dir",
        registry.to_str().unwrap(),
        "--alias",
        "champion",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("registered ridge-5 version 1"),
        "{}",
        text(&out)
    );
    let local = LocalRegistry::open(&registry, stockcast_runtime::clock::system())
        .await
        .unwrap();
    let (bytes, tags) = version_bytes(&local, "ridge-5", "champion").await;
    assert_eq!(bytes, std::fs::read(&file).unwrap());
    check_registered(&bytes, &tags, "ridge");
    assert_eq!(tags["stockcast.horizon_bars"], "5");

    // boosted trees into MLflow
    let name = stockcast_testkit::unique("train");
    let out = train(&[
        "--feature-store",
        fs,
        "--symbols",
        "DEMO.D,DEMO.E",
        "--trees",
        "30",
        "--name",
        &name,
        "--mlflow",
        &mlflow,
        "--alias",
        "champion",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let registry = MlflowRegistry::new(&MlflowSettings {
        tracking_uri: mlflow.clone(),
        ..MlflowSettings::default()
    })
    .unwrap();
    let (bytes, tags) = version_bytes(&registry, &name, "champion").await;
    check_registered(&bytes, &tags, "gbt");

    // bad input, each named
    let cases: [(&[&str], &str); 4] = [
        (&["--view", "nope"], "feature view \"nope\""),
        (&["--horizon", "0"], "--horizon 0 must be at least 1 bar"),
        (&["--folds", "400"], "too few for 400 folds"),
        (&["--symbols", "NOPE"], "no usable rows"),
    ];
    for (args, want) in cases {
        let mut all = vec!["--feature-store", fs, "--output", "/dev/null"];
        if !args.contains(&"--symbols") {
            all.extend(["--symbols", "DEMO.A"]);
        }
        all.extend(args);
        let out = train(&all);
        assert!(
            !out.status.success() && text(&out).contains(want),
            "{args:?}: {}",
            text(&out)
        );
    }
}

/// Logs a scikit-learn pipeline (StandardScaler, GradientBoostingRegressor) with MLflow's
/// own Python client as the ONNX flavor, and writes inputs and onnxruntime's outputs.
const LOG_WITH_MLFLOW: &str = r#"
import sys, json, numpy as np, mlflow, onnx
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.ensemble import GradientBoostingRegressor
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
import onnxruntime as ort
url, name, out = sys.argv[1:4]
rng = np.random.default_rng(3)
x = rng.normal(size=(400, 4)).astype(np.float32)
y = x[:, 0] - 0.5 * x[:, 1] ** 2 + rng.normal(scale=0.1, size=400)
model = make_pipeline(StandardScaler(), GradientBoostingRegressor(n_estimators=20, max_depth=3)).fit(x, y)
onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, 4]))], target_opset={"": 17, "ai.onnx.ml": 3})
onnx.helper.set_model_props(onx, {"stockcast.feature_view": "default", "stockcast.feature_view_version": "1",
    "stockcast.feature_names": "a,b,c,d", "stockcast.target": "log_return", "stockcast.horizon_bars": "1"})
mlflow.set_tracking_uri(url)
with mlflow.start_run():
    mlflow.onnx.log_model(onx, name="model", registered_model_name=name, save_as_external_data=False)
    mlflow.sklearn.log_model(model, name="sklearn", serialization_format="cloudpickle")
probe = rng.normal(size=(64, 4)).astype(np.float32)
session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
want = session.run(None, {"features": probe})[0].ravel()
json.dump({"x": probe.ravel().tolist(), "y": want.tolist()}, open(out, "w"))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_model_logged_by_the_mlflow_python_client_runs_like_onnxruntime() {
    let mlflow = stockcast_testkit::MLFLOW.require();
    let python = std::env::var("STOCKCAST_PYTHON")
        .unwrap_or_else(|_| "/root/.cache/stockcast/venv/bin/python".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("probe.json");
    let name = stockcast_testkit::unique("pylogged");
    let logged = std::process::Command::new(&python)
        .args(["-c", LOG_WITH_MLFLOW, &mlflow, &name])
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}); set STOCKCAST_PYTHON"));
    assert!(
        logged.status.success(),
        "logging with MLflow's Python client failed (pip install mlflow scikit-learn skl2onnx onnxruntime into {python}): {}",
        text(&logged)
    );
    let registry = MlflowRegistry::new(&MlflowSettings {
        tracking_uri: mlflow,
        ..MlflowSettings::default()
    })
    .unwrap();
    registry.set_alias(&name, "champion", 1).await.unwrap();
    let (bytes, _) = version_bytes(&registry, &name, "champion").await;
    let model = Model::load(&bytes).unwrap();
    let probe: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let (x, want) = (floats(&probe["x"]), floats(&probe["y"]));
    let got = model.run(&x).unwrap().values;
    assert_eq!(got.len(), want.len());
    for (r, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(0.1),
            "row {r}: {g} vs onnxruntime {w}"
        );
    }
}
