//! Hostile input to the registry proxy through its gRPC API on the local registry: the
//! property suite over every RPC (random and extreme names, aliases, versions, URIs, page
//! tokens and timestamps answer OK or a refusal naming the field, never INTERNAL or UNKNOWN,
//! never past the deadline; a refused request records nothing, and what was accepted before
//! stays), and the regression cases it found.

use std::future::Future;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use stockcast_proto::stockcast::registry::v1 as pb;
use stockcast_proto::stockcast::registry::v1::model_registry_service_client::ModelRegistryServiceClient;
use stockcast_proto::stockcast::types::v1::TimeRange;
use stockcast_testkit::hostile::{self, check_answer};
use tonic::Code;
use tonic::transport::Channel;

use crate::support::harness::{Harness, Kind, Spec, as_actor, fetch, model_name, register, set};

type Client = ModelRegistryServiceClient<Channel>;

/// A call running past this is a hang.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// The alias every case must leave where it was: accepted before the suite started.
const KEPT: &str = "champion";

/// A proxy on a local registry (audit log in SQLite, or in PostgreSQL for
/// [`Kind::LocalPostgres`]) holding one model with two versions and `champion` at 1.
struct World {
    harness: Harness,
    name: String,
}

impl World {
    async fn start(kind: Kind) -> Self {
        let harness = Harness::start(kind, Duration::ZERO).await;
        let name = model_name("hostile");
        register(&*harness.registry, &name, Spec::default()).await;
        register(&*harness.registry, &name, Spec::default()).await;
        let mut client = harness.client.clone();
        client
            .set_alias(set(&name, KEPT, 1, "the suite's fixed point"))
            .await
            .expect("champion set");
        Self { harness, name }
    }

    /// The number of audit entries and where `champion` points, read through the API.
    async fn state(&self) -> (usize, i64) {
        let mut client = self.harness.client.clone();
        let mut entries = 0;
        let mut token = String::new();
        loop {
            let page = client
                .list_audit_log(pb::ListAuditLogRequest {
                    page_size: 1_000,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .expect("audit log readable")
                .into_inner();
            entries += page.entries.len();
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let champion = client
            .resolve_model(pb::ResolveModelRequest {
                uri: format!("models:/{}@{KEPT}", self.name),
            })
            .await
            .expect("the champion still resolves")
            .into_inner()
            .version
            .and_then(|v| v.model)
            .map_or(0, |m| m.version);
        (entries, champion)
    }
}

/// Runs `property` over `strategy` against one proxy of `kind`; after every case the server
/// must still answer and `champion` still point at version 1.
fn run<S, F, Fut>(kind: Kind, strategy: S, property: F)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
    F: Fn(Client, String, S::Value) -> Fut,
    Fut: Future<Output = Result<bool, TestCaseError>>,
{
    let rt = tokio::runtime::Runtime::new().unwrap();
    let world = rt.block_on(World::start(kind));
    let mut runner = TestRunner::new(hostile::config());
    let result = runner.run(&strategy, |case| {
        let client = world.harness.client.clone();
        rt.block_on(async {
            let (before, _) = world.state().await;
            let refused =
                tokio::time::timeout(CALL_DEADLINE, property(client, world.name.clone(), case))
                    .await
                    .map_err(|_| TestCaseError::fail("no answer within the deadline"))??;
            let (after, champion) = world.state().await;
            prop_assert_eq!(champion, 1, "the champion moved");
            if refused {
                prop_assert_eq!(after, before, "a refused call changed the audit log");
            }
            Ok(())
        })
    });
    rt.block_on(world.harness.stop());
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// A model name: the suite's model, or anything.
fn name(known: String) -> impl Strategy<Value = String> {
    prop_oneof![2 => Just(known), 3 => hostile::string(), 1 => Just("n".repeat(255))]
}

/// An alias other than the one kept: plausible ones and anything.
fn alias() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("challenger".to_owned()),
        1 => Just("v3".to_owned()),
        1 => Just("a".repeat(256)),
        4 => hostile::string().prop_filter("the kept alias", |a| a != KEPT),
    ]
}

/// What follows a model name in a URI.
fn selector() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile::int64().prop_map(|v| format!("/{v}")),
        Just("/1".to_owned()),
        Just("/latest".to_owned()),
        Just("/Production".to_owned()),
        Just("@champion".to_owned()),
        alias().prop_map(|a| format!("@{a}")),
        hostile::string().prop_map(|s| format!("/{s}")),
        hostile::string(),
    ]
}

