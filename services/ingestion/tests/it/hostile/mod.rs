//! Hostile input to the ingestion service, on its embedded backends: each case is a defect
//! found by probing the service as a careless client or an attacker would, kept as a
//! regression test.

mod properties;

use std::time::Duration;

use crate::support::embedded::Embedded;
use crate::support::service::eventually;
use stockcast_market::Interval;
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::types::v1::{Bar, Interval as PbInterval, RejectReason, TimeRange};
use tonic::Code;

/// 2024-01-02 00:00 UTC, a Tuesday.
const DAY0: i64 = 1_704_153_600;
const DAY: i64 = 86_400;

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn daily(symbol: &str, at: i64) -> Bar {
    Bar {
        symbol: symbol.to_owned(),
        interval: PbInterval::Interval1Day as i32,
        ts: ts(at),
        open: 100.0,
        high: 101.0,
        low: 99.0,
        close: 100.5,
        volume: 1_000.0,
        source: String::new(),
    }
}

fn synthetic(params: pb::SyntheticParams) -> pb::StartBackfillRequest {
    pb::StartBackfillRequest {
        symbols: vec!["SYN".to_owned()],
        source: pb::BackfillSource::Synthetic as i32,
        interval: PbInterval::Interval1Day as i32,
        range: Some(TimeRange {
            start: ts(DAY0),
            end: ts(DAY0 + 10 * DAY),
        }),
        params: Some(pb::start_backfill_request::Params::Synthetic(params)),
        request_id: String::new(),
    }
}

async fn jobs(service: &Embedded) -> Vec<pb::BackfillJob> {
    service
        .client
        .clone()
        .list_backfills(pb::ListBackfillsRequest::default())
        .await
        .expect("list backfills")
        .into_inner()
        .jobs
}

async fn stored(service: &Embedded, symbol: &str) -> usize {
    service
        .store
        .bars(symbol, Interval::D1, i64::MIN, i64::MAX)
        .await
        .expect("bars")
        .len()
}

#[tokio::test]
async fn out_of_domain_synthetic_parameters_are_refused_before_a_job_is_stored() {
    let service = Embedded::start(|_| {}).await;
    let cases = [
        (
            "annual_volatility",
            pb::SyntheticParams {
                annual_volatility: f64::NAN,
                ..Default::default()
            },
        ),
        (
            "initial_price",
            pb::SyntheticParams {
                initial_price: f64::INFINITY,
                ..Default::default()
            },
        ),
        (
            "annual_drift",
            pb::SyntheticParams {
                annual_drift: f64::NEG_INFINITY,
                ..Default::default()
            },
        ),
        (
            "annual_volatility",
            pb::SyntheticParams {
                annual_volatility: -0.1,
                ..Default::default()
            },
        ),
        (
            "regime_switch_probability",
            pb::SyntheticParams {
                regime_switch_probability: 1.5,
                ..Default::default()
            },
        ),
    ];
    for (field, params) in cases {
        let status = service
            .client
            .clone()
            .start_backfill(synthetic(params))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().contains(&format!("synthetic.{field}")),
            "{field}: {}",
            status.message()
        );
    }
    assert!(jobs(&service).await.is_empty(), "a refused job was stored");
    service.stop().await;
}

#[tokio::test]
async fn an_unreadable_job_row_breaks_neither_listing_nor_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ingestion.db").display());
    let configure = |s: &mut stockcast_ingestion::Settings| {
        s.storage.url = stockcast_runtime::Secret::new(url.as_str());
    };
    let service = Embedded::start(configure).await;
    let good = service
        .client
        .clone()
        .start_backfill(synthetic(pb::SyntheticParams::default()))
        .await
        .expect("valid backfill")
        .into_inner()
        .job
        .unwrap();
    // A row an older version could write: a spec that no longer reads back.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let bad = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO backfill_jobs (job_id, spec, state, created_at, updated_at) \
         VALUES (?, '{\"symbols\":[\"SYN\"],\"interval\":\"1d\",\"start\":0,\"end\":1,\
         \"params\":{\"source\":\"synthetic\",\"annual_volatility\":null}}', 'running', 0, 0)",
    )
    .bind(bad.to_string())
    .execute(&pool)
    .await
    .unwrap();

    let listed = jobs(&service).await;
    assert_eq!(
        listed.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(),
        vec![good.job_id.as_str()],
        "the readable job is listed, the unreadable one skipped"
    );
    let status = service
        .client
        .clone()
        .get_backfill(pb::GetBackfillRequest {
            job_id: bad.to_string(),
        })
        .await
        .expect_err("unreadable job");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    service.stop().await;

    // Start-up resumes what it can read and serves.
    let service = Embedded::start(configure).await;
    assert_eq!(jobs(&service).await.len(), 1);
    service.stop().await;
}

