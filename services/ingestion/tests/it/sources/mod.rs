//! Backfill sources end to end, through the running service into PostgreSQL and Kafka: Alpha
//! Vantage against a local server serving recorded responses (daily, intraday across a DST
//! change, a bad entry, every error shape, the API key kept secret), and CSV files (bad rows
//! dead-lettered by line, bad header, missing file, re-run idempotent).

mod alpha_vantage;
mod csv;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::service::{Service, read_to_marker, settings};
use chrono::{NaiveDate, NaiveDateTime};
use stockcast_ingestion::Settings;
use stockcast_ingestion::store::BarStore;
use stockcast_market::{Bar, Interval};
use stockcast_proto::stockcast::events::v1::dead_letter_record::Origin;
use stockcast_proto::stockcast::events::v1::{DeadLetterRecord, IngestPath, MarketBarEvent};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use stockcast_proto::stockcast::ingestion::v1::start_backfill_request::Params;
use stockcast_proto::stockcast::types::v1::{
    Interval as PbInterval, JobState, RejectReason, TimeRange,
};
use stockcast_testkit::alpha_vantage::{API_KEY, AvServer, Reply, fixture_json};
use tonic::transport::Channel;

const JOB_DEADLINE: Duration = Duration::from_secs(60);
/// 2100-01-01 00:00 UTC: after every bar of these tests.
const Y2100: i64 = 4_102_444_800;

fn utc(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp()
}

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// Settings whose Alpha Vantage source talks to `server` with the fake key, a generous
/// budget and millisecond retries; enough concurrent jobs for every job of a test.
fn av_settings(case: &str, server: &AvServer) -> Settings {
    settings(case, |s| {
        s.alpha_vantage.base_url = server.url.clone();
        s.alpha_vantage.api_key = stockcast_runtime::Secret::new(API_KEY);
        s.alpha_vantage.calls_per_minute = 1_000;
        s.alpha_vantage.calls_per_day = 1_000;
        s.alpha_vantage.request_timeout_ms = 5_000;
        s.alpha_vantage.max_retries = 2;
        s.alpha_vantage.retry_base_ms = 10;
        s.ingest.backfill_concurrency = 8;
    })
}

fn av_request(
    symbol: &str,
    interval: PbInterval,
    start: i64,
    end: i64,
    output_size: pb::AlphaVantageOutputSize,
) -> pb::StartBackfillRequest {
    pb::StartBackfillRequest {
        symbols: vec![symbol.to_owned()],
        source: pb::BackfillSource::AlphaVantage as i32,
        interval: interval as i32,
        range: Some(TimeRange {
            start: ts(start),
            end: ts(end),
        }),
        params: Some(Params::AlphaVantage(pb::AlphaVantageParams {
            output_size: output_size as i32,
            extended_hours: false,
        })),
        request_id: uuid::Uuid::new_v4().to_string(),
    }
}

/// A daily compact request for `symbol` over 2024.
fn av_daily(symbol: &str) -> pb::StartBackfillRequest {
    av_request(
        symbol,
        PbInterval::Interval1Day,
        utc("2024-01-01T00:00:00Z"),
        utc("2025-01-01T00:00:00Z"),
        pb::AlphaVantageOutputSize::Compact,
    )
}

fn csv_request(path: &std::path::Path, symbol: &str) -> pb::StartBackfillRequest {
    pb::StartBackfillRequest {
        symbols: vec![symbol.to_owned()],
        source: pb::BackfillSource::Csv as i32,
        interval: PbInterval::Interval1Day as i32,
        range: Some(TimeRange {
            start: ts(utc("2024-01-01T00:00:00Z")),
            end: ts(utc("2024-02-01T00:00:00Z")),
        }),
        params: Some(Params::Csv(pb::CsvParams {
            path: path.to_str().unwrap().to_owned(),
            symbol: symbol.to_owned(),
            time_zone: String::new(),
        })),
        request_id: uuid::Uuid::new_v4().to_string(),
    }
}

async fn start(
    client: &mut IngestionServiceClient<Channel>,
    request: pb::StartBackfillRequest,
) -> String {
    client
        .start_backfill(request)
        .await
        .expect("start backfill")
        .into_inner()
        .job
        .expect("job")
        .job_id
}

async fn job(client: &mut IngestionServiceClient<Channel>, job_id: &str) -> pb::BackfillJob {
    client
        .get_backfill(pb::GetBackfillRequest {
            job_id: job_id.to_owned(),
        })
        .await
        .expect("get backfill")
        .into_inner()
        .job
        .expect("job")
}