/// A URI: well-formed around hostile parts, or anything.
fn uri(known: String) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (name(known), selector()).prop_map(|(n, s)| format!("models:/{n}{s}")),
        1 => hostile::string(),
        1 => hostile::string().prop_map(|s| format!("models:/{s}")),
        1 => Just(format!("models:/{}", "/".repeat(70_000))),
    ]
}

fn version() -> impl Strategy<Value = i64> {
    prop_oneof![2 => Just(2), 1 => Just(1), 3 => hostile::int64()]
}

fn reason() -> impl Strategy<Value = String> {
    prop_oneof![2 => Just("hostile suite".to_owned()), 1 => hostile::string()]
}

fn known() -> String {
    // The strategies are built before the world exists; its model name is substituted
    // for this placeholder.
    "known-model".to_owned()
}

fn with_known(name: &str, value: String) -> String {
    value.replace("known-model", name)
}

#[test]
fn resolve_model() {
    resolve_model_on(Kind::Local);
}

/// The same on real MLflow, whose answers to odd names and page tokens must become
/// refusals naming the field too.
#[test]
fn resolve_model_on_mlflow() {
    resolve_model_on(Kind::Mlflow);
}

fn resolve_model_on(kind: Kind) {
    run(kind, uri(known()), |mut client, name, uri| async move {
        let uri = with_known(&name, uri);
        let answer = client.resolve_model(pb::ResolveModelRequest { uri }).await;
        check_answer("ResolveModel", &answer, &["uri"])
    });
}

#[test]
fn fetch_model() {
    fetch_model_on(Kind::Local);
}

/// The same on real MLflow, whose answers to odd names and page tokens must become
/// refusals naming the field too.
#[test]
fn fetch_model_on_mlflow() {
    fetch_model_on(Kind::Mlflow);
}

fn fetch_model_on(kind: Kind) {
    run(
        kind,
        (uri(known()), hostile::int64(), hostile::int32()),
        |mut client, name, (uri, offset, chunk)| async move {
            let uri = with_known(&name, uri);
            let answer = fetch(&mut client, &uri, offset, chunk).await;
            check_answer(
                "FetchModel",
                &answer,
                &["uri", "offset", "chunk_size_bytes"],
            )
        },
    );
}

#[test]
fn list_models() {
    list_models_on(Kind::Local);
}

/// The same on real MLflow, whose answers to odd names and page tokens must become
/// refusals naming the field too.
#[test]
fn list_models_on_mlflow() {
    list_models_on(Kind::Mlflow);
}

fn list_models_on(kind: Kind) {
    run(
        kind,
        (hostile::int32(), hostile::string(), hostile::string()),
        |mut client, _, (page_size, page_token, name_prefix)| async move {
            let answer = client
                .list_models(pb::ListModelsRequest {
                    page_size,
                    page_token,
                    name_prefix,
                })
                .await;
            check_answer(
                "ListModels",
                &answer,
                &["page_size", "page_token", "name_prefix"],
            )
        },
    );
}

#[test]
fn list_model_versions() {
    list_model_versions_on(Kind::Local);
}

/// The same on real MLflow, whose answers to odd names and page tokens must become
/// refusals naming the field too.
#[test]
fn list_model_versions_on_mlflow() {
    list_model_versions_on(Kind::Mlflow);
}

fn list_model_versions_on(kind: Kind) {
    run(
        kind,
        (name(known()), hostile::int32(), hostile::string()),
        |mut client, known, (name, page_size, page_token)| async move {
            let answer = client
                .list_model_versions(pb::ListModelVersionsRequest {
                    name: with_known(&known, name),
                    page_size,
                    page_token,
                })
                .await;
            check_answer(
                "ListModelVersions",
                &answer,
                &["name", "page_size", "page_token"],
            )
        },
    );
}

#[test]
fn set_alias() {
    set_alias_on(Kind::Local);
}

/// PostgreSQL refuses text that SQLite stores (NUL): the audit log's two backends must
/// answer alike.
#[test]
fn set_alias_with_the_audit_log_in_postgres() {
    set_alias_on(Kind::LocalPostgres);
}

