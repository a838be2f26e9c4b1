//! Bad requests are refused naming the field.

use super::*;

async fn online_call(
    client: &mut Client,
    view: &str,
    symbols: Vec<String>,
) -> Result<(), tonic::Status> {
    client
        .get_online_features(pb::GetOnlineFeaturesRequest {
            feature_view: view.to_owned(),
            feature_view_version: 0,
            symbols,
        })
        .await
        .map(|_| ())
}

async fn historical_call(
    client: &mut Client,
    request: pb::GetHistoricalFeaturesRequest,
) -> Result<(), tonic::Status> {
    client.get_historical_features(request).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_naming_the_field() {
    let svc = Service::start(real_settings("fs-svc-errors", vec![default_view()])).await;
    let mut c = svc.client();
    let s = |n: usize| (0..n).map(|i| format!("S{i}")).collect::<Vec<_>>();

    assert_status(
        online_call(&mut c, "nosuchview", s(1)).await,
        Code::NotFound,
        "\"nosuchview\"",
    );
    assert_status(
        online_call(&mut c, "default", s(0)).await,
        Code::InvalidArgument,
        "symbols",
    );
    assert_status(
        online_call(&mut c, "default", s(1001)).await,
        Code::InvalidArgument,
        "symbols: 1001 symbols",
    );
    online_call(&mut c, "default", s(1000))
        .await
        .expect("1000 symbols are allowed");
    assert_status(
        online_call(
            &mut c,
            "default",
            vec!["A".into(), "B".into(), String::new()],
        )
        .await,
        Code::InvalidArgument,
        "symbols[2]",
    );
    assert_status(
        c.get_online_features(pb::GetOnlineFeaturesRequest {
            feature_view: "default".into(),
            feature_view_version: 7,
            symbols: s(1),
        })
        .await,
        Code::NotFound,
        "version 7",
    );

    // Historical.
    assert_status(
        historical_call(&mut c, entity_rows(vec![("A", ts(T0)), ("B", None)])).await,
        Code::InvalidArgument,
        "entity_rows.rows[1].timestamp",
    );
    let mut unknown = entity_rows(vec![("A", ts(T0))]);
    unknown.feature_view = "nosuchview".into();
    assert_status(
        historical_call(&mut c, unknown).await,
        Code::NotFound,
        "\"nosuchview\"",
    );
    for bad in [-1, 100_001] {
        let mut r = entity_rows(vec![("A", ts(T0))]);
        r.max_rows_per_chunk = bad;
        assert_status(
            historical_call(&mut c, r).await,
            Code::InvalidArgument,
            "max_rows_per_chunk",
        );
    }
    for bad in [0, -3, 100_001] {
        let mut r = entity_rows(vec![("A", ts(T0))]);
        r.label = Some(pb::LabelSpec { horizon_bars: bad });
        assert_status(
            historical_call(&mut c, r).await,
            Code::InvalidArgument,
            "label.horizon_bars",
        );
    }
    assert_status(
        historical_call(&mut c, entity_rows(vec![])).await,
        Code::InvalidArgument,
        "entity_rows.rows",
    );
    assert_status(
        historical_call(&mut c, span_request("default", 0, &["A", ""], 0, None)).await,
        Code::InvalidArgument,
        "span.symbols[1]",
    );
    let mut beyond = span_request("default", 0, &["A"], 0, None);
    if let Some(pb::get_historical_features_request::Entities::Span(span)) = &mut beyond.entities {
        span.range.as_mut().unwrap().end = Some(prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        });
    }
    assert_status(
        historical_call(&mut c, beyond).await,
        Code::InvalidArgument,
        "span.range.end",
    );

    // Jobs and views.
    assert_status(
        c.get_materialization_job(pb::GetMaterializationJobRequest {
            job_id: "job-1".into(),
        })
        .await,
        Code::InvalidArgument,
        "job_id",
    );
    assert_status(
        c.get_materialization_job(pb::GetMaterializationJobRequest {
            job_id: uuid::Uuid::new_v4().to_string(),
        })
        .await,
        Code::NotFound,
        "does not exist",
    );
    assert_status(
        c.materialize(materialize_request(9, None, "")).await,
        Code::NotFound,
        "version 9",
    );
    assert_status(
        c.materialize(materialize_request(0, Some(T0), "")).await,
        Code::InvalidArgument,
        "range",
    );
    assert_status(
        c.get_feature_view(pb::GetFeatureViewRequest {
            name: "nosuchview".into(),
            version: 0,
        })
        .await,
        Code::NotFound,
        "\"nosuchview\"",
    );
    assert_status(
        c.list_feature_views(pb::ListFeatureViewsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "page_token",
    );

    let settings = svc.settings.clone();
    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}
