//! The feature store end to end through its gRPC API, in-process on Kafka (tansu), Redis
//! and PostgreSQL (`scripts/deps.sh up`), and once on the embedded backends: online
//! statuses, precise errors, point-in-time correct history with labels on a series built to
//! expose leakage, streamed chunks, materialization of a new view version (idempotent,
//! resumable across a restart), the view catalog, and the refusal of a changed definition.

mod errors;
mod historical;
mod materialize;
mod online;
mod views;

pub(crate) use stockcast_feature_store::view::{FeatureSpec, View, ViewSpec, default_view};
pub(crate) use stockcast_feature_store::{Deps, Settings};
pub(crate) use stockcast_market::Bar;
pub(crate) use stockcast_proto::stockcast::features::v1 as pb;
pub(crate) use stockcast_proto::stockcast::features::v1::feature_store_service_client::FeatureStoreServiceClient;
pub(crate) use stockcast_proto::stockcast::types::v1::{JobState, TimeRange};
pub(crate) use tonic::Code;
pub(crate) use tonic::transport::Channel;

pub(crate) use crate::support::service::*;
pub(crate) use crate::support::stream::{T0, interleave, series};

pub(crate) type Client = FeatureStoreServiceClient<Channel>;

pub(crate) fn status_of(v: &pb::FeatureVector) -> pb::FeatureStatus {
    pb::FeatureStatus::try_from(v.status).unwrap()
}

pub(crate) fn row_status(r: &pb::HistoricalFeatureRow) -> pb::FeatureStatus {
    pb::FeatureStatus::try_from(r.status).unwrap()
}

/// `default` version 2: the first five features only, not current.
pub(crate) fn default_v2() -> ViewSpec {
    let mut v2 = default_view();
    v2.version = 2;
    v2.current = false;
    v2.description = "Returns and trend only".to_owned();
    v2.features.truncate(5);
    v2
}

pub(crate) fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    text: &str,
) {
    let status = result.expect_err("the call is refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(text),
        "{:?} should name {text:?}",
        status.message()
    );
}

pub(crate) fn entity_rows(
    rows: Vec<(&str, Option<prost_types::Timestamp>)>,
) -> pb::GetHistoricalFeaturesRequest {
    pb::GetHistoricalFeaturesRequest {
        feature_view: "default".to_owned(),
        feature_view_version: 0,
        entities: Some(pb::get_historical_features_request::Entities::EntityRows(
            pb::EntityRows {
                rows: rows
                    .into_iter()
                    .map(|(s, t)| pb::EntityRow {
                        symbol: s.to_owned(),
                        timestamp: t,
                    })
                    .collect(),
            },
        )),
        label: None,
        max_rows_per_chunk: 0,
    }
}

/// Materializes `default` at `version` over every symbol, from [`T0`] to `end` (now when
/// unset).
pub(crate) fn materialize_request(
    version: i32,
    end: Option<i64>,
    request_id: &str,
) -> pb::MaterializeRequest {
    pb::MaterializeRequest {
        feature_view: "default".into(),
        feature_view_version: version,
        symbols: Vec::new(),
        range: Some(TimeRange {
            start: ts(T0),
            end: end.and_then(ts),
        }),
        request_id: request_id.to_owned(),
    }
}
