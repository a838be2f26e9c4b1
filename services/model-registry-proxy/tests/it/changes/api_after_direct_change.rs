//! An alias moved directly in the registry just before a change through the API is recorded
//! first (as detected), so the audit log and the model events show both moves in order.

use crate::support::harness::{Harness, Spec, as_actor, audit_of, model_name, register};
use stockcast_proto::stockcast::events::v1::ChangeOrigin;
use stockcast_proto::stockcast::registry::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_change_is_recorded_before_the_api_change() {
    let h = Harness::start_local(None, &|_| {}).await;
    let name = model_name("direct-then-api");
    for _ in 0..3 {
        register(&*h.registry, &name, Spec::default()).await;
    }
    // Moved in the registry (as with MlflowClient), not through the proxy; no poll runs.
    h.registry.set_alias(&name, "champion", 1).await.unwrap();
    h.registry.set_alias(&name, "challenger", 2).await.unwrap();

    let mut client = h.client.clone();
    client
        .set_alias(as_actor(
            "alice",
            pb::SetAliasRequest {
                name: name.clone(),
                alias: "champion".into(),
                version: 3,
                reason: "promote 3".into(),
                expected_current_version: Some(1),
            },
        ))
        .await
        .unwrap();

    let mut log = audit_of(&mut client, &name).await;
    log.reverse(); // oldest first
    let got: Vec<_> = log
        .iter()
        .map(|e| {
            (
                e.actor.as_str(),
                e.alias.as_str(),
                e.from_version,
                e.to_version,
                e.origin,
            )
        })
        .collect();
    let detected = ChangeOrigin::MlflowPoll as i32;
    assert_eq!(
        got,
        vec![
            ("mlflow", "challenger", 0, 2, detected),
            ("mlflow", "champion", 0, 1, detected),
            ("alice", "champion", 1, 3, ChangeOrigin::Api as i32),
        ]
    );
    h.stop().await;
}
