//! The registry conformance suite: every case runs the proxy on the local registry and on
//! real MLflow, through its gRPC API.

use std::time::Duration;

use stockcast_model_registry_proxy::registry::ArtifactFormat;
use stockcast_proto::stockcast::events::v1::{ChangeOrigin, ModelEvent, ModelEventKind};
use stockcast_proto::stockcast::registry::v1 as pb;
use tonic::Code;

use super::harness::{
    Harness, Kind, Spec, as_actor, audit_of, contract, fetch, model_name, next_event, register,
    set, sha256,
};

/// Runs every case of the suite as its own test on the registry `$kind`.
#[macro_export]
macro_rules! registry_conformance {
    ($kind:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn resolves_every_uri_form() {
            support::cases::resolves_every_uri_form($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn fetch_streams_checksummed_chunks_and_resumes() {
            support::cases::fetch_streams_checksummed_chunks_and_resumes($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_corrupted_artifact_is_refused() {
            support::cases::a_corrupted_artifact_is_refused($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn promotions_are_audited_and_published() {
            support::cases::promotions_are_audited_and_published($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn bad_requests_get_precise_errors() {
            support::cases::bad_requests_get_precise_errors($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn errors_name_the_model_in_the_projects_words() {
            support::cases::errors_name_the_model_in_the_projects_words($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn model_names_fit_every_backend() {
            support::cases::model_names_fit_every_backend($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn lists_models_and_versions_in_pages() {
            support::cases::lists_models_and_versions_in_pages($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn watch_sends_a_snapshot_then_changes() {
            support::cases::watch_sends_a_snapshot_then_changes($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_alias_moved_in_the_registry_is_detected_by_polling() {
            support::cases::an_alias_moved_in_the_registry_is_detected_by_polling($kind).await;
        }
    };
}

const NO_POLL: Duration = Duration::ZERO;

fn resolve_request(uri: &str) -> pb::ResolveModelRequest {
    pb::ResolveModelRequest {
        uri: uri.to_owned(),
    }
}

async fn resolve(h: &Harness, uri: &str) -> Result<pb::ModelVersion, tonic::Status> {
    let mut client = h.client.clone();
    let answer = client
        .resolve_model(resolve_request(uri))
        .await?
        .into_inner();
    assert!(!answer.served_from_cache, "{uri}: the registry is up");
    Ok(answer.version.expect("a version"))
}

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

pub async fn bad_requests_get_precise_errors(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    let name = model_name("errors");
    register(&*h.registry, &name, Spec::default()).await;
    let mut client = h.client.clone();
    let cases: Vec<(pb::SetAliasRequest, Code, String)> = vec![
        (
            set(&name, "champion", 1, " "),
            Code::InvalidArgument,
            "reason is empty".into(),
        ),
        (
            set(&name, "latest", 1, "r"),
            Code::InvalidArgument,
            // The message names the field once.
            "alias \"latest\" is reserved".into(),
        ),
        (
            set(&name, "champion", 0, "r"),
            Code::InvalidArgument,
            "version 0 must be >= 1".into(),
        ),
        (
            set("no/such", "champion", 1, "r"),
            Code::InvalidArgument,
            "name: model name \"no/such\" contains '/'".into(),
        ),
        (
            set(&name, "champion", 9, "r"),
            Code::NotFound,
            String::new(),
        ),
        (
            set(&format!("{name}-missing"), "champion", 1, "r"),
            Code::NotFound,
            String::new(),
        ),
    ];
    for (request, code, text) in cases {
        let error = client.set_alias(request.clone()).await.unwrap_err();
        assert_eq!(error.code(), code, "{request:?}: {error:?}");
        assert!(error.message().contains(&text), "{request:?}: {error:?}");
        assert!(!error.message().contains("alias: alias"), "{error:?}");
    }
    let missing = client
        .delete_alias(pb::DeleteAliasRequest {
            name: name.clone(),
            alias: "nope".into(),
            reason: "cleanup".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(
        missing.message().contains("no alias \"nope\""),
        "{missing:?}"
    );
    for (uri, code, text) in [
        (
            "runs:/abc/model",
            Code::InvalidArgument,
            "must start with \"models:/\"",
        ),
        (
            &*format!("models:/{name}"),
            Code::InvalidArgument,
            "names no version",
        ),
        (&*format!("models:/{name}/7"), Code::NotFound, ""),
        (&*format!("models:/{name}@absent"), Code::NotFound, ""),
        (&*format!("models:/{name}-missing/1"), Code::NotFound, ""),
    ] {
        let error = resolve(&h, uri).await.unwrap_err();
        assert_eq!(error.code(), code, "{uri}: {error:?}");
        assert!(error.message().contains(text), "{uri}: {error:?}");
    }
    let page = client
        .list_models(pb::ListModelsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(page.code(), Code::InvalidArgument);
    assert!(page.message().contains("page_size 5000"), "{page:?}");
    h.stop().await;
}

pub async fn errors_name_the_model_in_the_projects_words(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    let name = model_name("words");
    register(&*h.registry, &name, Spec::default()).await;
    let missing = format!("{name}-missing");
    for (uri, text) in [
        (
            format!("models:/{name}@absent"),
            format!("model {name:?} has no alias \"absent\""),
        ),
        (
            format!("models:/{missing}@champion"),
            format!("model {missing:?} does not exist"),
        ),
        (
            format!("models:/{name}/7"),
            format!("model {name:?} has no version 7"),
        ),
        (
            format!("models:/{missing}/1"),
            format!("model {missing:?} does not exist"),
        ),
        (
            format!("models:/{missing}/latest"),
            format!("model {missing:?} does not exist"),
        ),
    ] {
        let error = resolve(&h, &uri).await.unwrap_err();
        assert_eq!(error.code(), Code::NotFound, "{uri}: {error:?}");
        assert_eq!(error.message(), text, "{uri}");
    }
    let mut client = h.client.clone();
    let error = client
        .set_alias(set(&name, "champion", 9, "r"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    assert!(
        error
            .message()
            .contains(&format!("model {name:?} has no version 9")),
        "{error:?}"
    );

    // URI errors name the field once.
    let error = resolve(&h, "runs:/abc/model").await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error
            .message()
            .starts_with("uri \"runs:/abc/model\" must start with"),
        "{error:?}"
    );
    // Echoed input is cut: a 20,000-character URI does not come back whole.
    for uri in [
        format!("models:/{}", "a".repeat(20_000)),
        format!("models:/{name}@{}", "a".repeat(20_000)),
        format!("runs:/{}", "a".repeat(20_000)),
        format!("models:/{name}/{}", "x".repeat(20_000)),
    ] {
        let error = resolve(&h, &uri).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        assert!(error.message().len() < 1_000, "{}", error.message().len());
        assert!(error.message().contains("characters"), "{error:?}");
    }
    let error = client
        .list_model_versions(pb::ListModelVersionsRequest {
            name: name.clone(),
            page_token: "t".repeat(20_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(error.message().len() < 1_000, "{}", error.message().len());
    h.stop().await;
}

pub async fn model_names_fit_every_backend(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    // The longest name is usable end to end: registry, artifact cache, audit log, events.
    let unique = model_name("long");
    let name = format!("{unique}{}", "n".repeat(255 - unique.len()));
    assert_eq!(name.len(), 255);
    let (_, bytes) = register(&*h.registry, &name, Spec::default()).await;
    let mut client = h.client.clone();
    client
        .set_alias(set(&name, "champion", 1, "the longest name"))
        .await
        .unwrap();
    let uri = format!("models:/{name}@champion");
    assert_eq!(resolve(&h, &uri).await.unwrap().sha256, sha256(&bytes));
    let (_, got, _) = fetch(&mut client, &uri, 0, 0).await.unwrap();
    assert_eq!(got, bytes);

    // One more character is refused up front, by every call, without a server path.
    let too_long = format!("{name}n");
    let error = resolve(&h, &format!("models:/{too_long}/1"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        error
            .message()
            .contains("model name has 256 characters, at most 255"),
        "{error:?}"
    );
    let error = client
        .set_alias(set(&too_long, "champion", 1, "r"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    let error = client
        .list_model_versions(pb::ListModelVersionsRequest {
            name: too_long.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(!error.message().contains("/tmp"), "{error:?}");
    h.stop().await;
}

pub async fn lists_models_and_versions_in_pages(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    let prefix = model_name("list");
    for suffix in ["a", "b", "c"] {
        register(&*h.registry, &format!("{prefix}-{suffix}"), Spec::default()).await;
    }
    register(&*h.registry, &format!("{prefix}-b"), Spec::default()).await;
    let mut client = h.client.clone();
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_models(pb::ListModelsRequest {
                name_prefix: prefix.clone(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        names.extend(
            page.models
                .iter()
                .map(|m| (m.name.clone(), m.latest_version)),
        );
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        names,
        vec![
            (format!("{prefix}-a"), 1),
            (format!("{prefix}-b"), 2),
            (format!("{prefix}-c"), 1)
        ]
    );
    let first = client
        .list_model_versions(pb::ListModelVersionsRequest {
            name: format!("{prefix}-b"),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.versions[0].model.as_ref().unwrap().version,
        2,
        "newest first"
    );
    let second = client
        .list_model_versions(pb::ListModelVersionsRequest {
            name: format!("{prefix}-b"),
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.versions[0].model.as_ref().unwrap().version, 1);
    let missing = client
        .list_model_versions(pb::ListModelVersionsRequest {
            name: format!("{prefix}-zzz"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
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
