//! Cases: every URI form resolves; artifacts stream checksummed, resume, and corrupted bytes
//! are refused.

use stockcast_model_registry_proxy::registry::ArtifactFormat;
use stockcast_proto::stockcast::registry::v1 as pb;
use tonic::Code;

use super::{NO_POLL, resolve};
use crate::support::harness::{
    Harness, Kind, Spec, contract, fetch, model_name, register, set, sha256,
};

pub async fn resolves_every_uri_form(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    let name = model_name("uris");
    let (v1, bytes1) = register(
        &*h.registry,
        &name,
        Spec {
            onnx_contract: None,
            tag_contract: Some(contract("from-tags")),
            ..Spec::default()
        },
    )
    .await;
    let (v2, bytes2) = register(
        &*h.registry,
        &name,
        Spec {
            format: ArtifactFormat::MlflowOnnx,
            ..Spec::default()
        },
    )
    .await;
    assert_eq!((v1.version, v2.version), (1, 2));
    h.registry
        .transition_stage(&name, 1, "Production")
        .await
        .unwrap();
    let mut client = h.client.clone();
    client
        .set_alias(set(&name, "champion", 1, "first model"))
        .await
        .unwrap();

    let pinned = resolve(&h, &format!("models:/{name}/1")).await.unwrap();
    assert_eq!(pinned.model.as_ref().unwrap().version, 1);
    assert_eq!(pinned.sha256, sha256(&bytes1));
    assert_eq!(pinned.size_bytes, bytes1.len() as i64);
    assert_eq!(pinned.format, pb::ArtifactFormat::OnnxFile as i32);
    assert_eq!(pinned.stage, "Production");
    assert_eq!(pinned.aliases, vec!["champion".to_owned()]);
    let c = pinned.contract.expect("contract from version tags");
    assert_eq!(c.feature_view, "from-tags");
    assert_eq!(c.feature_names, vec!["ret_1", "rsi_14", "vol_20"]);
    assert_eq!((c.feature_view_version, c.horizon_bars), (3, 5));
    assert_eq!(c.target, "log_return");

    let by_alias = resolve(&h, &format!("models:/{name}@champion"))
        .await
        .unwrap();
    assert_eq!(by_alias.model.unwrap().version, 1);
    let latest = resolve(&h, &format!("models:/{name}/latest"))
        .await
        .unwrap();
    assert_eq!(latest.model.unwrap().version, 2);
    assert_eq!(latest.format, pb::ArtifactFormat::MlflowOnnx as i32);
    assert_eq!(latest.sha256, sha256(&bytes2));
    assert_eq!(
        latest
            .contract
            .expect("contract from ONNX metadata")
            .feature_view,
        "default"
    );
    let staged = resolve(&h, &format!("models:/{name}/production"))
        .await
        .unwrap();
    assert_eq!(staged.model.unwrap().version, 1);
    let missing = resolve(&h, &format!("models:/{name}/Staging"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert!(missing.message().contains("Staging"), "{missing:?}");
    h.stop().await;
}

pub async fn fetch_streams_checksummed_chunks_and_resumes(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    let name = model_name("fetch");
    let (_, bytes) = register(
        &*h.registry,
        &name,
        Spec {
            format: ArtifactFormat::MlflowOnnx,
            padding: 300_000,
            ..Spec::default()
        },
    )
    .await;
    let mut client = h.client.clone();
    let uri = format!("models:/{name}/1");
    let (header, got, chunks) = fetch(&mut client, &uri, 0, 64 * 1024).await.unwrap();
    assert_eq!(got, bytes);
    assert_eq!(header.sha256, sha256(&bytes));
    assert_eq!(header.total_size_bytes, bytes.len() as i64);
    assert!(!header.served_from_cache);
    assert_eq!(chunks, bytes.len().div_ceil(64 * 1024));
    assert_eq!(
        header.version.unwrap().format,
        pb::ArtifactFormat::MlflowOnnx as i32
    );

    let (_, tail, _) = fetch(&mut client, &uri, 100_000, 0).await.unwrap();
    assert_eq!(tail, bytes[100_000..]);
    let (_, empty, chunks) = fetch(&mut client, &uri, bytes.len() as i64, 0)
        .await
        .unwrap();
    assert!(empty.is_empty() && chunks == 0);

    let too_far = fetch(&mut client, &uri, bytes.len() as i64 + 1, 0)
        .await
        .unwrap_err();
    assert_eq!(too_far.code(), Code::InvalidArgument);
    assert!(too_far.message().contains("offset"), "{too_far:?}");
    let small = fetch(&mut client, &uri, 0, 10).await.unwrap_err();
    assert_eq!(small.code(), Code::InvalidArgument);
    assert!(small.message().contains("chunk_size_bytes 10"), "{small:?}");
    h.stop().await;
}

pub async fn a_corrupted_artifact_is_refused(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    let name = model_name("corrupt");
    let wrong = sha256(b"some other bytes");
    let mut spec = Spec::default();
    spec.tags.insert("sha256".to_owned(), wrong.clone());
    register(&*h.registry, &name, spec).await;
    // A version whose tag is right is served.
    let (_, good) = register(&*h.registry, &name, Spec::default()).await;
    h.registry
        .set_version_tag(&name, 2, "sha256", &sha256(&good))
        .await
        .unwrap();

    let mut client = h.client.clone();
    let refused = resolve(&h, &format!("models:/{name}/1")).await.unwrap_err();
    assert_eq!(refused.code(), Code::DataLoss, "{refused:?}");
    assert!(
        refused.message().contains("does not match the sha256 tag")
            && refused.message().contains(&wrong),
        "{refused:?}"
    );
    let refused = fetch(&mut client, &format!("models:/{name}/1"), 0, 0)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::DataLoss, "{refused:?}");
    let (header, bytes, _) = fetch(&mut client, &format!("models:/{name}/2"), 0, 0)
        .await
        .unwrap();
    assert_eq!(bytes, good);
    assert_eq!(header.sha256, sha256(&good));
    h.stop().await;
}
