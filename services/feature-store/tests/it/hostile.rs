//! Hostile input to the feature store through its gRPC API on the embedded backends: the
//! regression cases found by probing it, and the property suite over every RPC (random and
//! extreme values answer OK or a refusal naming the field, never INTERNAL or UNKNOWN, never
//! past the deadline, and a refused request changes nothing).

use std::future::Future;
use std::time::Duration;

use crate::support::service::*;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use stockcast_feature_store::view::default_view;
use stockcast_proto::stockcast::features::v1 as pb;
use stockcast_proto::stockcast::features::v1::feature_store_service_client::FeatureStoreServiceClient;
use stockcast_proto::stockcast::types::v1::TimeRange;
use stockcast_testkit::hostile::{self, check_answer};
use tonic::Code;
use tonic::transport::Channel;

type Client = FeatureStoreServiceClient<Channel>;

/// A call running past this is a hang.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

fn entity_rows(rows: Vec<pb::EntityRow>) -> pb::GetHistoricalFeaturesRequest {
    pb::GetHistoricalFeaturesRequest {
        feature_view: "default".to_owned(),
        entities: Some(pb::get_historical_features_request::Entities::EntityRows(
            pb::EntityRows { rows },
        )),
        ..Default::default()
    }
}

/// Every message of a historical stream, or the status it ended with.
async fn historical_all(
    client: &mut Client,
    request: pb::GetHistoricalFeaturesRequest,
) -> Result<Vec<pb::GetHistoricalFeaturesResponse>, tonic::Status> {
    let mut stream = client.get_historical_features(request).await?.into_inner();
    let mut out = Vec::new();
    while let Some(message) = stream.message().await? {
        out.push(message);
    }
    Ok(out)
}

#[tokio::test]
async fn timestamps_with_nanos_outside_a_second_or_before_1900_are_refused() {
    let (settings, deps) = embedded("fs_hostile_nanos", vec![default_view()]).await;
    let service = Service::start_on(settings, deps).await;
    let mut client = service.client();
    for (nanos, seconds) in [
        (-1, 1_700_000_000),
        (1_000_000_000, 1_700_000_000),
        (i32::MIN, 1_700_000_000),
        (0, -2_208_988_800 - 1),
    ] {
        let request = entity_rows(vec![pb::EntityRow {
            symbol: "A".to_owned(),
            timestamp: Some(prost_types::Timestamp { seconds, nanos }),
        }]);
        let status = historical_all(&mut client, request)
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("entity_rows.rows[0].timestamp"),
            "{}",
            status.message()
        );
    }
    let span = pb::GetHistoricalFeaturesRequest {
        entities: Some(pb::get_historical_features_request::Entities::Span(
            pb::EntitySpan {
                symbols: vec!["A".to_owned()],
                range: Some(TimeRange {
                    start: Some(prost_types::Timestamp {
                        seconds: 0,
                        nanos: -5,
                    }),
                    end: None,
                }),
            },
        )),
        ..entity_rows(vec![])
    };
    let status = historical_all(&mut client, span)
        .await
        .expect_err("refused");
    assert!(
        status.message().contains("span.range.start") && status.message().contains("nanos"),
        "{}",
        status.message()
    );
    let status = client
        .materialize(pb::MaterializeRequest {
            feature_view: "default".to_owned(),
            range: Some(TimeRange {
                start: ts(0),
                end: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 1_000_000_000,
                }),
            }),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert!(
        status.message().contains("range.end"),
        "{}",
        status.message()
    );
    service.stop().await.unwrap();
}

/// An over-long value is refused without echoing it whole: a megabyte echoed into
/// `grpc-message` is a header block the client refuses, and it tears the connection down
/// (every call in flight on it ends CANCELLED).
#[tokio::test]
async fn over_long_values_are_refused_without_echoing_them() {
    let (settings, deps) = embedded("fs_hostile_echo", vec![default_view()]).await;
    let service = Service::start_on(settings, deps).await;
    let mut client = service.client();
    let long = "X".repeat(1 << 20);
    let check = |status: tonic::Status, code: Code, field: &str| {
        assert_eq!(
            status.code(),
            code,
            "{}",
            &status.message()[..200.min(status.message().len())]
        );
        assert!(
            status.message().contains(field),
            "{}",
            &status.message()[..200]
        );
        assert!(
            status.message().len() < 400,
            "{} bytes",
            status.message().len()
        );
    };
    let status = client
        .get_online_features(pb::GetOnlineFeaturesRequest {
            feature_view: "default".to_owned(),
            feature_view_version: 0,
            symbols: vec!["A".to_owned(), long.clone()],
        })
        .await
        .expect_err("refused");
    check(status, Code::InvalidArgument, "symbols[1]");
    let status = client
        .get_online_features(pb::GetOnlineFeaturesRequest {
            feature_view: long.clone(),
            feature_view_version: 0,
            symbols: vec!["A".to_owned()],
        })
        .await
        .expect_err("refused");
    check(status, Code::NotFound, "XXXX");
    let status = client
        .get_materialization_job(pb::GetMaterializationJobRequest { job_id: long })
        .await
        .expect_err("refused");
    check(status, Code::InvalidArgument, "job_id");
    // The connection survived: a good call still answers.
    client
        .list_feature_views(pb::ListFeatureViewsRequest::default())
        .await
        .expect("ListFeatureViews");
    service.stop().await.unwrap();
}

