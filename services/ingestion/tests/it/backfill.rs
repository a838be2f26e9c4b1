//! Backfills end to end, in-process on a real PostgreSQL and Kafka-protocol broker: a
//! synthetic job stores and publishes exactly what the generator produces; jobs are
//! idempotent by request id, listed in pages, and reflected in symbol coverage; invalid
//! requests name their field.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::service::{Service, read_to_marker, settings};
use stockcast_ingestion::store::BarStore;
use stockcast_market::sources::synthetic::{SyntheticParams, SyntheticPath, SyntheticSource};
use stockcast_market::sources::{BackfillSpec, Source, SourceParams, SourceRecord};
use stockcast_market::{Bar, Interval};
use stockcast_proto::stockcast::events::v1::{IngestPath, MarketBarEvent};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use stockcast_proto::stockcast::ingestion::v1::start_backfill_request::Params;
use stockcast_proto::stockcast::types::v1::{Interval as PbInterval, JobState, TimeRange};
use tonic::transport::Channel;

/// 2022-01-03 00:00 UTC, a Monday.
const START: i64 = 1_641_168_000;
/// 2024-01-01 00:00 UTC: two years of weekdays, 520 daily bars per symbol.
const END: i64 = 1_704_067_200;
/// 2100-01-01 00:00 UTC: after every bar of these tests.
const Y2100: i64 = 4_102_444_800;
const SYMBOLS: [&str; 3] = ["SYNA", "SYNB", "SYNC"];
const JOB_DEADLINE: Duration = Duration::from_secs(60);

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// Every parameter set to a non-default value, so the test does not depend on how zeros
/// are read.
fn params() -> SyntheticParams {
    SyntheticParams {
        seed: 7,
        initial_price: 50.0,
        annual_drift: 0.08,
        annual_volatility: 0.3,
        turbulent_volatility_multiplier: 2.5,
        regime_switch_probability: 0.01,
        jumps_per_year: 6.0,
        jump_volatility: 0.05,
    }
}

fn proto_params(p: &SyntheticParams) -> pb::SyntheticParams {
    pb::SyntheticParams {
        seed: p.seed,
        initial_price: p.initial_price,
        annual_drift: p.annual_drift,
        annual_volatility: p.annual_volatility,
        turbulent_volatility_multiplier: p.turbulent_volatility_multiplier,
        regime_switch_probability: p.regime_switch_probability,
        jumps_per_year: p.jumps_per_year,
        jump_volatility: p.jump_volatility,
    }
}

fn request(symbols: &[&str], start: i64, end: i64, request_id: &str) -> pb::StartBackfillRequest {
    pb::StartBackfillRequest {
        symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
        source: pb::BackfillSource::Synthetic as i32,
        interval: PbInterval::Interval1Day as i32,
        range: Some(TimeRange {
            start: ts(start),
            end: ts(end),
        }),
        params: Some(Params::Synthetic(proto_params(&params()))),
        request_id: request_id.to_owned(),
    }
}

/// What the synthetic source itself produces for `symbol` in the spec, chunk by chunk.
async fn generated(spec: &BackfillSpec, symbol: &str) -> Vec<Bar> {
    let source = SyntheticSource;
    let mut bars = Vec::new();
    for chunk in source.plan(spec).await.expect("plan") {
        if chunk.symbol.as_deref() != Some(symbol) {
            continue;
        }
        for record in source.fetch(spec, &chunk).await.expect("fetch") {
            match record {
                SourceRecord::Bar(bar) => bars.push(bar),
                other => panic!("the generator made a record that is not a bar: {other:?}"),
            }
        }
    }
    bars
}

async fn start(
    client: &mut IngestionServiceClient<Channel>,
    request: pb::StartBackfillRequest,
) -> pb::BackfillJob {
    client
        .start_backfill(request)
        .await
        .expect("start backfill")
        .into_inner()
        .job
        .expect("job")
}

