//! The feature store end to end through its gRPC API, in-process on Kafka (tansu), Redis
//! and PostgreSQL (`scripts/deps.sh up`), and once on the embedded backends: online
//! statuses, precise errors, point-in-time correct history with labels on a series built to
//! expose leakage, streamed chunks, materialization of a new view version (idempotent,
//! resumable across a restart), the view catalog, and the refusal of a changed definition.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/stream_cases.rs"]
mod stream_cases;

#[path = "support/service.rs"]
mod support;

use stockcast_feature_store::view::{FeatureSpec, View, ViewSpec, default_view};
use stockcast_feature_store::{Deps, Settings};
use stockcast_market::Bar;
use stockcast_proto::stockcast::features::v1 as pb;
use stockcast_proto::stockcast::features::v1::feature_store_service_client::FeatureStoreServiceClient;
use stockcast_proto::stockcast::types::v1::{JobState, TimeRange};
use stream_cases::{T0, interleave, series};
use support::*;
use tonic::Code;
use tonic::transport::Channel;

type Client = FeatureStoreServiceClient<Channel>;

fn status_of(v: &pb::FeatureVector) -> pb::FeatureStatus {
    pb::FeatureStatus::try_from(v.status).unwrap()
}

fn row_status(r: &pb::HistoricalFeatureRow) -> pb::FeatureStatus {
    pb::FeatureStatus::try_from(r.status).unwrap()
}

/// `default` version 2: the first five features only, not current.
fn default_v2() -> ViewSpec {
    let mut v2 = default_view();
    v2.version = 2;
    v2.current = false;
    v2.description = "Returns and trend only".to_owned();
    v2.features.truncate(5);
    v2
}

// ---------------------------------------------------------------------------------------
// 1. online statuses

