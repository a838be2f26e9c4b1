//! The registry conformance suite: every case runs the proxy on the local registry and on
//! real MLflow, through its gRPC API. Cases by theme: resolving and fetching artifacts
//! (`artifacts.rs`), requests and their errors (`requests.rs`), alias changes (`aliases.rs`).

use std::time::Duration;

use stockcast_proto::stockcast::registry::v1 as pb;

use super::harness::Harness;

mod aliases;
mod artifacts;
mod requests;

pub use self::aliases::{
    alias_moves_in_the_registry_are_reported,
    an_alias_moved_in_the_registry_is_detected_by_polling, promotions_are_audited_and_published,
    watch_sends_a_snapshot_then_changes,
};
pub use self::artifacts::{
    a_corrupted_artifact_is_refused, fetch_streams_checksummed_chunks_and_resumes,
    resolves_every_uri_form,
};
pub use self::requests::{
    bad_requests_get_precise_errors, errors_name_the_model_in_the_projects_words,
    lists_models_and_versions_in_pages, model_names_fit_every_backend,
};

/// Runs every case of the suite as its own test on the registry `$kind`.
#[macro_export]
macro_rules! registry_conformance {
    ($kind:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn resolves_every_uri_form() {
            $crate::support::cases::resolves_every_uri_form($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn fetch_streams_checksummed_chunks_and_resumes() {
            $crate::support::cases::fetch_streams_checksummed_chunks_and_resumes($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_corrupted_artifact_is_refused() {
            $crate::support::cases::a_corrupted_artifact_is_refused($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn promotions_are_audited_and_published() {
            $crate::support::cases::promotions_are_audited_and_published($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn bad_requests_get_precise_errors() {
            $crate::support::cases::bad_requests_get_precise_errors($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn errors_name_the_model_in_the_projects_words() {
            $crate::support::cases::errors_name_the_model_in_the_projects_words($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn model_names_fit_every_backend() {
            $crate::support::cases::model_names_fit_every_backend($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn lists_models_and_versions_in_pages() {
            $crate::support::cases::lists_models_and_versions_in_pages($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn watch_sends_a_snapshot_then_changes() {
            $crate::support::cases::watch_sends_a_snapshot_then_changes($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_alias_moved_in_the_registry_is_detected_by_polling() {
            $crate::support::cases::an_alias_moved_in_the_registry_is_detected_by_polling($kind)
                .await;
        }
    };
}

pub(super) const NO_POLL: Duration = Duration::ZERO;

fn resolve_request(uri: &str) -> pb::ResolveModelRequest {
    pb::ResolveModelRequest {
        uri: uri.to_owned(),
    }
}

pub(super) async fn resolve(h: &Harness, uri: &str) -> Result<pb::ModelVersion, tonic::Status> {
    let mut client = h.client.clone();
    let answer = client
        .resolve_model(resolve_request(uri))
        .await?
        .into_inner();
    assert!(!answer.served_from_cache, "{uri}: the registry is up");
    Ok(answer.version.expect("a version"))
}