/// Runs `property` over `strategy` against one embedded feature store.
fn run<S, F, Fut>(strategy: S, property: F)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
    F: Fn(Client, S::Value) -> Fut,
    Fut: Future<Output = Result<(), TestCaseError>>,
{
    let rt = tokio::runtime::Runtime::new().unwrap();
    let service = rt.block_on(async {
        let (settings, deps) = embedded("fs_props", vec![default_view()]).await;
        Service::start_on(settings, deps).await
    });
    let mut runner = TestRunner::new(hostile::config());
    let result = runner.run(&strategy, |case| {
        let client = service.client();
        rt.block_on(async {
            tokio::time::timeout(CALL_DEADLINE, property(client, case))
                .await
                .map_err(|_| TestCaseError::fail("no answer within the deadline"))?
        })
    });
    rt.block_on(service.stop()).unwrap();
    if let Err(error) = result {
        panic!("{error}");
    }
}

fn view_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just("default".to_owned()), 1 => hostile::string()]
}

fn version() -> impl Strategy<Value = i32> {
    prop_oneof![2 => Just(0), 1 => Just(1), 1 => hostile::int32()]
}

fn symbols() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        4 => prop::collection::vec(prop_oneof![2 => Just("A".to_owned()), 1 => hostile::string()], 0..4),
        1 => Just(vec!["A".to_owned(); 1_001]),
    ]
}

fn range() -> impl Strategy<Value = Option<TimeRange>> {
    prop::option::weighted(
        0.9,
        (hostile::timestamp(), hostile::timestamp())
            .prop_map(|(start, end)| TimeRange { start, end }),
    )
}

const VIEW_FIELDS: [&str; 3] = ["feature_view", "feature_view_version", "name"];

#[test]
fn get_online_features() {
    run(
        (view_name(), version(), symbols()),
        |mut client, (feature_view, feature_view_version, symbols)| async move {
            let n = symbols.len();
            let answer = client
                .get_online_features(pb::GetOnlineFeaturesRequest {
                    feature_view,
                    feature_view_version,
                    symbols,
                })
                .await;
            check_answer(
                "GetOnlineFeatures",
                &answer,
                &[&VIEW_FIELDS[..], &["symbols"]].concat(),
            )?;
            if let Ok(response) = answer {
                prop_assert_eq!(response.into_inner().vectors.len(), n);
            }
            Ok(())
        },
    );
}

#[test]
fn get_historical_features() {
    let rows = prop::collection::vec(
        (
            prop_oneof![2 => Just("A".to_owned()), 1 => hostile::string()],
            hostile::timestamp(),
        )
            .prop_map(|(symbol, timestamp)| pb::EntityRow { symbol, timestamp }),
        0..4,
    );
    let entities = prop_oneof![
        1 => Just(None),
        3 => rows.prop_map(|rows| Some(pb::get_historical_features_request::Entities::EntityRows(pb::EntityRows { rows }))),
        3 => (symbols(), range()).prop_map(|(symbols, range)| Some(
            pb::get_historical_features_request::Entities::Span(pb::EntitySpan { symbols, range })
        )),
    ];
    let strategy = (
        view_name(),
        version(),
        entities,
        prop::option::of(hostile::int32()),
        hostile::int32(),
    );
    run(
        strategy,
        |mut client, (feature_view, feature_view_version, entities, label, chunk)| async move {
            let request = pb::GetHistoricalFeaturesRequest {
                feature_view,
                feature_view_version,
                entities,
                label: label.map(|horizon_bars| pb::LabelSpec { horizon_bars }),
                max_rows_per_chunk: chunk,
            };
            let answer = historical_all(&mut client, request).await;
            let fields = [
                &VIEW_FIELDS[..],
                &[
                    "entities",
                    "entity_rows",
                    "span",
                    "label",
                    "max_rows_per_chunk",
                ],
            ]
            .concat();
            check_answer("GetHistoricalFeatures", &answer, &fields)?;
            Ok(())
        },
    );
}

#[test]
fn list_and_get_feature_views() {
    run(
        (
            hostile::int32(),
            hostile::string(),
            any::<bool>(),
            view_name(),
            version(),
        ),
        |mut client, (page_size, page_token, all_versions, name, version)| async move {
            let answer = client
                .list_feature_views(pb::ListFeatureViewsRequest {
                    page_size,
                    page_token,
                    all_versions,
                })
                .await;
            check_answer("ListFeatureViews", &answer, &["page_size", "page_token"])?;
            let answer = client
                .get_feature_view(pb::GetFeatureViewRequest { name, version })
                .await;
            check_answer("GetFeatureView", &answer, &["name", "version"])?;
            Ok(())
        },
    );
}

#[test]
fn materialize_and_get_materialization_job() {
    run(
        (
            view_name(),
            version(),
            symbols(),
            range(),
            hostile::string(),
        ),
        |mut client, (feature_view, feature_view_version, symbols, range, request_id)| async move {
            let answer = client
                .materialize(pb::MaterializeRequest {
                    feature_view,
                    feature_view_version,
                    symbols,
                    range,
                    request_id: request_id.clone(),
                })
                .await;
            let fields = [&VIEW_FIELDS[..], &["symbols", "range", "request_id"]].concat();
            let refused = check_answer("Materialize", &answer, &fields)?;
            if let Ok(response) = &answer {
                let job_id = response.get_ref().job.as_ref().map(|j| j.job_id.clone());
                let read = client
                    .get_materialization_job(pb::GetMaterializationJobRequest {
                        job_id: job_id.unwrap_or_default(),
                    })
                    .await;
                prop_assert!(read.is_ok(), "the started job reads back: {:?}", read.err());
            }
            if refused && !request_id.is_empty() {
                // Nothing was stored under the request id: looking it up finds no job.
                let read = client
                    .get_materialization_job(pb::GetMaterializationJobRequest {
                        job_id: request_id,
                    })
                    .await;
                prop_assert!(read.is_err());
                check_answer("GetMaterializationJob", &read, &["job_id"])?;
            }
            Ok(())
        },
    );
}