#[tokio::test]
async fn bar_timestamps_before_1900_are_rejected_and_gap_listing_stays_cheap() {
    let service = Embedded::start(|_| {}).await;
    // -9223372036854720000 is a whole minute, and a whole day too far back.
    let ancient = -9_223_372_036_854_720_000 / DAY * DAY;
    let before_1900 = -2_208_988_800 - DAY;
    let bars = vec![
        daily("OLD", ancient),
        daily("OLD", before_1900),
        daily("OLD", DAY0),
    ];
    let response = service
        .client
        .clone()
        .push_bars(tokio_stream::iter([pb::PushBarsRequest {
            bars,
            ..Default::default()
        }]))
        .await
        .expect("push")
        .into_inner();
    assert_eq!((response.accepted, response.rejected), (1, 2));
    for rejection in &response.rejections {
        assert_eq!(rejection.field, "ts");
        assert_eq!(rejection.reason_code, RejectReason::InvalidTimestamp as i32);
        assert!(rejection.reason.contains("1900"), "{}", rejection.reason);
    }
    let symbols = service
        .client
        .clone()
        .list_symbols(pb::ListSymbolsRequest {
            include_gaps: true,
            ..Default::default()
        })
        .await
        .expect("list symbols")
        .into_inner()
        .symbols;
    assert_eq!(symbols.len(), 1);
    assert_eq!(symbols[0].bar_count, 1);

    for (field, range) in [
        (
            "range.start",
            TimeRange {
                start: ts(before_1900),
                end: ts(DAY0),
            },
        ),
        (
            "range.end",
            TimeRange {
                start: ts(DAY0),
                end: ts(253_402_214_400), // 9999-12-31
            },
        ),
    ] {
        let mut request = synthetic(pb::SyntheticParams::default());
        request.range = Some(range);
        let status = service
            .client
            .clone()
            .start_backfill(request)
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::OutOfRange, "{field}: {status:?}");
        assert!(status.message().contains(field), "{}", status.message());
    }
    assert!(jobs(&service).await.is_empty());
    service.stop().await;
}

#[tokio::test]
async fn backfills_too_large_or_for_impossible_symbols_are_refused_before_starting() {
    let service = Embedded::start(|_| {}).await;
    let mut huge = synthetic(pb::SyntheticParams::default());
    huge.interval = PbInterval::Interval1Minute as i32;
    huge.range = Some(TimeRange {
        start: ts(-2_208_988_800),
        end: ts(DAY0),
    });
    let status = service
        .client
        .clone()
        .start_backfill(huge)
        .await
        .expect_err("a job of billions of bars");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("range"), "{}", status.message());

    for symbol in ["abc", "🦀", "../../etc", "A\0B", ""] {
        let mut request = synthetic(pb::SyntheticParams::default());
        request.symbols = vec!["OK".to_owned(), symbol.to_owned()];
        let status = service
            .client
            .clone()
            .start_backfill(request)
            .await
            .expect_err(symbol);
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{symbol:?}: {status:?}"
        );
        assert!(
            status.message().contains("symbols[1]"),
            "{}",
            status.message()
        );
    }
    assert!(jobs(&service).await.is_empty());
    service.stop().await;
}

