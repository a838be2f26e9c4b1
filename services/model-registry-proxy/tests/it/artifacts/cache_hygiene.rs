//! The artifact cache keeps only models it could read.

use crate::support::harness::{Harness, cache_files, model_name, resolve};
use bytes::Bytes;
use stockcast_model_registry_proxy::registry::{ArtifactFormat, NewVersion};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_onnx_are_refused_and_not_kept() {
    let h = Harness::start_local(None, &|_| {}).await;
    let name = model_name("not-onnx");
    h.registry.create_model(&name, "test model").await.unwrap();
    h.registry
        .create_version(
            &name,
            NewVersion {
                format: ArtifactFormat::OnnxFile,
                onnx: Bytes::from_static(b"these bytes are not an ONNX model"),
                tags: Default::default(),
                description: "registered by a test".to_owned(),
            },
        )
        .await
        .unwrap();
    let mut client = h.client.clone();
    let uri = format!("models:/{name}/1");
    for _ in 0..2 {
        let refused = resolve(&mut client, &uri).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains(&uri), "{refused:?}");
    }
    let dirs = h.stop().await;
    let left = cache_files(&dirs);
    assert!(
        left.is_empty(),
        "the unreadable artifact is not kept: {left:?}"
    );
    let index = std::fs::read_to_string(dirs.path().join("cache/index.json")).unwrap_or_default();
    assert!(!index.contains("\"version\":1"), "{index}");
}