fn set_alias_on(kind: Kind) {
    run(
        kind,
        (
            name(known()),
            alias(),
            version(),
            reason(),
            prop::option::of(hostile::int64()),
            prop_oneof![3 => "[ -~]{0,40}", 1 => Just("a".repeat(257))],
        ),
        |mut client, known, (name, alias, version, reason, expected, actor)| async move {
            let request = pb::SetAliasRequest {
                name: with_known(&known, name),
                alias,
                version,
                reason,
                expected_current_version: expected,
            };
            let answer = client.set_alias(as_actor(&actor, request)).await;
            check_answer(
                "SetAlias",
                &answer,
                &[
                    "name",
                    "alias",
                    "version",
                    "reason",
                    "expected_current_version",
                    "x-stockcast-actor",
                ],
            )
        },
    );
}

#[test]
fn delete_alias() {
    delete_alias_on(Kind::Local);
}

/// PostgreSQL refuses text that SQLite stores (NUL): the audit log's two backends must
/// answer alike.
#[test]
fn delete_alias_with_the_audit_log_in_postgres() {
    delete_alias_on(Kind::LocalPostgres);
}

fn delete_alias_on(kind: Kind) {
    run(
        kind,
        (name(known()), alias(), reason()),
        |mut client, known, (name, alias, reason)| async move {
            let request = pb::DeleteAliasRequest {
                name: with_known(&known, name),
                alias,
                reason,
            };
            let answer = client.delete_alias(request).await;
            check_answer("DeleteAlias", &answer, &["name", "alias", "reason"])
        },
    );
}

#[test]
fn list_audit_log() {
    list_audit_log_on(Kind::Local);
}

/// PostgreSQL refuses text that SQLite stores (NUL): the audit log's two backends must
/// answer alike.
#[test]
fn list_audit_log_with_the_audit_log_in_postgres() {
    list_audit_log_on(Kind::LocalPostgres);
}

fn list_audit_log_on(kind: Kind) {
    run(
        kind,
        (
            hostile::int32(),
            hostile::string(),
            (hostile::string(), hostile::string(), hostile::string()),
            (hostile::timestamp(), hostile::timestamp()),
        ),
        |mut client, _, (page_size, page_token, (model_name, alias, actor), (start, end))| async move {
            let answer = client
                .list_audit_log(pb::ListAuditLogRequest {
                    page_size,
                    page_token,
                    model_name,
                    alias,
                    actor,
                    range: Some(TimeRange { start, end }),
                })
                .await;
            check_answer(
                "ListAuditLog",
                &answer,
                &[
                    "page_size",
                    "page_token",
                    "range",
                    "model_name",
                    "alias",
                    "actor",
                ],
            )
        },
    );
}

#[test]
fn watch_aliases() {
    run(
        Kind::Local,
        prop_oneof![
            4 => prop::collection::vec(name(known()), 0..4),
            1 => Just(vec!["m".to_owned(); 1_001]),
        ],
        |mut client, known, names| async move {
            let model_names = names.into_iter().map(|n| with_known(&known, n)).collect();
            let answer = async {
                let mut stream = client
                    .watch_aliases(pb::WatchAliasesRequest { model_names })
                    .await?
                    .into_inner();
                stream.message().await
            }
            .await;
            let refused = check_answer("WatchAliases", &answer, &["model_names"])?;
            if let Ok(first) = answer {
                prop_assert!(
                    matches!(
                        first.and_then(|m| m.payload),
                        Some(pb::watch_aliases_response::Payload::Snapshot(_))
                    ),
                    "a watch begins with a snapshot"
                );
            }
            Ok(refused)
        },
    );
}