/// Polls the job until it is in a final state (succeeded, failed, cancelled).
async fn finished(client: &mut IngestionServiceClient<Channel>, job_id: &str) -> pb::BackfillJob {
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let job = job(client, job_id).await;
        if matches!(
            JobState::try_from(job.state),
            Ok(JobState::Succeeded | JobState::Failed | JobState::Cancelled)
        ) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job not finished within {JOB_DEADLINE:?}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn state(job: &pb::BackfillJob) -> JobState {
    JobState::try_from(job.state).unwrap_or(JobState::Unspecified)
}

/// `(accepted, rejected, duplicate, corrected)` of a job.
fn counts(job: &pb::BackfillJob) -> (i64, i64, i64, i64) {
    (
        job.bars_accepted,
        job.bars_rejected,
        job.bars_duplicate,
        job.bars_corrected,
    )
}

async fn stored(service: &Service, symbol: &str, interval: Interval) -> Vec<Bar> {
    let rows = service
        .store
        .bars(symbol, interval, 0, Y2100)
        .await
        .expect("bars");
    for row in &rows {
        assert_eq!(row.revision, 0, "{row:?}");
    }
    rows.into_iter().map(|r| r.bar).collect()
}

/// Every bar event on the topic since `consumer` last read, decoded and checked for the
/// envelope every backfill event has.
async fn bar_events(
    service: &Service,
    consumer: &mut dyn stockcast_bus::Consumer,
) -> Vec<MarketBarEvent> {
    let messages = read_to_marker(&*service.bus, consumer, &service.topic).await;
    messages
        .iter()
        .map(|message| {
            assert_eq!(
                message.message_type(),
                Some("stockcast.events.v1.MarketBarEvent")
            );
            let event: MarketBarEvent = message.decode().expect("decode event");
            let bar = event.bar.as_ref().expect("event has a bar");
            assert_eq!(
                message.key.as_ref(),
                bar.symbol.as_bytes(),
                "keyed by symbol"
            );
            assert_eq!(event.ingest_path, IngestPath::Backfill as i32);
            assert_eq!((event.revision, event.previous.as_ref()), (0, None));
            event
        })
        .collect()
}

/// Every dead letter on the dead-letter topic since `consumer` last read, with the raw
/// message bytes (key, payload, headers) for leak checks.
async fn dead_letters(
    service: &Service,
    consumer: &mut dyn stockcast_bus::Consumer,
) -> Vec<(DeadLetterRecord, Vec<u8>)> {
    let messages = read_to_marker(&*service.bus, consumer, &service.dlq).await;
    messages
        .iter()
        .map(|message| {
            let letter: DeadLetterRecord = message.decode().expect("decode dead letter");
            let mut raw = message.key.to_vec();
            raw.extend_from_slice(&message.payload);
            for header in &message.headers {
                raw.extend_from_slice(header.key.as_bytes());
                raw.extend_from_slice(&header.value);
            }
            (letter, raw)
        })
        .collect()
}

fn bar_of(event: &MarketBarEvent) -> Bar {
    Bar::try_from(event.bar.as_ref().unwrap()).expect("valid bar in event")
}

fn component(
    letter: &DeadLetterRecord,
) -> &stockcast_proto::stockcast::events::v1::ComponentOrigin {
    match &letter.origin {
        Some(Origin::Component(origin)) => origin,
        other => panic!("dead letter without a component origin: {other:?}"),
    }
}

/// The bars of a recorded Alpha Vantage daily series, read independently of the source: the
/// date key at 00:00 UTC, the string fields as numbers; unreadable entries skipped.
fn daily_fixture_bars(name: &str, symbol: &str) -> Vec<Bar> {
    let json = fixture_json(name);
    let series = json["Time Series (Daily)"].as_object().unwrap();
    let mut bars: Vec<Bar> = series
        .iter()
        .filter_map(|(date, entry)| {
            let field = |f: &str| entry.get(f)?.as_str()?.parse::<f64>().ok();
            Some(Bar {
                symbol: symbol.to_owned(),
                interval: Interval::D1,
                ts: NaiveDate::parse_from_str(date, "%Y-%m-%d")
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp(),
                open: field("1. open")?,
                high: field("2. high")?,
                low: field("3. low")?,
                close: field("4. close")?,
                volume: field("5. volume")?,
            })
        })
        .collect();
    bars.sort_by_key(|b| b.ts);
    bars
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
