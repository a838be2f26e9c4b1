//! The `sha256` version tag: 64 hex digits in any case, optionally prefixed `sha256:`; any
//! other value is refused with a message naming it.

use crate::support::harness::{Harness, Spec, fetch, model_name, register, resolve, sha256};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_tags_are_verified_and_malformed_tags_are_refused() {
    let h = Harness::start_local(None, &|_| {}).await;
    let name = model_name("sha-tags");
    let (_, bytes) = register(&*h.registry, &name, Spec::default()).await;
    let digest = sha256(&bytes);
    for (version, tag) in [
        (1, format!("sha256:{digest}")),
        (2, format!("SHA256:{}", digest.to_uppercase())),
        (3, "sha256:1234".to_owned()),
        (4, format!("{digest}0")),
    ] {
        if version > 1 {
            register(&*h.registry, &name, Spec::default()).await;
        }
        h.registry
            .set_version_tag(&name, version, "sha256", &tag)
            .await
            .unwrap();
    }
    let mut client = h.client.clone();
    for version in [1, 2] {
        let uri = format!("models:/{name}/{version}");
        let resolved = resolve(&mut client, &uri).await.unwrap().version.unwrap();
        assert_eq!(resolved.sha256, digest);
        let (header, got, _) = fetch(&mut client, &uri, 0, 0).await.unwrap();
        assert_eq!((header.sha256, got), (digest.clone(), bytes.clone()));
    }
    for (version, tag) in [(3, "sha256:1234".to_owned()), (4, format!("{digest}0"))] {
        let uri = format!("models:/{name}/{version}");
        let refused = resolve(&mut client, &uri).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused.message().contains(&format!("{tag:?}")) && refused.message().contains(&uri),
            "{refused:?}"
        );
    }
    h.stop().await;
}
