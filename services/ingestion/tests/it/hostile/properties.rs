//! The property suite: every RPC with random and extreme values, through the real gRPC
//! server on the embedded backends. Each answer is OK or a refusal naming the field (never
//! INTERNAL or UNKNOWN, never past the deadline), and a refusal changes no stored state.

use std::future::Future;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::types::v1::{Bar, TimeRange};
use stockcast_testkit::hostile::{self, check_answer};

use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;

use crate::support::embedded::{CALL_DEADLINE, Embedded};

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
            .prop_map(|(seed, [a, b, c, d], [e, f, g, h])| Some(Params::Synthetic(
                pb::SyntheticParams {
                    seed,
                    initial_price: a,
                    annual_drift: b,
                    annual_volatility: c,
                    turbulent_volatility_multiplier: d,
                    regime_switch_probability: e,
                    jumps_per_year: f,
                    jump_volatility: g.min(h),
                }
            ))),
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
