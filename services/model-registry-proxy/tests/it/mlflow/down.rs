//! MLflow stopped mid-test: the proxy keeps serving the resolutions and artifacts it has,
//! marked as cached, and says UNAVAILABLE for what it never saw. The test runs its own
//! MLflow server (from the venv of `scripts/deps.sh up mlflow`) so that it can kill it.

use std::sync::Arc;
use std::time::Duration;

use crate::support::harness::{
    Harness, Kind, Spec, fetch, mlflow_settings, model_name, register, resolve, sha256,
};
use crate::support::venv::OwnMlflow;
use stockcast_model_registry_proxy::registry::{ArtifactFormat, MlflowRegistry, Registry};
use stockcast_proto::stockcast::registry::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_resolutions_and_artifacts_are_served_while_mlflow_is_down() {
    let mut mlflow = OwnMlflow::start().await;
    let registry: Arc<dyn Registry> =
        Arc::new(MlflowRegistry::new(&mlflow_settings(&mlflow.url)).unwrap());
    let dirs = tempfile::tempdir().unwrap();
    let h = Harness::start_on(Kind::Mlflow, registry.clone(), Duration::ZERO, dirs).await;
    let name = model_name("down");
    let (_, bytes) = register(
        &*h.registry,
        &name,
        Spec {
            format: ArtifactFormat::MlflowOnnx,
            padding: 200_000,
            ..Spec::default()
        },
    )
    .await;
    register(&*h.registry, &name, Spec::default()).await;
    let mut client = h.client.clone();
    client
        .set_alias(pb::SetAliasRequest {
            name: name.clone(),
            alias: "champion".into(),
            version: 1,
            reason: "before the outage".into(),
            expected_current_version: None,
        })
        .await
        .unwrap();
    let uri = format!("models:/{name}@champion");
    let fresh = resolve(&mut client, &uri).await.unwrap();
    assert!(!fresh.served_from_cache && fresh.cached_at.is_none());
    let (header, got, _) = fetch(&mut client, &uri, 0, 0).await.unwrap();
    assert!(!header.served_from_cache);
    assert_eq!(got, bytes);

    mlflow.kill();

    let cached = resolve(&mut client, &uri).await.unwrap();
    assert!(cached.served_from_cache, "marked as served from cache");
    assert!(cached.cached_at.is_some());
    let version = cached.version.unwrap();
    assert_eq!(version.model.unwrap().version, 1);
    assert_eq!(version.sha256, sha256(&bytes));
    assert_eq!(version.contract.unwrap().feature_view, "default");
    let (header, got, _) = fetch(&mut client, &uri, 0, 32 * 1024).await.unwrap();
    assert!(
        header.served_from_cache,
        "the artifact comes from the cache"
    );
    assert_eq!(header.sha256, sha256(&bytes));
    assert_eq!(got, bytes);
    // A resume from an offset works from the cache too.
    let (_, tail, _) = fetch(&mut client, &uri, 150_000, 0).await.unwrap();
    assert_eq!(tail, bytes[150_000..]);

    // What the proxy never resolved cannot be made up.
    let unknown = resolve(&mut client, &format!("models:/{name}/2"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unavailable, "{unknown:?}");
    let promote = client
        .set_alias(pb::SetAliasRequest {
            name: name.clone(),
            alias: "champion".into(),
            version: 2,
            reason: "during the outage".into(),
            expected_current_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(promote.code(), Code::Unavailable, "{promote:?}");
    let listed = client
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(listed.code(), Code::Unavailable, "{listed:?}");

    // A proxy restarted during the outage still serves pinned versions it has cached.
    let dirs = h.stop().await;
    let h = Harness::start_on(Kind::Mlflow, registry, Duration::ZERO, dirs).await;
    let mut client = h.client.clone();
    let pinned = format!("models:/{name}/1");
    let cached = resolve(&mut client, &pinned).await.unwrap();
    assert!(cached.served_from_cache);
    let version = cached.version.unwrap();
    assert_eq!(version.sha256, sha256(&bytes));
    assert_eq!(version.contract.unwrap().feature_view, "default");
    let (header, got, _) = fetch(&mut client, &pinned, 0, 0).await.unwrap();
    assert!(header.served_from_cache);
    assert_eq!(got, bytes);
    let alias = resolve(&mut client, &uri).await.unwrap_err();
    assert_eq!(
        alias.code(),
        Code::Unavailable,
        "an alias needs the registry: {alias:?}"
    );
    h.stop().await;
}
