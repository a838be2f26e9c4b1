//! Hostile input to the ingestion service, on its embedded backends: each case is a defect
//! found by probing the service as a careless client or an attacker would, kept as a
//! regression test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use stockcast_market::Interval;
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::types::v1::{Bar, Interval as PbInterval, RejectReason, TimeRange};
use support::embedded::Embedded;
use support::service::eventually;
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

/// The property suite: every RPC with random and extreme values, through the real gRPC
/// server on the embedded backends. Each answer is OK or a refusal naming the field (never
/// INTERNAL or UNKNOWN, never past the deadline), and a refusal changes no stored state.
mod properties {
    use std::future::Future;

    use proptest::prelude::*;
    use proptest::test_runner::TestRunner;
    use stockcast_proto::stockcast::ingestion::v1 as pb;
    use stockcast_proto::stockcast::types::v1::{Bar, TimeRange};
    use stockcast_testkit::hostile::{self, check_answer};

    use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;

    use super::support::embedded::{CALL_DEADLINE, Embedded};

    type Client = IngestionServiceClient<tonic::transport::Channel>;

    /// Runs `property` over `strategy` against one service started with `configure`.
    fn run<S, F, Fut>(strategy: S, property: F)
    where
        S: Strategy,
        S::Value: std::fmt::Debug,
        F: Fn(Client, S::Value) -> Fut,
        Fut: Future<Output = Result<(), TestCaseError>>,
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        std::fs::write(
            root.join("ok.csv"),
            "Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,10\n",
        )
        .unwrap();
        let service = rt.block_on(Embedded::start(move |s| {
            s.ingest.csv_dir = root;
            s.ingest.backfill_concurrency = 1;
        }));
        let mut runner = TestRunner::new(hostile::config());
        let result = runner.run(&strategy, |case| {
            let service = service.client.clone();
            rt.block_on(async {
                tokio::time::timeout(CALL_DEADLINE * 2, property(service, case))
                    .await
                    .map_err(|_| TestCaseError::fail("no answer within the deadline"))?
            })
        });
        rt.block_on(service.stop());
        if let Err(error) = result {
            panic!("{error}");
        }
    }

    async fn stored_bars(service: &Client) -> i64 {
        service
            .clone()
            .list_symbols(pb::ListSymbolsRequest {
                page_size: 1_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .symbols
            .iter()
            .map(|s| s.bar_count)
            .sum()
    }

    async fn job_count(service: &Client) -> usize {
        service
            .clone()
            .list_backfills(pb::ListBackfillsRequest {
                page_size: 1_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .jobs
            .len()
    }

    fn bar() -> impl Strategy<Value = Bar> {
        (
            prop_oneof![3 => Just("PROP".to_owned()), 1 => hostile::string()],
            prop_oneof![3 => 1..=6i32, 1 => hostile::int32()],
            hostile::timestamp(),
            [
                hostile::float(),
                hostile::float(),
                hostile::float(),
                hostile::float(),
            ],
            hostile::float(),
        )
            .prop_map(
                |(symbol, interval, ts, [open, high, low, close], volume)| Bar {
                    symbol,
                    interval,
                    ts,
                    open,
                    high,
                    low,
                    close,
                    volume,
                    source: String::new(),
                },
            )
    }

    #[test]
    fn push_bars() {
        let messages = prop::collection::vec(prop::collection::vec(bar(), 0..4), 1..3);
        run(messages, |service, messages| async move {
            let sent: i64 = messages.iter().map(|m| m.len() as i64).sum();
            let before = stored_bars(&service).await;
            let answer = service
                .clone()
                .push_bars(tokio_stream::iter(messages.into_iter().map(|bars| {
                    pb::PushBarsRequest {
                        bars,
                        ..Default::default()
                    }
                })))
                .await
                .map(tonic::Response::into_inner);
            let refused = check_answer("PushBars", &answer, &["bars", "lines"])?;
            let after = stored_bars(&service).await;
            if refused {
                prop_assert_eq!(after, before, "a refused push stored bars");
            } else if let Ok(r) = answer {
                prop_assert_eq!(r.accepted + r.rejected + r.duplicates + r.corrections, sent);
                prop_assert_eq!(after, before + r.accepted);
                for rejection in &r.rejections {
                    prop_assert!(!rejection.field.is_empty() || rejection.reason_code != 0);
                    prop_assert!(rejection.symbol.len() <= 256 && rejection.reason.len() <= 512);
                }
            }
            Ok(())
        });
    }

    fn backfill() -> impl Strategy<Value = pb::StartBackfillRequest> {
        use pb::start_backfill_request::Params;
        let params = prop_oneof![
            Just(None),
            hostile::string().prop_map(|path| Some(Params::Csv(pb::CsvParams {
                path,
                ..Default::default()
            }))),
            Just(Some(Params::Csv(pb::CsvParams {
                path: "ok.csv".to_owned(),
                symbol: "OK".to_owned(),
                time_zone: String::new(),
            }))),
            (
                any::<u64>(),
                [
                    hostile::float(),
                    hostile::float(),
                    hostile::float(),
                    hostile::float()
                ],
                [
                    hostile::float(),
                    hostile::float(),
                    hostile::float(),
                    hostile::float()
                ]
            )
                .prop_map(|(seed, [a, b, c, d], [e, f, g, h])| Some(
                    Params::Synthetic(pb::SyntheticParams {
                        seed,
                        initial_price: a,
                        annual_drift: b,
                        annual_volatility: c,
                        turbulent_volatility_multiplier: d,
                        regime_switch_probability: e,
                        jumps_per_year: f,
                        jump_volatility: g.min(h),
                    })
                )),
            hostile::int32().prop_map(|output_size| Some(Params::AlphaVantage(
                pb::AlphaVantageParams {
                    output_size,
                    extended_hours: false
                }
            ))),
        ];
        (
            prop::collection::vec(
                prop_oneof![2 => Just("SYN".to_owned()), 1 => hostile::string()],
                0..3,
            ),
            prop_oneof![3 => 1..=3i32, 1 => hostile::int32()],
            prop_oneof![3 => 1..=6i32, 1 => hostile::int32()],
            prop::option::weighted(0.9, (hostile::timestamp(), hostile::timestamp())),
            params,
            prop_oneof![Just(String::new()), hostile::string()],
        )
            .prop_map(|(symbols, source, interval, range, params, request_id)| {
                pb::StartBackfillRequest {
                    symbols,
                    source,
                    interval,
                    range: range.map(|(start, end)| TimeRange { start, end }),
                    params,
                    request_id,
                }
            })
    }

    #[test]
    fn start_backfill() {
        let fields = [
            "range",
            "symbols",
            "source",
            "interval",
            "synthetic.",
            "csv.",
            "alpha_vantage",
            "params",
            "request_id",
        ];
        run(backfill(), move |service, request| async move {
            let before = job_count(&service).await;
            let answer = service.clone().start_backfill(request).await;
            if check_answer("StartBackfill", &answer, &fields)? {
                prop_assert_eq!(
                    job_count(&service).await,
                    before,
                    "a refused job was stored"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn get_backfill_list_backfills_list_symbols_get_status() {
        let strategy = (
            hostile::string(),
            hostile::int32(),
            hostile::string(),
            hostile::int32(),
            hostile::string(),
            any::<bool>(),
        );
        run(
            strategy,
            |service, (job_id, page_size, token, state, symbol, gaps)| async move {
                let mut client = service;
                let answer = client.get_backfill(pb::GetBackfillRequest { job_id }).await;
                prop_assert!(answer.is_err(), "no job exists");
                check_answer("GetBackfill", &answer, &["job_id"])?;
                let answer = client
                    .list_backfills(pb::ListBackfillsRequest {
                        page_size,
                        page_token: token.clone(),
                        state,
                        symbol: symbol.clone(),
                    })
                    .await;
                check_answer(
                    "ListBackfills",
                    &answer,
                    &["page_size", "page_token", "state", "symbol"],
                )?;
                let answer = client
                    .list_symbols(pb::ListSymbolsRequest {
                        interval: state,
                        symbol_prefix: symbol,
                        page_size,
                        page_token: token,
                        include_gaps: gaps,
                    })
                    .await;
                check_answer(
                    "ListSymbols",
                    &answer,
                    &["page_size", "page_token", "interval", "symbol_prefix"],
                )?;
                let status = client.get_status(pb::GetStatusRequest {}).await;
                prop_assert!(status.is_ok(), "GetStatus: {:?}", status.err());
                Ok(())
            },
        );
    }
}