/// Regression: a reason with NUL was INTERNAL on PostgreSQL after the alias had moved in the
/// registry, a reason of any size was recorded and sent with every event, audit filters
/// with NUL were INTERNAL on PostgreSQL, and a watch could name any number of models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasons_and_audit_filters_are_checked_before_the_audit_log() {
    for kind in [Kind::LocalPostgres, Kind::Local] {
        let world = World::start(kind).await;
        let mut client = world.harness.client.clone();
        let (before, _) = world.state().await;
        for reason in ["A\0B".to_owned(), "x".repeat(1_025), "bell\u{7}".to_owned()] {
            let status = client
                .set_alias(set(&world.name, "challenger", 2, &reason))
                .await
                .expect_err("refused");
            assert_eq!(status.code(), Code::InvalidArgument, "{kind:?}: {status:?}");
            assert!(
                status.message().starts_with("reason"),
                "{}",
                status.message()
            );
            assert!(status.message().len() < 200, "{}", status.message());
        }
        let status = client
            .set_alias(set(&world.name, "challenger", 2, "line one\n\tline two"))
            .await;
        assert!(status.is_ok(), "{kind:?}: {status:?}");
        let status = client
            .delete_alias(pb::DeleteAliasRequest {
                name: world.name.clone(),
                alias: "challenger".to_owned(),
                reason: "A\0B".to_owned(),
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{kind:?}: {status:?}");
        for field in ["model_name", "alias", "actor"] {
            let mut request = pb::ListAuditLogRequest::default();
            match field {
                "model_name" => request.model_name = "m\0".to_owned(),
                "alias" => request.alias = "a\0".to_owned(),
                _ => request.actor = "\0".to_owned(),
            }
            let status = client.list_audit_log(request).await.expect_err("refused");
            assert_eq!(status.code(), Code::InvalidArgument, "{kind:?}: {status:?}");
            assert!(status.message().starts_with(field), "{}", status.message());
        }
        let status = client
            .watch_aliases(pb::WatchAliasesRequest {
                model_names: vec![world.name.clone(); 1_001],
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{kind:?}: {status:?}");
        assert!(
            status.message().starts_with("model_names"),
            "{}",
            status.message()
        );
        let (after, champion) = world.state().await;
        assert_eq!((after, champion), (before + 1, 1), "{kind:?}");
        world.harness.stop().await;
    }
}

/// Regression: an actor header that was not printable ASCII was recorded as `anonymous`,
/// and one of any length was recorded and published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_header_that_cannot_be_recorded_is_refused() {
    let world = World::start(Kind::Local).await;
    let mut client = world.harness.client.clone();
    let (before, _) = world.state().await;
    let long = as_actor(&"a".repeat(257), set(&world.name, "challenger", 2, "why"));
    let mut opaque = tonic::Request::new(set(&world.name, "challenger", 2, "why"));
    opaque.metadata_mut().insert(
        stockcast_model_registry_proxy::ACTOR_HEADER,
        tonic::metadata::AsciiMetadataValue::try_from(&b"caf\xe9"[..]).unwrap(),
    );
    for request in [long, opaque] {
        let status = client.set_alias(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with("x-stockcast-actor"),
            "{}",
            status.message()
        );
    }
    let entry = client
        .set_alias(as_actor(
            &"a".repeat(256),
            set(&world.name, "challenger", 2, "why"),
        ))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(entry.actor, "a".repeat(256));
    let (after, champion) = world.state().await;
    assert_eq!((after, champion), (before + 1, 1));
    world.harness.stop().await;
}

/// Regression (MLflow): a page token MLflow cannot decode was answered UNAVAILABLE from its
/// HTTP 500, counting towards opening the circuit breaker for every caller, or
/// INVALID_ARGUMENT in MLflow's words naming no field; a name prefix went into MLflow's
/// filter whatever it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_tokens_and_prefixes_mlflow_cannot_take_are_refused_before_it_is_asked() {
    let world = World::start(Kind::Mlflow).await;
    let mut client = world.harness.client.clone();
    // More refusals than the harness's breaker_failures (3).
    for token in ["¡", "¡", "AAAA", "not base64!", "¡", "¡"] {
        let models = pb::ListModelsRequest {
            page_token: token.to_owned(),
            ..Default::default()
        };
        refused_naming("page_token", client.list_models(models).await);
        let versions = pb::ListModelVersionsRequest {
            name: world.name.clone(),
            page_token: token.to_owned(),
            ..Default::default()
        };
        refused_naming("page_token", client.list_model_versions(versions).await);
    }
    for prefix in ["a'b", "%", "\"", "¡"] {
        let models = pb::ListModelsRequest {
            name_prefix: prefix.to_owned(),
            ..Default::default()
        };
        refused_naming("name_prefix", client.list_models(models).await);
    }
    // The breaker is still closed: the registry answers.
    let (_, champion) = world.state().await;
    assert_eq!(champion, 1);
    world.harness.stop().await;
}

/// Asserts `answer` is INVALID_ARGUMENT with a message beginning with `field`.
fn refused_naming<T: std::fmt::Debug>(field: &str, answer: Result<T, tonic::Status>) {
    let status = answer.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    assert!(status.message().starts_with(field), "{status:?}");
}