#[tokio::test]
async fn csv_paths_outside_the_csv_directory_are_refused_without_saying_where_or_whether() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("x.csv"),
        "Date,Open,High,Low,Close,Volume\n",
    )
    .unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path().join("x.csv"), root.path().join("link.csv")).unwrap();
    let dir = root.path().to_owned();
    let service = Embedded::start(move |s| s.ingest.csv_dir = dir).await;
    let secret_dir = root.path().display().to_string();
    let paths = [
        "/etc/passwd".to_owned(),
        "/proc/self/environ".to_owned(),
        "../x.csv".to_owned(),
        "a/../../x.csv".to_owned(),
        outside.path().join("x.csv").display().to_string(),
        "link.csv".to_owned(),
        "missing/../../nope.csv".to_owned(),
        "with\0nul.csv".to_owned(),
    ];
    for path in paths {
        let request = pb::StartBackfillRequest {
            symbols: vec!["CSV".to_owned()],
            source: pb::BackfillSource::Csv as i32,
            interval: PbInterval::Interval1Day as i32,
            range: Some(TimeRange {
                start: ts(DAY0),
                end: ts(DAY0 + DAY),
            }),
            params: Some(pb::start_backfill_request::Params::Csv(pb::CsvParams {
                path: path.clone(),
                ..Default::default()
            })),
            request_id: String::new(),
        };
        let status = service
            .client
            .clone()
            .start_backfill(request)
            .await
            .expect_err(&path);
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert!(
            status.message().contains("csv.path"),
            "{}",
            status.message()
        );
        assert!(
            !status.message().contains(&secret_dir),
            "the csv directory leaked: {}",
            status.message()
        );
        for word in ["exist", "No such file", "not found"] {
            assert!(
                !status.message().contains(word),
                "whether the file exists leaked: {}",
                status.message()
            );
        }
    }
    assert!(jobs(&service).await.is_empty());
    service.stop().await;
}

#[tokio::test]
async fn a_cancelled_push_keeps_only_the_complete_batches_before_the_break() {
    let service = Embedded::start(|s| s.ingest.batch_size = 50).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let bars: Vec<Bar> = (0..120).map(|d| daily("CNCL", DAY0 + d * DAY)).collect();
    tx.send(pb::PushBarsRequest {
        bars,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut client = service.client.clone();
    let call = tokio::spawn(async move {
        client
            .push_bars(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // Two complete batches of 50 are stored while the stream stays open.
    eventually("two batches stored", Duration::from_secs(10), || async {
        (stored(&service, "CNCL").await == 100).then_some(())
    })
    .await;
    // The client gives up on the call; its request stream then ends (tonic half-closes it
    // and resets the call, in that order).
    call.abort();
    let _ = call.await;
    drop(tx);
    // A later stream on the same connection is served; the 20 bars of the open batch are not
    // stored by then or later.
    let response = service
        .client
        .clone()
        .push_bars(tokio_stream::iter([pb::PushBarsRequest {
            bars: vec![daily("AFTER", DAY0)],
            ..Default::default()
        }]))
        .await
        .expect("push after cancel")
        .into_inner();
    assert_eq!(response.accepted, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored(&service, "CNCL").await, 100);
    service.stop().await;
}

#[tokio::test]
async fn a_push_that_fails_reports_exactly_what_was_stored_and_rejections_are_short() {
    let service = Embedded::start(|s| s.ingest.batch_size = 2).await;
    let huge = "X".repeat(9 << 20);
    let response = service
        .client
        .clone()
        .push_bars(tokio_stream::iter([
            pb::PushBarsRequest {
                bars: vec![daily("GOOD", DAY0)],
                ..Default::default()
            },
            pb::PushBarsRequest {
                bars: vec![daily(&huge, DAY0)],
                ..Default::default()
            },
        ]))
        .await
        .expect("a rejected bar does not fail the stream")
        .into_inner();
    assert_eq!((response.accepted, response.rejected), (1, 1));
    let rejection = &response.rejections[0];
    assert_eq!(rejection.field, "symbol");
    assert!(rejection.symbol.len() <= 256, "{}", rejection.symbol.len());
    assert!(rejection.reason.len() <= 512, "{}", rejection.reason.len());
    assert!(rejection.reason.contains("bytes"), "{}", rejection.reason);

    // A stream that breaks (here: a message over the size limit) says exactly which bars
    // are stored: the complete batch before the break, not the open one.
    let bars: Vec<Bar> = (0..3).map(|d| daily("BRK", DAY0 + d * DAY)).collect();
    let oversize = "Y".repeat(service.settings.server.max_message_bytes + 1);
    let status = service
        .client
        .clone()
        .push_bars(tokio_stream::iter([
            pb::PushBarsRequest {
                bars,
                ..Default::default()
            },
            pb::PushBarsRequest {
                bars: vec![daily(&oversize, DAY0)],
                ..Default::default()
            },
        ]))
        .await
        .expect_err("a message over the limit breaks the stream");
    // Where the break is seen depends on how far the server read ahead (at most the one
    // complete batch of two); the answer must name it exactly.
    let message = status.message();
    let index: usize = message
        .split("bars before index ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stored index in {message}"));
    assert!(index == 0 || index == 2, "{message}");
    assert!(message.len() < 1_024, "{}", message.len());
    assert_eq!(stored(&service, "BRK").await, index, "{message}");
    service.stop().await;
}