/// Polls the job until it succeeds; panics if it fails or the deadline passes.
async fn succeeded(client: &mut IngestionServiceClient<Channel>, job_id: &str) -> pb::BackfillJob {
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let job = client
            .get_backfill(pb::GetBackfillRequest {
                job_id: job_id.to_owned(),
            })
            .await
            .expect("get backfill")
            .into_inner()
            .job
            .expect("job");
        match JobState::try_from(job.state) {
            Ok(JobState::Succeeded) => return job,
            Ok(JobState::Failed | JobState::Cancelled) => panic!("job ended badly: {job:?}"),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "job not done within {JOB_DEADLINE:?}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synthetic_backfill_stores_and_publishes_exactly_the_generated_bars() {
    // Batches of 200: each symbol's chunk of 520 bars is stored in three transactions.
    let service = Service::start(settings("backfill", |s| s.ingest.batch_size = 200)).await;
    let mut client = service.client.clone();
    let spec = BackfillSpec {
        symbols: SYMBOLS.iter().map(|s| (*s).to_owned()).collect(),
        interval: Interval::D1,
        start: START,
        end: END,
        params: SourceParams::Synthetic(params()),
    };
    let mut expected = Vec::new();
    for symbol in SYMBOLS {
        let bars = generated(&spec, symbol).await;
        let path: Vec<Bar> = SyntheticPath::new(symbol, Interval::D1, START, &params())
            .unwrap()
            .take_while(|b| b.ts < END)
            .collect();
        assert_eq!(bars, path, "the source's chunks are the path of {symbol}");
        assert_eq!(bars.len(), 520, "two years of weekdays");
        expected.push(bars);
    }
    let total: usize = expected.iter().map(Vec::len).sum();

    let request_id = uuid::Uuid::new_v4().to_string();
    let job = start(&mut client, request(&SYMBOLS, START, END, &request_id)).await;
    assert!(!job.job_id.is_empty());
    let again = start(&mut client, request(&SYMBOLS, START, END, &request_id)).await;
    assert_eq!(again.job_id, job.job_id, "same request_id, same job");

    let done = succeeded(&mut client, &job.job_id).await;
    assert_eq!(done.chunks_total, 3, "one chunk per symbol: {done:?}");
    assert_eq!(done.chunks_done, done.chunks_total, "{done:?}");
    assert_eq!(
        (
            done.bars_accepted,
            done.bars_rejected,
            done.bars_duplicate,
            done.bars_corrected
        ),
        (total as i64, 0, 0, 0),
        "{done:?}"
    );
    assert_eq!(done.resumes, 0);
    assert_eq!(done.error, "");
    assert_eq!(done.source, pb::BackfillSource::Synthetic as i32);
    assert_eq!(done.interval, PbInterval::Interval1Day as i32);
    assert_eq!(done.symbols, SYMBOLS);
    assert_eq!(
        done.range,
        Some(TimeRange {
            start: ts(START),
            end: ts(END)
        })
    );
    assert!(done.started_at.is_some() && done.finished_at.is_some());

    // A repeated request after the job finished still returns it and starts nothing.
    let late = start(&mut client, request(&SYMBOLS, START, END, &request_id)).await;
    assert_eq!(late.job_id, job.job_id);
    assert_eq!(late.state, JobState::Succeeded as i32);
    let listed = client
        .list_backfills(pb::ListBackfillsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.jobs.len(), 1, "one job for one request_id");

    // Stored: exactly the generated bars.
    for (symbol, bars) in SYMBOLS.iter().zip(&expected) {
        let rows = service
            .store
            .bars(symbol, Interval::D1, 0, Y2100)
            .await
            .expect("bars");
        assert_eq!(rows.len(), bars.len(), "{symbol}");
        for (row, bar) in rows.iter().zip(bars) {
            assert_eq!(&row.bar, bar, "{symbol}");
            assert_eq!((row.source.as_str(), row.revision), ("synthetic", 0));
        }
    }

    // Published: one event per generated bar, nothing else.
    let mut consumer = service.bars_consumer().await;
    let events = read_to_marker(&*service.bus, consumer.as_mut(), &service.topic).await;
    assert_eq!(events.len(), total, "one event per bar");
    let want: BTreeSet<(String, i64)> = expected
        .iter()
        .flatten()
        .map(|b| (b.symbol.clone(), b.ts))
        .collect();
    let mut got = BTreeSet::new();
    let mut without_job_id = 0;
    for message in &events {
        let event: MarketBarEvent = message.decode().expect("decode");
        assert_eq!(
            message.message_type(),
            Some("stockcast.events.v1.MarketBarEvent")
        );
        let bar = Bar::try_from(event.bar.as_ref().expect("bar")).expect("valid bar");
        assert_eq!(message.key.as_ref(), bar.symbol.as_bytes());
        assert_eq!(event.revision, 0);
        assert_eq!(event.previous, None);
        assert_eq!(event.ingest_path, IngestPath::Backfill as i32);
        if event.backfill_job_id != job.job_id {
            without_job_id += 1;
        }
        assert_eq!(event.bar.as_ref().unwrap().source, "synthetic");
        let index = SYMBOLS.iter().position(|s| *s == bar.symbol).unwrap();
        assert!(
            expected[index].contains(&bar),
            "published bar not generated: {bar:?}"
        );
        got.insert((bar.symbol, bar.ts));
    }
    assert_eq!(got, want);

    // Coverage, with and without gaps, in pages of one.
    let coverage = client
        .list_symbols(pb::ListSymbolsRequest {
            include_gaps: true,
            ..Default::default()
        })
        .await
        .expect("list symbols")
        .into_inner();
    assert_eq!(coverage.next_page_token, "");
    assert_eq!(coverage.symbols.len(), 3, "{coverage:?}");
    for (entry, (symbol, bars)) in coverage.symbols.iter().zip(SYMBOLS.iter().zip(&expected)) {
        assert_eq!(entry.symbol, *symbol);
        assert_eq!(entry.interval, PbInterval::Interval1Day as i32);
        assert_eq!(entry.first_bar_ts, ts(bars[0].ts), "{symbol}");
        assert_eq!(entry.last_bar_ts, ts(bars[bars.len() - 1].ts), "{symbol}");
        assert_eq!(entry.bar_count, bars.len() as i64, "{symbol}");
        assert_eq!(entry.gap_count, 0, "weekdays only: {entry:?}");
        assert!(entry.gaps.is_empty());
    }
    let mut paged = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = client
            .list_symbols(pb::ListSymbolsRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list symbols page")
            .into_inner();
        assert!(page.symbols.len() <= 1);
        paged.extend(page.symbols.into_iter().map(|s| (s.symbol, s.bar_count)));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        paged,
        SYMBOLS
            .iter()
            .map(|s| ((*s).to_owned(), 520))
            .collect::<Vec<_>>()
    );
    // Checked last so that the checks above still run: ingest.rs takes the event's job id
    // from the chunk marker, which jobs.rs sets only on a chunk's last batch.
    assert_eq!(
        without_job_id, 0,
        "of {total} backfill events, {without_job_id} have a backfill_job_id other than {:?} \
         (every batch but a chunk's last publishes an empty one)",
        job.job_id
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfills_are_listed_newest_first_in_pages() {
    let service = Service::start(settings("backfill-list", |_| {})).await;
    let mut client = service.client.clone();
    let mut ids = Vec::new();
    for symbol in ["LA", "LB", "LC"] {
        let job = start(
            &mut client,
            request(&[symbol], START, START + 14 * 86_400, ""),
        )
        .await;
        ids.push(job.job_id);
    }
    for id in &ids {
        succeeded(&mut client, id).await;
    }
    let mut pages = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = client
            .list_backfills(pb::ListBackfillsRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list page")
            .into_inner();
        pages.push(
            page.jobs
                .iter()
                .map(|j| j.job_id.clone())
                .collect::<Vec<_>>(),
        );
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let newest_first: Vec<Vec<String>> = ids.iter().rev().map(|id| vec![id.clone()]).collect();
    assert_eq!(pages, newest_first);

    let by_symbol = client
        .list_backfills(pb::ListBackfillsRequest {
            symbol: "LB".to_owned(),
            state: JobState::Succeeded as i32,
            ..Default::default()
        })
        .await
        .expect("list by symbol")
        .into_inner();
    assert_eq!(
        by_symbol
            .jobs
            .iter()
            .map(|j| j.job_id.as_str())
            .collect::<Vec<_>>(),
        vec![ids[1].as_str()]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_backfill_requests_name_the_field() {
    let service = Service::start(settings("backfill-invalid", |_| {})).await;
    let mut client = service.client.clone();
    let valid = || request(&["AAPL"], START, END, "");
    let csv = |path: &str| {
        Some(Params::Csv(pb::CsvParams {
            path: path.to_owned(),
            ..Default::default()
        }))
    };
    let cases: Vec<(&str, pb::StartBackfillRequest, &str)> = vec![
        (
            "empty symbols",
            pb::StartBackfillRequest {
                symbols: vec![],
                ..valid()
            },
            "symbols",
        ),
        (
            "empty symbol",
            pb::StartBackfillRequest {
                symbols: vec![String::new()],
                ..valid()
            },
            "symbols[0]",
        ),
        (
            "unspecified interval",
            pb::StartBackfillRequest {
                interval: PbInterval::Unspecified as i32,
                ..valid()
            },
            "interval",
        ),
        (
            "missing range",
            pb::StartBackfillRequest {
                range: None,
                ..valid()
            },
            "range",
        ),
        (
            "missing range start",
            pb::StartBackfillRequest {
                range: Some(TimeRange {
                    start: None,
                    end: ts(END),
                }),
                ..valid()
            },
            "range.start",
        ),
        (
            "end before start",
            pb::StartBackfillRequest {
                range: Some(TimeRange {
                    start: ts(END),
                    end: ts(START),
                }),
                ..valid()
            },
            "range.end",
        ),
        (
            "unspecified source",
            pb::StartBackfillRequest {
                source: pb::BackfillSource::Unspecified as i32,
                params: None,
                ..valid()
            },
            "source",
        ),
        (
            "CSV without params",
            pb::StartBackfillRequest {
                source: pb::BackfillSource::Csv as i32,
                params: None,
                ..valid()
            },
            "csv.path",
        ),
        (
            "CSV with an empty path",
            pb::StartBackfillRequest {
                source: pb::BackfillSource::Csv as i32,
                params: csv(""),
                ..valid()
            },
            "csv.path",
        ),
        (
            "params of another source",
            pb::StartBackfillRequest {
                params: csv("/tmp/bars.csv"),
                ..valid()
            },
            "params",
        ),
    ];
    for (name, request, field) in cases {
        let status = client.start_backfill(request).await.expect_err(name);
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{name}: {status:?}"
        );
        assert!(
            status.message().contains(field),
            "{name}: message {:?} should name {field:?}",
            status.message()
        );
    }
    let jobs = client
        .list_backfills(pb::ListBackfillsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .jobs;
    assert!(jobs.is_empty(), "no job for an invalid request: {jobs:?}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpha_vantage_without_an_api_key_is_an_invalid_argument() {
    let service = Service::start(settings("backfill-av", |_| {})).await;
    let mut client = service.client.clone();
    let status = client
        .start_backfill(pb::StartBackfillRequest {
            source: pb::BackfillSource::AlphaVantage as i32,
            params: None,
            ..request(&["IBM"], START, END, "")
        })
        .await
        .expect_err("no API key configured");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("alpha_vantage.api_key"),
        "{}",
        status.message()
    );
    let jobs = client
        .list_backfills(pb::ListBackfillsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .jobs;
    assert!(jobs.is_empty(), "{jobs:?}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_synthetic_params_mean_the_server_defaults() {
    let service = Service::start(settings("backfill-zero", |_| {})).await;
    let mut client = service.client.clone();
    // ingestion.proto, SyntheticParams: "A zero value means the server default."
    let end = START + 60 * 86_400;
    let job = start(
        &mut client,
        pb::StartBackfillRequest {
            params: Some(Params::Synthetic(pb::SyntheticParams {
                seed: 7,
                ..Default::default()
            })),
            ..request(&["ZERO"], START, end, "")
        },
    )
    .await;
    succeeded(&mut client, &job.job_id).await;
    let defaults = SyntheticParams {
        seed: 7,
        ..SyntheticParams::default()
    };
    let want: Vec<Bar> = SyntheticPath::new("ZERO", Interval::D1, START, &defaults)
        .unwrap()
        .take_while(|b| b.ts < end)
        .collect();
    let got: Vec<Bar> = service
        .store
        .bars("ZERO", Interval::D1, START, end)
        .await
        .expect("bars")
        .into_iter()
        .map(|s| s.bar)
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "a SyntheticParams with only `seed` set must generate the default path (the proto \
         says a zero value means the server default), but grpc.rs backfill_spec passes \
         annual_drift, regime_switch_probability and jumps_per_year through as 0; first \
         closes got {:?}, want {:?}",
        got.iter().take(3).map(|b| b.close).collect::<Vec<_>>(),
        want.iter().take(3).map(|b| b.close).collect::<Vec<_>>()
    );
    service.stop().await;
}
