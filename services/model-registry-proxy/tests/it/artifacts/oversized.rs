//! An artifact larger than the whole cache is verified, served and not kept.

use crate::support::harness::{
    Harness, Spec, cache_files, fetch, model_name, register, resolve, sha256,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_larger_than_the_cache_is_served_and_not_kept() {
    let h = Harness::start_local(None, &|s| s.cache.max_bytes = 50_000).await;
    let name = model_name("big");
    let mut spec = Spec {
        padding: 200_000,
        ..Spec::default()
    };
    let (_, bytes) = register(&*h.registry, &name, spec.clone()).await;
    // The same bytes again, with a sha256 tag to verify.
    spec.tags.insert("sha256".into(), sha256(&bytes));
    register(&*h.registry, &name, spec).await;
    let mut client = h.client.clone();
    for version in [1, 2] {
        let uri = format!("models:/{name}/{version}");
        let resolved = resolve(&mut client, &uri).await.unwrap().version.unwrap();
        assert_eq!(resolved.sha256, sha256(&bytes));
        assert!(resolved.contract.is_some());
        let (header, got, _) = fetch(&mut client, &uri, 1000, 0).await.unwrap();
        assert_eq!(header.total_size_bytes, bytes.len() as i64);
        assert_eq!(got, bytes[1000..]);
    }
    let dirs = h.stop().await;
    let left = cache_files(&dirs);
    assert!(left.is_empty(), "nothing kept or left behind: {left:?}");
}