/// Publishes a recent series, one that ended in 2020 and a short recent one, then checks
/// every status, request order with duplicates, names and version resolution.
async fn online_statuses(svc: &Service) -> Vec<Bar> {
    let view = View::compile(&default_view()).unwrap();
    // The last bar opens yesterday and closes today at 00:00, well within the 4-day max age.
    let recent = starting_at(series("RECENT", 60, 1.0), today() - 60 * DAY);
    let old = series("OLD", 60, 2.0);
    let young = starting_at(series("YOUNG", 10, 3.0), today() - 10 * DAY);
    svc.publish(&interleave(&[recent.clone(), old.clone(), young.clone()]))
        .await;
    await_online(&svc.client, &view, &[&recent, &old, &young]).await;

    let mut client = svc.client();
    let asked = ["RECENT", "NOPE", "OLD", "YOUNG", "RECENT"];
    let r = online(&mut client, "default", 0, &asked).await;
    assert_eq!(r.feature_view, "default");
    assert_eq!(
        r.feature_view_version, 1,
        "version 0 resolves to the current one"
    );
    assert_eq!(r.feature_names, view.names);
    let symbols: Vec<&str> = r.vectors.iter().map(|v| v.symbol.as_str()).collect();
    assert_eq!(
        symbols, asked,
        "request order, duplicates answered each time"
    );

    let last = |s: &[Bar]| view.compute(s).pop().unwrap();
    let (present, missing, stale, warming, again) = (
        &r.vectors[0],
        &r.vectors[1],
        &r.vectors[2],
        &r.vectors[3],
        &r.vectors[4],
    );

    assert_eq!(status_of(present), pb::FeatureStatus::Present);
    assert_eq!(
        present.event_time.unwrap().seconds,
        view.event_time(recent.last().unwrap().ts)
    );
    assert!(same_bits(&present.values, &last(&recent)));
    assert!(present.present.is_empty(), "every value present");
    assert_eq!(present, again);

    assert_eq!(status_of(missing), pb::FeatureStatus::NotFound);
    assert!(missing.event_time.is_none());
    assert!(missing.values.is_empty() && missing.present.is_empty());

    assert_eq!(status_of(stale), pb::FeatureStatus::Stale);
    assert_eq!(
        stale.event_time.unwrap().seconds,
        view.event_time(old.last().unwrap().ts)
    );
    assert!(
        same_bits(&stale.values, &last(&old)),
        "stale values are returned"
    );

    assert_eq!(status_of(warming), pb::FeatureStatus::WarmingUp);
    let want = last(&young);
    let mask: Vec<bool> = want.iter().map(|v| !v.is_nan()).collect();
    assert!(mask.contains(&true) && mask.contains(&false), "{mask:?}");
    assert_eq!(
        warming.present, mask,
        "false exactly for the absent features"
    );
    assert_eq!(warming.values.len(), view.names.len());
    for (i, (got, ok)) in warming.values.iter().zip(&mask).enumerate() {
        if *ok {
            assert_eq!(got.to_bits(), want[i].to_bits(), "{}", view.names[i]);
        } else {
            assert!(got.is_nan(), "{} is absent: NaN, got {got}", view.names[i]);
        }
    }

    // The explicit version answers the same (NaN compared by its bits).
    let explicit = online(&mut client, "default", 1, &asked).await;
    assert_eq!(explicit.feature_view_version, 1);
    let key = |v: &pb::FeatureVector| {
        let bits: Vec<u64> = v.values.iter().map(|x| x.to_bits()).collect();
        (
            v.symbol.clone(),
            v.status,
            v.event_time,
            bits,
            v.present.clone(),
        )
    };
    let keys = |r: &pb::GetOnlineFeaturesResponse| r.vectors.iter().map(key).collect::<Vec<_>>();
    assert_eq!(keys(&explicit), keys(&r));
    recent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_features_report_present_stale_warming_up_and_not_found() {
    let svc = Service::start(real_settings("fs-svc-online", vec![default_view()])).await;
    online_statuses(&svc).await;
    let settings = svc.settings.clone();
    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_features_on_the_embedded_backends() {
    let (settings, deps) = embedded("fs-svc-embedded", vec![default_view()]).await;
    let svc = Service::start_on(settings, deps).await;
    let recent = online_statuses(&svc).await;
    // Historical reads work on SQLite too: the span of the recent symbol is one row per bar.
    let mut client = svc.client();
    let rows = span_rows(&mut client, "default", 0, &["RECENT"]).await;
    let view = View::compile(&default_view()).unwrap();
    assert_rows_exact(&view, &rows, &[&recent]);
    svc.stop().await.expect("clean stop");
}

// ---------------------------------------------------------------------------------------
// 2. errors

fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, text: &str) {
    let status = result.expect_err("the call is refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(text),
        "{:?} should name {text:?}",
        status.message()
    );
}

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

fn entity_rows(
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

// ---------------------------------------------------------------------------------------
// 3. point-in-time correctness

const H: usize = 5;

/// What a point-in-time row of `bars` as of `as_of` must be: the index of the last bar
/// closed at or before `as_of`, the status judged at `as_of`, and the label over `h` bars.
fn expected(
    view: &View,
    bars: &[Bar],
    as_of: i64,
    h: usize,
) -> (Option<usize>, pb::FeatureStatus, Option<f64>) {
    let closed = bars.partition_point(|b| view.event_time(b.ts) <= as_of);
    let Some(k) = closed.checked_sub(1) else {
        return (None, pb::FeatureStatus::NotFound, None);
    };
    let values = view.compute(&bars[..=k]).pop().unwrap();
    let status = if as_of - view.event_time(bars[k].ts) > view.max_age.as_secs() as i64 {
        pb::FeatureStatus::Stale
    } else if values.iter().any(|v| v.is_nan()) {
        pb::FeatureStatus::WarmingUp
    } else {
        pb::FeatureStatus::Present
    };
    let label = bars
        .get(k + h)
        .map(|later| (later.close / bars[k].close).ln());
    (Some(k), status, label)
}

/// Asserts one answered row against [`expected`] with precomputed vectors.
fn check_row(
    view: &View,
    row: &pb::HistoricalFeatureRow,
    bars: &[Bar],
    vectors: &[Vec<f64>],
    as_of: i64,
    h: usize,
) {
    let (k, status, label) = expected(view, bars, as_of, h);
    let what = format!("{} as of {as_of}", row.symbol);
    assert_eq!(row.timestamp.unwrap().seconds, as_of, "{what}");
    assert_eq!(row_status(row), status, "{what}");
    assert_eq!(row.label, label, "{what}: label");
    match k {
        None => {
            assert!(row.event_time.is_none(), "{what}");
            assert!(row.values.is_empty() && row.present.is_empty(), "{what}");
        }
        Some(k) => {
            assert_eq!(
                row.event_time.unwrap().seconds,
                view.event_time(bars[k].ts),
                "{what}: event time"
            );
            assert!(same_bits(&row.values, &vectors[k]), "{what}: values");
            let mask: Vec<bool> = if vectors[k].iter().any(|v| v.is_nan()) {
                vectors[k].iter().map(|v| !v.is_nan()).collect()
            } else {
                Vec::new()
            };
            assert_eq!(row.present, mask, "{what}: presence");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn historical_features_are_point_in_time_correct() {
    let view = View::compile(&default_view()).unwrap();
    let svc = Service::start(real_settings("fs-svc-pit", vec![default_view()])).await;
    let jump = jumpy("JUMP", T0, 120, 0);
    let alt = jumpy("ALT", T0 + 30 * DAY, 90, 5);
    svc.publish(&interleave(&[jump.clone(), alt.clone()])).await;
    await_online(&svc.client, &view, &[&jump, &alt]).await;
    let mut client = svc.client();
    let vj = view.compute(&jump);
    let va = view.compute(&alt);
    let e = |bars: &[Bar], k: usize| view.event_time(bars[k].ts);
    let n = jump.len();

    // The series exposes leakage: neighbouring vectors and labels differ sharply.
    let lr = view.names.iter().position(|f| f == "log_return_1").unwrap();
    assert!(
        (vj[60][lr] - vj[59][lr]).abs() > 0.02,
        "{} {}",
        vj[60][lr],
        vj[59][lr]
    );
    let l = |k: usize| (jump[k + H].close / jump[k].close).ln();
    assert!((l(60) - l(59)).abs() > 0.02);

    // (symbol, as-of seconds, as-of nanos)
    let asked: Vec<(&str, i64, i32)> = vec![
        ("JUMP", e(&jump, 60), 0),                  // exactly a vector's event time
        ("JUMP", e(&jump, 60) - 1, 0),              // 1 s before it: the previous vector
        ("JUMP", e(&jump, 60) - 1, 999_999_999),    // still before it
        ("JUMP", e(&jump, 60) + 3_600, 0),          // between two bars
        ("JUMP", e(&jump, 0) - 1, 0),               // before the first vector
        ("JUMP", e(&jump, 0), 0),                   // the first vector, warming up
        ("JUMP", e(&jump, n - 1 - H), 0),           // exactly H bars follow
        ("JUMP", e(&jump, n - H), 0),               // H - 1 bars follow: no label
        ("JUMP", e(&jump, n - 1), 0),               // the last vector
        ("JUMP", e(&jump, n - 1) + 10 * DAY, 0),    // past the max age: STALE
        ("JUMP", e(&jump, n - 1) + 4 * DAY, 0),     // exactly the max age: not stale yet
        ("JUMP", e(&jump, n - 1) + 4 * DAY + 1, 0), // 1 s older than the max age
        ("ALT", e(&alt, 0) - 1, 0),                 // JUMP has data then, ALT none
        ("ALT", e(&alt, 40), 0),
        ("UNKNOWN", e(&jump, 60), 0),
        ("JUMP", e(&jump, 60), 0), // a duplicate row
    ];
    let mut request = entity_rows(
        asked
            .iter()
            .map(|(s, t, nanos)| {
                (
                    *s,
                    Some(prost_types::Timestamp {
                        seconds: *t,
                        nanos: *nanos,
                    }),
                )
            })
            .collect(),
    );
    request.label = Some(pb::LabelSpec {
        horizon_bars: H as i32,
    });
    let chunks = historical(&mut client, request).await;
    assert_eq!(chunks.len(), 1);
    let header = chunks[0].header.as_ref().expect("header");
    assert_eq!(header.feature_names, view.names);
    assert_eq!(header.feature_view_version, 1);
    assert_eq!(header.total_rows, asked.len() as i64);
    let rows = &chunks[0].rows;
    assert_eq!(rows.len(), asked.len());
    for (row, (symbol, as_of, _)) in rows.iter().zip(&asked) {
        assert_eq!(row.symbol, *symbol);
        let (bars, vectors) = match *symbol {
            "JUMP" => (&jump[..], &vj[..]),
            "ALT" => (&alt[..], &va[..]),
            _ => (&[][..], &[][..]),
        };
        check_row(&view, row, bars, vectors, *as_of, H);
    }
    // The cases above, spelled out where leakage would show.
    assert!(same_bits(&rows[0].values, &vj[60]));
    assert_eq!(rows[0].label, Some(l(60)));
    assert!(same_bits(&rows[1].values, &vj[59]));
    assert_eq!(rows[1].label, Some(l(59)));
    assert!(same_bits(&rows[2].values, &vj[59]));
    assert_eq!(rows[4].label, None, "no label without a vector");
    assert!(rows[6].label.is_some() && rows[7].label.is_none() && rows[8].label.is_none());
    use pb::FeatureStatus::{NotFound, Present, Stale, WarmingUp};
    let statuses: Vec<pb::FeatureStatus> = rows.iter().map(row_status).collect();
    #[rustfmt::skip]
    let want = [
        Present, Present, Present, Present, NotFound, WarmingUp, Present, Present, Present,
        Stale, Present, Stale, NotFound, WarmingUp, NotFound, Present,
    ];
    assert_eq!(statuses, want);
    assert_eq!(rows[0], rows[15]);

    // A span query in chunks of 7 rows: header first only, rows by symbol then time.
    let total = jump.len() + alt.len();
    let chunks = historical(
        &mut client,
        span_request("default", 0, &["JUMP", "ALT"], 7, Some(H as i32)),
    )
    .await;
    assert_eq!(chunks.len(), total.div_ceil(7), "210 rows in chunks of 7");
    assert!(chunks[0].header.is_some());
    assert!(
        chunks[1..].iter().all(|c| c.header.is_none()),
        "header in the first chunk only"
    );
    assert!(chunks.iter().all(|c| c.rows.len() == 7));
    let rows: Vec<pb::HistoricalFeatureRow> = chunks.into_iter().flat_map(|c| c.rows).collect();
    assert_rows_exact(&view, &rows, &[&jump, &alt]);
    for row in &rows {
        let at = row.event_time.unwrap().seconds;
        let (bars, vectors) = if row.symbol == "JUMP" {
            (&jump[..], &vj[..])
        } else {
            (&alt[..], &va[..])
        };
        check_row(&view, row, bars, vectors, at, H);
    }

    // 30,000 entity rows stream in chunks, in request order.
    let many: Vec<(&str, i64)> = (0..30_000_i64)
        .map(|i| {
            let symbol = ["JUMP", "ALT", "NONE"][(i % 3) as usize];
            (symbol, T0 - 5 * DAY + (i * 7_919 * 3_600) % (140 * DAY))
        })
        .collect();
    let mut request = entity_rows(many.iter().map(|(s, t)| (*s, ts(*t))).collect());
    request.max_rows_per_chunk = 4_096;
    request.label = Some(pb::LabelSpec { horizon_bars: 3 });
    let chunks = historical(&mut client, request).await;
    let sizes: Vec<usize> = chunks.iter().map(|c| c.rows.len()).collect();
    let mut want_sizes = vec![4_096; 7];
    want_sizes.push(30_000 - 7 * 4_096);
    assert_eq!(sizes, want_sizes);
    assert_eq!(chunks[0].header.as_ref().unwrap().total_rows, 30_000);
    assert!(chunks[1..].iter().all(|c| c.header.is_none()));
    let mut found = 0;
    for (row, (symbol, as_of)) in chunks.iter().flat_map(|c| &c.rows).zip(&many) {
        assert_eq!(row.symbol, *symbol);
        let (bars, vectors) = match *symbol {
            "JUMP" => (&jump[..], &vj[..]),
            "ALT" => (&alt[..], &va[..]),
            _ => (&[][..], &[][..]),
        };
        check_row(&view, row, bars, vectors, *as_of, 3);
        found += usize::from(row.event_time.is_some());
    }
    assert!(
        found > 10_000,
        "most rows of known symbols find a vector: {found}"
    );

    let settings = svc.settings.clone();
    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}

// ---------------------------------------------------------------------------------------
// 4. materialization

async fn job(client: &mut Client, id: &str) -> pb::MaterializationJob {
    client
        .get_materialization_job(pb::GetMaterializationJobRequest {
            job_id: id.to_owned(),
        })
        .await
        .expect("GetMaterializationJob")
        .into_inner()
        .job
        .unwrap()
}

async fn await_succeeded(client: &Client, id: &str) -> pb::MaterializationJob {
    eventually("the materialization succeeds", || {
        let mut client = client.clone();
        let id = id.to_owned();
        async move {
            let j = job(&mut client, &id).await;
            assert_ne!(j.state, JobState::Failed as i32, "{j:?}");
            (j.state == JobState::Succeeded as i32).then_some(j)
        }
    })
    .await
}

/// Materializes `default` at `version` over every symbol, from [`T0`] to `end` (now when
/// unset).
fn materialize_request(version: i32, end: Option<i64>, request_id: &str) -> pb::MaterializeRequest {
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

async fn materialize(
    client: &mut Client,
    version: i32,
    end: Option<i64>,
    request_id: &str,
) -> pb::MaterializationJob {
    client
        .materialize(materialize_request(version, end, request_id))
        .await
        .expect("Materialize")
        .into_inner()
        .job
        .unwrap()
}

/// Consumes `all` with only `default` v1 served, so that v2 has no rows, and stops.
async fn consume_with_v1_only(settings: &Settings, all: &[&[Bar]]) {
    let view = View::compile(&default_view()).unwrap();
    let svc = Service::start(settings.clone()).await;
    let bars: Vec<Vec<Bar>> = all.iter().map(|s| s.to_vec()).collect();
    svc.publish(&interleave(&bars)).await;
    await_online(&svc.client, &view, all).await;
    svc.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialize_computes_a_new_version_from_the_stored_bars() {
    let a = series("MATA", 120, 1.0);
    let b = jumpy("MATB", T0 + 10 * DAY, 80, 3);
    let v2 = View::compile(&default_v2()).unwrap();
    let mut settings = real_settings("fs-svc-mat", vec![default_view()]);
    consume_with_v1_only(&settings, &[&a, &b]).await;

    settings.views = vec![default_view(), default_v2()];
    let svc = Service::start(settings.clone()).await;
    let mut client = svc.client();
    assert!(
        span_rows(&mut client, "default", 2, &["MATA", "MATB"])
            .await
            .is_empty(),
        "v2 has no rows for bars consumed before it was served"
    );
    let request_id = stockcast_testkit::unique("mat");
    let started = materialize(&mut client, 2, None, &request_id).await;
    assert_eq!(started.feature_view, "default");
    assert_eq!(started.feature_view_version, 2);
    assert_eq!(
        started.symbols,
        ["MATA", "MATB"],
        "every symbol with stored bars"
    );
    assert_eq!(started.chunks_total, 2, "one slice per symbol");
    let done = await_succeeded(&client, &started.job_id).await;
    assert_eq!(done.chunks_done, done.chunks_total);
    assert_eq!(done.vectors_written, 200);
    assert_eq!(done.bars_read, 200);
    assert!(done.finished_at.is_some() && done.started_at.is_some());
    assert!(done.error.is_empty(), "{}", done.error);

    let rows = span_rows(&mut client, "default", 2, &["MATA", "MATB"]).await;
    assert_rows_exact(&v2, &rows, &[&a, &b]);
    // The online store has v2's newest vectors (of 2020: stale).
    let r = online(&mut client, "default", 2, &["MATA", "MATB"]).await;
    assert_eq!(r.feature_names, v2.names);
    for (v, s) in r.vectors.iter().zip([&a, &b]) {
        assert_eq!(status_of(v), pb::FeatureStatus::Stale);
        assert_eq!(
            v.event_time.unwrap().seconds,
            v2.event_time(s.last().unwrap().ts)
        );
        assert!(same_bits(&v.values, &v2.compute(s).pop().unwrap()));
    }

    // A repeated request id returns the same job; another request starts another.
    let again = materialize(&mut client, 2, None, &request_id).await;
    assert_eq!(again.job_id, started.job_id);
    let other = materialize(&mut client, 2, None, "").await;
    assert_ne!(other.job_id, started.job_id);
    await_succeeded(&client, &other.job_id).await;
    let rows = span_rows(&mut client, "default", 2, &["MATA", "MATB"]).await;
    assert_rows_exact(&v2, &rows, &[&a, &b]);

    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_materialization_resumes_after_a_restart() {
    let a = series("RESA", 150, 1.0);
    let b = jumpy("RESB", T0 + 20 * DAY, 150, 4);
    let v2 = View::compile(&default_v2()).unwrap();
    let mut settings = real_settings("fs-svc-resume", vec![default_view()]);
    consume_with_v1_only(&settings, &[&a, &b]).await;

    // One bar per chunk: 2 symbols × 1,200 days = 2,400 chunks, one transaction each.
    settings.views = vec![default_view(), default_v2()];
    settings.materialize.chunk_bars = 1;
    let end = T0 + 1_200 * DAY;
    let svc = Service::start(settings.clone()).await;
    let mut client = svc.client();
    let started = materialize(&mut client, 2, Some(end), "").await;
    assert_eq!(started.chunks_total, 2_400);
    // Stop once it has made some progress.
    eventually("the first chunks", || {
        let mut client = client.clone();
        let id = started.job_id.clone();
        async move { (job(&mut client, &id).await.chunks_done >= 10).then_some(()) }
    })
    .await;
    let offline = svc.deps.offline.clone();
    drop(client);
    svc.stop().await.expect("clean stop");
    let id = uuid::Uuid::parse_str(&started.job_id).unwrap();
    let interrupted = offline.job(id).await.unwrap().unwrap();
    assert!(
        interrupted.chunks_done < interrupted.chunks_total,
        "the job was stopped before its end: {interrupted:?}"
    );
    assert_eq!(
        interrupted.state,
        stockcast_feature_store::store::JobState::Running
    );

    // A new instance on the same stores resumes it.
    let svc = Service::start(settings.clone()).await;
    let mut client = svc.client();
    let done = await_succeeded(&client, &started.job_id).await;
    assert_eq!(done.chunks_done, 2_400);
    assert_eq!(done.chunks_total, 2_400);
    assert_eq!(done.vectors_written, 300, "every vector counted once");
    assert_eq!(done.bars_read, 300, "every bar read once");
    let rows = span_rows(&mut client, "default", 2, &["RESA", "RESB"]).await;
    assert_rows_exact(&v2, &rows, &[&a, &b]);

    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}

// ---------------------------------------------------------------------------------------
// 5. the view catalog

fn momentum() -> ViewSpec {
    ViewSpec {
        name: "momentum".to_owned(),
        version: 1,
        current: false,
        description: "Short-term momentum".to_owned(),
        interval: stockcast_market::Interval::D1,
        max_age: std::time::Duration::from_secs(2 * DAY as u64),
        online_ttl: None,
        features: vec![
            FeatureSpec {
                name: "rsi_7".into(),
                indicator: "rsi".into(),
                params: [("period".to_owned(), "7".to_owned())].into(),
            },
            FeatureSpec {
                name: "ret_3".into(),
                indicator: "log_return".into(),
                params: [("bars".to_owned(), "3".to_owned())].into(),
            },
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_views_are_listed_in_pages_and_described() {
    let settings = real_settings(
        "fs-svc-views",
        vec![momentum(), default_v2(), default_view()],
    );
    let svc = Service::start(settings.clone()).await;
    let mut c = svc.client();
    let list = |size: i32, token: String, all: bool| pb::ListFeatureViewsRequest {
        page_size: size,
        page_token: token,
        all_versions: all,
    };
    let current = c
        .list_feature_views(list(0, String::new(), false))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<(String, i32, bool)> = current
        .views
        .iter()
        .map(|v| (v.name.clone(), v.version, v.current))
        .collect();
    assert_eq!(
        ids,
        [("default".into(), 1, true), ("momentum".into(), 1, true)],
        "current versions only, by name"
    );
    assert!(current.next_page_token.is_empty());

    // Every version, one per page.
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = c
            .list_feature_views(list(1, token, true))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.views.len(), 1);
        seen.push((
            page.views[0].name.clone(),
            page.views[0].version,
            page.views[0].current,
        ));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        [
            ("default".into(), 1, true),
            ("default".into(), 2, false),
            ("momentum".into(), 1, true)
        ]
    );
    let two = c
        .list_feature_views(list(2, String::new(), true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(two.views.len(), 2);
    let rest = c
        .list_feature_views(list(2, two.next_page_token.clone(), true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.views.len(), 1);
    assert_eq!(rest.views[0].name, "momentum");
    assert!(rest.next_page_token.is_empty());

    // The default view, described.
    let get = |name: &str, version: i32| pb::GetFeatureViewRequest {
        name: name.to_owned(),
        version,
    };
    let v = c
        .get_feature_view(get("default", 0))
        .await
        .unwrap()
        .into_inner()
        .view
        .unwrap();
    assert_eq!((v.version, v.current), (1, true));
    assert_eq!(v.warmup_bars, 50);
    // Recorded when the version was first served: by this test's service, moments ago.
    let created = v.created_at.expect("created_at").seconds;
    assert!(
        (chrono::Utc::now().timestamp() - created).abs() < 600,
        "created_at {created}"
    );
    assert_eq!(v.max_age.unwrap().seconds, 4 * DAY);
    assert_eq!(
        v.interval,
        stockcast_proto::stockcast::types::v1::Interval::from(stockcast_market::Interval::D1)
            as i32
    );
    let lookback = |name: &str| {
        v.features
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name}"))
            .lookback_bars
    };
    assert_eq!(lookback("log_return_1"), 2);
    assert_eq!(lookback("log_return_20"), 21);
    assert_eq!(lookback("close_sma_50"), 50);
    assert_eq!(lookback("rsi_14"), 15);
    assert_eq!(lookback("macd_line"), 34);
    assert_eq!(lookback("atr_14"), 15);
    assert_eq!(lookback("hl_range"), 1);
    let names: Vec<&str> = v.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, View::compile(&default_view()).unwrap().names);
    let rsi = v.features.iter().find(|f| f.name == "rsi_14").unwrap();
    assert_eq!(rsi.indicator, "rsi");
    assert_eq!(rsi.params.get("period").map(String::as_str), Some("14"));

    let v2 = c
        .get_feature_view(get("default", 2))
        .await
        .unwrap()
        .into_inner()
        .view
        .unwrap();
    assert_eq!((v2.version, v2.current, v2.features.len()), (2, false, 5));
    assert_eq!(v2.description, "Returns and trend only");
    assert_eq!(v2.warmup_bars, 50, "close_sma_50 is among the first five");
    let m = c
        .get_feature_view(get("momentum", 0))
        .await
        .unwrap()
        .into_inner()
        .view
        .unwrap();
    assert_eq!(m.warmup_bars, 8);
    assert_eq!(m.max_age.unwrap().seconds, 2 * DAY);
    assert_status(
        c.get_feature_view(get("default", 3)).await,
        Code::NotFound,
        "version 3",
    );

    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}

// ---------------------------------------------------------------------------------------
// 6. a changed definition needs a new version

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_definition_under_a_served_version_is_refused_at_start() {
    let mut settings = real_settings("fs-svc-changed", vec![default_view()]);
    Service::start(settings.clone())
        .await
        .stop()
        .await
        .expect("first start");

    let mut changed = default_view();
    changed.features[6]
        .params
        .insert("period".into(), "21".into());
    settings.views = vec![changed.clone()];
    let deps = Deps::from_settings(&settings, &stockcast_runtime::Shutdown::new())
        .await
        .expect("backends");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(
        DEADLINE,
        stockcast_feature_store::serve(
            listener,
            settings.clone(),
            deps,
            stockcast_runtime::Shutdown::new(),
        ),
    )
    .await
    .expect("serve returns at once");
    let message = result.expect_err("a changed v1 is refused").to_string();
    assert!(message.contains("default:v1"), "{message}");
    assert!(
        message.contains("declare the change as a new version"),
        "{message}"
    );

    // The same change as version 2 is served next to the unchanged version 1.
    changed.version = 2;
    changed.current = false;
    settings.views = vec![default_view(), changed];
    let svc = Service::start(settings.clone()).await;
    let mut c = svc.client();
    let v2 = c
        .get_feature_view(pb::GetFeatureViewRequest {
            name: "default".into(),
            version: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .view
        .unwrap();
    assert_eq!(
        v2.features[6].params.get("period").map(String::as_str),
        Some("21")
    );
    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}
