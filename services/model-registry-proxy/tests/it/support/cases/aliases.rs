//! Cases: promotions are audited and published; watches; alias changes made in the
//! registry directly are detected.

use std::time::Duration;

use stockcast_proto::stockcast::events::v1::{ChangeOrigin, ModelEvent, ModelEventKind};
use stockcast_proto::stockcast::registry::v1 as pb;
use tonic::Code;

use super::{NO_POLL, resolve};
use crate::support::harness::{
    Harness, Kind, Spec, as_actor, audit_of, model_name, next_event, register, set, sha256,
};

pub async fn promotions_are_audited_and_published(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    let name = model_name("promote");
    register(&*h.registry, &name, Spec::default()).await;
    let (_, v2) = register(&*h.registry, &name, Spec::default()).await;
    let mut events = h.events().await;
    let mut client = h.client.clone();

    let first = client
        .set_alias(as_actor(
            "alice",
            set(&name, "champion", 1, "passed backtest"),
        ))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!((first.from_version, first.to_version), (0, 1));
    // Resolve v2 so its checksum is known when it is promoted.
    resolve(&h, &format!("models:/{name}/2")).await.unwrap();
    let mut cas = set(&name, "champion", 2, "better sharpe");
    cas.expected_current_version = Some(1);
    let second = client
        .set_alias(as_actor("bob", cas.clone()))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!((second.from_version, second.to_version), (1, 2));
    assert!(second.id > first.id);
    let refused = client.set_alias(as_actor("bob", cas)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("points at version 2, expected version 1"),
        "{refused:?}"
    );
    let resolved = resolve(&h, &format!("models:/{name}@champion"))
        .await
        .unwrap();
    assert_eq!(
        resolved.model.unwrap().version,
        2,
        "the move is seen at once"
    );
    let deleted = client
        .delete_alias(as_actor(
            "carol",
            pb::DeleteAliasRequest {
                name: name.clone(),
                alias: "champion".into(),
                reason: "rollback drill".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!((deleted.from_version, deleted.to_version), (2, 0));
    let gone = resolve(&h, &format!("models:/{name}@champion"))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");

    let log = client
        .list_audit_log(pb::ListAuditLogRequest {
            model_name: name.clone(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let summary: Vec<_> = log
        .entries
        .iter()
        .map(|e| {
            (
                e.actor.as_str(),
                e.from_version,
                e.to_version,
                e.reason.as_str(),
                e.kind,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "carol",
                2,
                0,
                "rollback drill",
                ModelEventKind::AliasDeleted as i32
            ),
            (
                "bob",
                1,
                2,
                "better sharpe",
                ModelEventKind::AliasSet as i32
            ),
        ]
    );
    assert!(
        log.entries
            .iter()
            .all(|e| e.origin == ChangeOrigin::Api as i32)
    );
    assert!(!log.next_page_token.is_empty());
    let rest = client
        .list_audit_log(pb::ListAuditLogRequest {
            model_name: name.clone(),
            page_size: 2,
            page_token: log.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries.len(), 1);
    assert_eq!(rest.entries[0].actor, "alice");
    assert!(rest.next_page_token.is_empty());
    let by_actor = client
        .list_audit_log(pb::ListAuditLogRequest {
            actor: "bob".into(),
            model_name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_actor.entries.len(), 1);

    let published = [
        next_event(&mut *events, &name).await,
        next_event(&mut *events, &name).await,
        next_event(&mut *events, &name).await,
    ];
    let kinds: Vec<_> = published
        .iter()
        .map(|e| (e.kind, e.from_version, e.to_version))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ModelEventKind::AliasSet as i32, 0, 1),
            (ModelEventKind::AliasSet as i32, 1, 2),
            (ModelEventKind::AliasDeleted as i32, 2, 0),
        ]
    );
    assert_eq!(published[1].actor, "bob");
    assert_eq!(published[1].reason, "better sharpe");
    assert_eq!(published[1].alias, "champion");
    assert_eq!(published[1].audit_id, second.id);
    assert_eq!(published[1].origin, ChangeOrigin::Api as i32);
    assert_eq!(
        published[1].sha256,
        sha256(&v2),
        "the promoted version's checksum"
    );
    assert!(uuid::Uuid::parse_str(&published[0].event_id).is_ok());
    assert_ne!(published[0].event_id, published[1].event_id);
    h.stop().await;
}

pub async fn watch_sends_a_snapshot_then_changes(kind: Kind) {
    use pb::watch_aliases_response::Payload;
    let h = Harness::start(kind, NO_POLL).await;
    let name = model_name("watch");
    register(&*h.registry, &name, Spec::default()).await;
    register(&*h.registry, &name, Spec::default()).await;
    let mut client = h.client.clone();
    client
        .set_alias(set(&name, "champion", 1, "first"))
        .await
        .unwrap();
    let mut stream = client
        .watch_aliases(pb::WatchAliasesRequest {
            model_names: vec![name.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Payload::Snapshot(snapshot)) = stream.message().await.unwrap().unwrap().payload else {
        panic!("the first message is not a snapshot");
    };
    let aliases: Vec<_> = snapshot
        .aliases
        .iter()
        .map(|a| (a.model_name.as_str(), a.alias.as_str(), a.version))
        .collect();
    assert_eq!(aliases, vec![(name.as_str(), "champion", 1)]);
    client
        .set_alias(set(&name, "challenger", 2, "shadow"))
        .await
        .unwrap();
    let Some(Payload::Event(event)) = stream.message().await.unwrap().unwrap().payload else {
        panic!("not an event");
    };
    assert_eq!((event.alias.as_str(), event.to_version), ("challenger", 2));
    assert_eq!(event.model_name, name);
    h.stop().await;
}

pub async fn an_alias_moved_in_the_registry_is_detected_by_polling(kind: Kind) {
    let h = Harness::start(kind, Duration::from_millis(300)).await;
    let name = model_name("poll");
    let deleted =
        alias_moves_in_the_registry_are_reported(&h, &name, ChangeOrigin::MlflowPoll).await;
    let mut client = h.client.clone();
    let log = audit_of(&mut client, &name).await;
    assert_eq!(log.len(), 3);
    assert!(
        log.iter()
            .all(|e| e.actor == "mlflow" && e.origin == ChangeOrigin::MlflowPoll as i32)
    );
    assert_eq!(log[0].id, deleted.audit_id);
    h.stop().await;
}

/// Registers two versions of `name`, then, behind the proxy's back (as a data scientist does
/// in MLflow), points `champion` at 1, moves it to 2 and deletes it; each change must be
/// published with `origin` and actor `mlflow`. Returns the deletion event.
pub async fn alias_moves_in_the_registry_are_reported(
    h: &Harness,
    name: &str,
    origin: ChangeOrigin,
) -> ModelEvent {
    register(&*h.registry, name, Spec::default()).await;
    register(&*h.registry, name, Spec::default()).await;
    let mut events = h.events().await;
    let mut seen = Vec::new();
    for (version, kind) in [
        (1, ModelEventKind::AliasSet),
        (2, ModelEventKind::AliasSet),
        (0, ModelEventKind::AliasDeleted),
    ] {
        if version == 0 {
            h.registry.delete_alias(name, "champion").await.unwrap();
        } else {
            h.registry
                .set_alias(name, "champion", version)
                .await
                .unwrap();
        }
        let event = next_event(&mut *events, name).await;
        assert_eq!(event.kind, kind as i32, "{event:?}");
        assert_eq!(
            (event.alias.as_str(), event.to_version),
            ("champion", version)
        );
        assert_eq!(event.origin, origin as i32, "{event:?}");
        assert_eq!(event.actor, "mlflow");
        seen.push(event);
    }
    let versions: Vec<_> = seen
        .iter()
        .map(|e| (e.from_version, e.to_version))
        .collect();
    assert_eq!(versions, vec![(0, 1), (1, 2), (2, 0)]);
    seen.pop().unwrap()
}
