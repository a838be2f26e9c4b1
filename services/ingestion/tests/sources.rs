//! Backfill sources end to end, through the running service into PostgreSQL and Kafka: Alpha
//! Vantage against a local server serving recorded responses (daily, intraday across a DST
//! change, a bad entry, every error shape, the API key kept secret), and CSV files (bad rows
//! dead-lettered by line, bad header, missing file, re-run idempotent).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

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
use support::av_server::{API_KEY, AvServer, Reply, fixture_json};
use support::service::{Service, read_to_marker, settings};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alpha_vantage_daily_backfill_stores_and_publishes_the_series_in_utc() {
    let server = AvServer::start().await;
    server.script("IBM", vec![Reply::Fixture("daily_ibm.json")]);
    let service = Service::start(av_settings("src-av-daily", &server)).await;
    let mut client = service.client.clone();

    let job_id = start(&mut client, av_daily("IBM")).await;
    let done = finished(&mut client, &job_id).await;
    assert_eq!(state(&done), JobState::Succeeded, "{done:?}");
    assert_eq!(done.error, "");
    assert_eq!((done.chunks_done, done.chunks_total), (1, 1), "{done:?}");

    let want = daily_fixture_bars("daily_ibm.json", "IBM");
    assert_eq!(want.len(), 29, "the fixture's entries");
    assert_eq!(counts(&done), (29, 0, 0, 0), "{done:?}");

    // Stored: the fixture's bars, each at 00:00 UTC of its trading date.
    let rows = stored(&service, "IBM", Interval::D1).await;
    assert_eq!(rows, want);
    assert_eq!(rows[0].ts, utc("2024-02-12T00:00:00Z"));
    assert_eq!(rows[28].ts, utc("2024-03-22T00:00:00Z"));
    assert!(
        rows.iter().all(|b| b.ts % 86_400 == 0),
        "daily bars at 00:00 UTC"
    );
    let sources: Vec<_> = service
        .store
        .bars("IBM", Interval::D1, 0, Y2100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.source)
        .collect();
    assert!(sources.iter().all(|s| s == "alpha_vantage"), "{sources:?}");

    // Published: one event per bar, with the job id.
    let mut consumer = service.bars_consumer().await;
    let events = bar_events(&service, consumer.as_mut()).await;
    let mut published: Vec<Bar> = events.iter().map(bar_of).collect();
    published.sort_by_key(|b| b.ts);
    assert_eq!(published, want);
    for event in &events {
        assert_eq!(event.backfill_job_id, job_id);
        assert_eq!(event.bar.as_ref().unwrap().source, "alpha_vantage");
    }
    let mut dlq = service.dlq_consumer().await;
    let letters = dead_letters(&service, dlq.as_mut()).await;
    assert!(letters.is_empty(), "{letters:?}");

    // The server was asked exactly once, for the documented query.
    assert_eq!(
        server.queries(),
        vec![params(&[
            ("function", "TIME_SERIES_DAILY"),
            ("symbol", "IBM"),
            ("outputsize", "compact"),
            ("datatype", "json"),
            ("apikey", API_KEY),
        ])]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpha_vantage_intraday_times_are_stored_in_utc_across_the_dst_change() {
    let server = AvServer::start().await;
    server.script("IBM", vec![Reply::Fixture("intraday_ibm_5min_dst.json")]);
    let service = Service::start(av_settings("src-av-dst", &server)).await;
    let mut client = service.client.clone();

    let job_id = start(
        &mut client,
        av_request(
            "IBM",
            PbInterval::Interval5Minutes,
            utc("2024-03-01T05:00:00Z"),
            utc("2024-04-01T04:00:00Z"),
            pb::AlphaVantageOutputSize::Full,
        ),
    )
    .await;
    let done = finished(&mut client, &job_id).await;
    assert_eq!(state(&done), JobState::Succeeded, "{done:?}");

    // Expected independently: keys are US/Eastern wall times; 8 March is EST (UTC-5), 11
    // March EDT (UTC-4) — the clocks changed on 10 March 2024.
    let json = fixture_json("intraday_ibm_5min_dst.json");
    let mut want: Vec<i64> = json["Time Series (5min)"]
        .as_object()
        .unwrap()
        .keys()
        .map(|key| {
            let local = NaiveDateTime::parse_from_str(key, "%Y-%m-%d %H:%M:%S").unwrap();
            let dst = local.date() >= NaiveDate::from_ymd_opt(2024, 3, 10).unwrap();
            local.and_utc().timestamp() + if dst { 4 } else { 5 } * 3_600
        })
        .collect();
    want.sort_unstable();
    assert_eq!(want.len(), 156);

    let rows = stored(&service, "IBM", Interval::M5).await;
    let got: Vec<i64> = rows.iter().map(|b| b.ts).collect();
    assert_eq!(got, want, "stored open times in UTC");
    assert!(got.contains(&utc("2024-03-08T14:30:00Z")), "09:30 EST");
    assert!(got.contains(&utc("2024-03-11T13:30:00Z")), "09:30 EDT");
    assert_eq!(got.first(), Some(&utc("2024-03-08T14:30:00Z")));
    assert_eq!(got.last(), Some(&utc("2024-03-11T19:55:00Z")));
    assert_eq!(counts(&done), (156, 0, 0, 0), "{done:?}");

    let mut consumer = service.bars_consumer().await;
    let events = bar_events(&service, consumer.as_mut()).await;
    let mut published: Vec<i64> = events.iter().map(|e| bar_of(e).ts).collect();
    published.sort_unstable();
    assert_eq!(published, want, "published open times in UTC");

    assert_eq!(
        server.queries(),
        vec![params(&[
            ("function", "TIME_SERIES_INTRADAY"),
            ("symbol", "IBM"),
            ("interval", "5min"),
            ("outputsize", "full"),
            ("extended_hours", "false"),
            ("month", "2024-03"),
            ("datatype", "json"),
            ("apikey", API_KEY),
        ])]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpha_vantage_bad_entries_are_dead_lettered_and_the_rest_stored() {
    let server = AvServer::start().await;
    server.script("IBM", vec![Reply::Fixture("daily_ibm_bad_entries.json")]);
    let service = Service::start(av_settings("src-av-bad", &server)).await;
    let mut client = service.client.clone();

    let job_id = start(&mut client, av_daily("IBM")).await;
    let done = finished(&mut client, &job_id).await;
    assert_eq!(state(&done), JobState::Succeeded, "{done:?}");

    // 2024-03-15 has "2. high": "abc"; 2024-03-14 has no "5. volume".
    let want = daily_fixture_bars("daily_ibm_bad_entries.json", "IBM");
    assert_eq!(want.len(), 27);
    assert!(
        want.iter()
            .all(|b| b.ts != utc("2024-03-15T00:00:00Z") && b.ts != utc("2024-03-14T00:00:00Z"))
    );
    assert_eq!(stored(&service, "IBM", Interval::D1).await, want);
    assert_eq!(counts(&done), (27, 2, 0, 0), "{done:?}");
    let mut consumer = service.bars_consumer().await;
    assert_eq!(bar_events(&service, consumer.as_mut()).await.len(), 27);

    let mut dlq = service.dlq_consumer().await;
    let mut letters: Vec<DeadLetterRecord> = dead_letters(&service, dlq.as_mut())
        .await
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    letters.sort_by_key(|l| component(l).index);
    assert_eq!(letters.len(), 2, "{letters:?}");
    let series = &fixture_json("daily_ibm_bad_entries.json")["Time Series (Daily)"];
    // (index of the entry in the series, date, field, code, reason fragment)
    let cases = [
        (
            5,
            "2024-03-15",
            "high",
            RejectReason::Malformed,
            "\"2. high\" is \"abc\", not a number",
        ),
        (
            6,
            "2024-03-14",
            "volume",
            RejectReason::MissingField,
            "\"5. volume\" is missing",
        ),
    ];
    for (letter, (index, date, field, code, reason)) in letters.iter().zip(cases) {
        let origin = component(letter);
        assert_eq!(origin.input, "alpha_vantage", "{letter:?}");
        assert_eq!(origin.backfill_job_id, job_id, "{letter:?}");
        assert_eq!(origin.index, index, "{letter:?}");
        assert_eq!(letter.field, field, "{letter:?}");
        assert_eq!(letter.reason_code, code as i32, "{letter:?}");
        assert!(letter.reason.contains(reason), "{letter:?}");
        assert_eq!(letter.symbol, "IBM");
        assert_eq!(letter.rejected_by, "ingestion");
        assert_eq!(letter.payload_type, "application/json");
        let payload: serde_json::Value =
            serde_json::from_slice(&letter.payload).expect("payload is JSON");
        assert_eq!(
            payload,
            serde_json::json!({ date: series[date].clone() }),
            "the entry as served, keyed by its time"
        );
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpha_vantage_error_shapes_fail_or_retry_the_job_as_documented() {
    let server = AvServer::start().await;
    let message = fixture_json("error_message.json")["Error Message"]
        .as_str()
        .unwrap()
        .to_owned();
    server.script("ERRM", vec![Reply::Fixture("error_message.json")]);
    server.script(
        "NOTE",
        vec![
            Reply::Fixture("note_rate_limit.json"),
            Reply::Fixture("daily_ibm.json"),
        ],
    );
    server.script(
        "HTTP",
        vec![
            Reply::Status(500, "upstream failed".to_owned()),
            Reply::Fixture("daily_ibm.json"),
        ],
    );
    server.script("MALF", vec![Reply::Fixture("malformed.json")]);
    server.script("TRNC", vec![Reply::Truncated("daily_ibm.json")]);
    server.script(
        "INFO",
        vec![
            Reply::Fixture("information_rate_limit.json"),
            Reply::Fixture("daily_ibm.json"),
        ],
    );
    server.script("PREM", vec![Reply::Fixture("information_premium.json")]);
    server.script("NOSR", vec![Reply::Fixture("no_series.json")]);
    let service = Service::start(av_settings("src-av-errors", &server)).await;
    let mut client = service.client.clone();

    let mut ids = BTreeMap::new();
    for symbol in [
        "ERRM", "NOTE", "HTTP", "MALF", "TRNC", "INFO", "PREM", "NOSR",
    ] {
        ids.insert(symbol, start(&mut client, av_daily(symbol)).await);
    }

    // "Error Message": permanent, the job fails with the server's text.
    let errm = finished(&mut client, &ids["ERRM"]).await;
    assert_eq!(state(&errm), JobState::Failed, "{errm:?}");
    assert!(errm.error.contains(&message), "{errm:?}");
    assert!(errm.finished_at.is_some());
    assert_eq!(counts(&errm), (0, 0, 0, 0));
    assert_eq!(server.queries_for("ERRM").len(), 1, "not retried");

    // Rate-limit "Note", then the series: retried, succeeds.
    let note = finished(&mut client, &ids["NOTE"]).await;
    assert_eq!(state(&note), JobState::Succeeded, "{note:?}");
    assert_eq!(counts(&note), (29, 0, 0, 0), "{note:?}");
    assert_eq!(server.queries_for("NOTE").len(), 2, "one retry");

    // HTTP 500, then the series: retried, succeeds.
    let http = finished(&mut client, &ids["HTTP"]).await;
    assert_eq!(state(&http), JobState::Succeeded, "{http:?}");
    assert_eq!(counts(&http), (29, 0, 0, 0), "{http:?}");
    assert_eq!(server.queries_for("HTTP").len(), 2, "one retry");

    // Rate-limit "Information" (requests per second), then the series: retried, succeeds.
    let info = finished(&mut client, &ids["INFO"]).await;
    assert_eq!(state(&info), JobState::Succeeded, "{info:?}");
    assert_eq!(counts(&info), (29, 0, 0, 0), "{info:?}");
    assert_eq!(server.queries_for("INFO").len(), 2, "one retry");

    // Premium-endpoint "Information": permanent.
    let prem = finished(&mut client, &ids["PREM"]).await;
    assert_eq!(state(&prem), JobState::Failed, "{prem:?}");
    assert!(prem.error.contains("premium endpoint"), "{prem:?}");
    assert_eq!(server.queries_for("PREM").len(), 1, "not retried");

    // Meta data but no time series: permanent.
    let nosr = finished(&mut client, &ids["NOSR"]).await;
    assert_eq!(state(&nosr), JobState::Failed, "{nosr:?}");
    assert!(nosr.error.contains("no time series"), "{nosr:?}");
    assert_eq!(server.queries_for("NOSR").len(), 1, "not retried");

    // Malformed JSON: permanent.
    let malf = finished(&mut client, &ids["MALF"]).await;
    assert_eq!(state(&malf), JobState::Failed, "{malf:?}");
    assert!(malf.error.contains("not valid JSON"), "{malf:?}");
    assert_eq!(server.queries_for("MALF").len(), 1, "not retried");

    // A body cut mid-way: retryable. With max_retries = 2 a fetch makes 3 attempts; the job
    // then pauses and asks again (docs/ingestion.md: "then the job pauses until the source
    // answers"), so it is still running after more requests than one fetch makes.
    support::service::eventually("TRNC retried past one fetch", JOB_DEADLINE, || async {
        (server.queries_for("TRNC").len() >= 5).then_some(())
    })
    .await;
    let trnc = job(&mut client, &ids["TRNC"]).await;
    assert_eq!(state(&trnc), JobState::Running, "not failed: {trnc:?}");
    assert_eq!(trnc.finished_at, None);
    assert!(stored(&service, "TRNC", Interval::D1).await.is_empty());
    // Once the server answers in full, the paused job completes.
    server.script("TRNC", vec![Reply::Fixture("daily_ibm.json")]);
    let trnc = finished(&mut client, &ids["TRNC"]).await;
    assert_eq!(state(&trnc), JobState::Succeeded, "{trnc:?}");
    assert_eq!(counts(&trnc), (29, 0, 0, 0), "{trnc:?}");

    // Stored and published: the three series that loaded, nothing of the failed jobs.
    let want = daily_fixture_bars("daily_ibm.json", "X");
    let mut consumer = service.bars_consumer().await;
    let events = bar_events(&service, consumer.as_mut()).await;
    for (symbol, n) in [
        ("ERRM", 0),
        ("NOTE", 29),
        ("HTTP", 29),
        ("MALF", 0),
        ("TRNC", 29),
        ("INFO", 29),
        ("PREM", 0),
        ("NOSR", 0),
    ] {
        let rows = stored(&service, symbol, Interval::D1).await;
        assert_eq!(rows.len(), n, "{symbol} rows");
        let expected: Vec<Bar> = want
            .iter()
            .take(n)
            .map(|b| Bar {
                symbol: symbol.to_owned(),
                ..b.clone()
            })
            .collect();
        assert_eq!(rows, expected, "{symbol} rows");
        let published = events
            .iter()
            .filter(|e| e.bar.as_ref().unwrap().symbol == symbol)
            .count();
        assert_eq!(published, n, "{symbol} events");
    }
    service.stop().await;
}

/// Every row of every table of `schema`, as JSON text.
async fn all_rows(schema: &str) -> Vec<String> {
    let url = stockcast_testkit::POSTGRES.require();
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let mut out = Vec::new();
    for table in ["bars", "corrections", "backfill_jobs", "backfill_chunks"] {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT row_to_json(t)::text FROM \"{schema}\".{table} t"
        )))
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
        out.extend(rows.into_iter().map(|r| format!("{table}: {r}")));
    }
    pool.close().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_appears_in_job_errors_dead_letters_or_job_records() {
    let server = AvServer::start().await;
    let echo =
        format!("{{\"Error Message\": \"Invalid API call for apikey={API_KEY}. Please retry.\"}}");
    server.script("KEYA", vec![Reply::Status(200, echo)]);
    server.script(
        "KEYB",
        vec![
            Reply::Status(500, format!("upstream failed for apikey={API_KEY}")),
            Reply::Truncated("daily_ibm.json"),
            Reply::Fixture("note_rate_limit.json"),
            Reply::Fixture("daily_ibm_bad_entries.json"),
        ],
    );
    let url = stockcast_testkit::POSTGRES.require();
    let schema = stockcast_testkit::unique("ingest_key");
    let store = support::service::store_at(&url, &schema).await;
    let mut key_settings = av_settings("src-av-key", &server);
    key_settings.alpha_vantage.max_retries = 5;
    let service = Service::start_on(key_settings, store).await;
    let mut client = service.client.clone();

    let a = start(&mut client, av_daily("KEYA")).await;
    let b = start(&mut client, av_daily("KEYB")).await;
    let job_a = finished(&mut client, &a).await;
    let job_b = finished(&mut client, &b).await;
    assert_eq!(state(&job_a), JobState::Failed, "{job_a:?}");
    assert_eq!(state(&job_b), JobState::Succeeded, "{job_b:?}");
    assert_eq!(counts(&job_b), (27, 2, 0, 0), "{job_b:?}");

    // The key was sent with every request, so the checks below are not vacuous.
    let queries = server.queries();
    assert_eq!(queries.len(), 5, "{queries:?}");
    assert!(queries.iter().all(|q| q["apikey"] == API_KEY));

    let mut texts = Vec::new();
    // GetBackfill: the server's text is kept, with the key redacted.
    assert!(
        job_a.error.contains("Invalid API call for apikey=") && job_a.error.contains("redacted"),
        "{}",
        job_a.error
    );
    texts.push(("GetBackfill.error", job_a.error.clone()));
    texts.push(("GetBackfill (failed job)", format!("{job_a:?}")));
    texts.push(("GetBackfill (succeeded job)", format!("{job_b:?}")));
    let listed = client
        .list_backfills(pb::ListBackfillsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.jobs.len(), 2);
    texts.push(("ListBackfills", format!("{listed:?}")));
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    texts.push(("GetStatus", format!("{status:?}")));

    // Dead letters: the two bad entries, raw bytes included.
    let mut dlq = service.dlq_consumer().await;
    let letters = dead_letters(&service, dlq.as_mut()).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (letter, raw) in &letters {
        assert!(
            !raw.windows(API_KEY.len()).any(|w| w == API_KEY.as_bytes()),
            "the API key is in a dead letter: {letter:?}"
        );
        texts.push(("dead letter", format!("{letter:?}")));
    }
    // Events, raw.
    let mut consumer = service.bars_consumer().await;
    for message in read_to_marker(&*service.bus, consumer.as_mut(), &service.topic).await {
        assert!(
            !message
                .payload
                .windows(API_KEY.len())
                .any(|w| w == API_KEY.as_bytes()),
            "the API key is in a bar event"
        );
    }
    // The job records as stored, every column of every table.
    let rows = all_rows(&schema).await;
    assert!(
        rows.iter()
            .filter(|r| r.starts_with("backfill_jobs:"))
            .count()
            == 2,
        "{rows:?}"
    );
    for row in rows {
        texts.push(("database row", row));
    }
    for (what, text) in &texts {
        assert!(
            !text.contains(API_KEY),
            "the API key leaked in {what}: {text}"
        );
    }
    service.stop().await;
}

// ---- CSV ----

/// A Yahoo-style export: `Adj Close` differs from `Close` (stockcast stores `Close`).
const CSV_HEADER: &str = "Date,Open,High,Low,Close,Adj Close,Volume";

enum Row {
    Good(&'static str, [f64; 6]),
    /// The line, the field, the code.
    Bad(&'static str, &'static str, RejectReason),
}

fn csv_rows() -> Vec<Row> {
    use Row::{Bad, Good};
    vec![
        Good(
            "2024-01-02",
            [187.15, 188.44, 183.89, 185.64, 185.40, 82_488_700.0],
        ),
        Good(
            "2024-01-03",
            [184.22, 185.88, 183.43, 184.25, 184.01, 58_414_500.0],
        ),
        Bad(
            "2024-01-04,182.15,183.09,x180.88,181.91,181.67,71983600",
            "low",
            RejectReason::Malformed,
        ),
        Good(
            "2024-01-05",
            [181.99, 182.76, 180.17, 181.18, 180.94, 62_303_300.0],
        ),
        Good(
            "2024-01-08",
            [182.09, 185.60, 181.50, 185.56, 185.32, 59_144_500.0],
        ),
        Bad(
            "2024-01-09,183.92,180.00,184.26,183.63,183.39,42841800",
            "",
            RejectReason::InconsistentOhlc,
        ),
        Good(
            "2024-01-10",
            [184.35, 186.40, 183.92, 186.19, 185.95, 46_792_900.0],
        ),
        Bad(
            "2024-01-11,186.54,187.05,183.62,185.59,185.35,",
            "volume",
            RejectReason::MissingField,
        ),
        Good(
            "2024-01-12",
            [186.06, 186.74, 185.19, 185.92, 185.68, 40_444_700.0],
        ),
    ]
}

/// A bad line of a CSV file: its 1-based number, text, the field and code it is rejected for.
type BadLine = (i64, &'static str, &'static str, RejectReason);

/// The file text, its good bars (for `symbol`) and its bad lines.
fn csv_file(symbol: &str) -> (String, Vec<Bar>, Vec<BadLine>) {
    let mut lines = vec![CSV_HEADER.to_owned()];
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for row in csv_rows() {
        match row {
            Row::Good(date, [open, high, low, close, adj, volume]) => {
                lines.push(format!("{date},{open},{high},{low},{close},{adj},{volume}"));
                good.push(Bar {
                    symbol: symbol.to_owned(),
                    interval: Interval::D1,
                    ts: utc(&format!("{date}T00:00:00Z")),
                    open,
                    high,
                    low,
                    close,
                    volume,
                });
            }
            Row::Bad(line, field, code) => {
                lines.push(line.to_owned());
                bad.push((lines.len() as i64, line, field, code));
            }
        }
    }
    (lines.join("\n") + "\n", good, bad)
}

/// Default settings with `ingest.csv_dir` set to `dir`.
fn csv_settings(case: &str, dir: &tempfile::TempDir) -> Settings {
    settings(case, |s| s.ingest.csv_dir = dir.path().to_owned())
}

fn write_csv(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write csv");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_backfill_stores_good_rows_and_dead_letters_bad_lines_by_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, good, bad) = csv_file("CSVA");
    assert_eq!((good.len(), bad.len()), (6, 3));
    write_csv(&dir, "csva.csv", &text);
    let service = Service::start(csv_settings("src-csv", &dir)).await;
    let mut client = service.client.clone();

    let job_id = start(&mut client, csv_request(Path::new("csva.csv"), "CSVA")).await;
    let done = finished(&mut client, &job_id).await;
    assert_eq!(state(&done), JobState::Succeeded, "{done:?}");
    assert_eq!(counts(&done), (6, 3, 0, 0), "exact job counts: {done:?}");

    // Stored with the file's values; Close, not Adj Close.
    let rows = stored(&service, "CSVA", Interval::D1).await;
    assert_eq!(rows, good);
    let sources: Vec<_> = service
        .store
        .bars("CSVA", Interval::D1, 0, Y2100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.source)
        .collect();
    assert!(sources.iter().all(|s| s == "csv"), "{sources:?}");

    let mut consumer = service.bars_consumer().await;
    let events = bar_events(&service, consumer.as_mut()).await;
    let mut published: Vec<Bar> = events.iter().map(bar_of).collect();
    published.sort_by_key(|b| b.ts);
    assert_eq!(published, good);
    assert!(events.iter().all(|e| e.backfill_job_id == job_id));

    // Each bad line on the dead-letter topic: input csv, its line number, the line itself.
    let mut dlq = service.dlq_consumer().await;
    let letters: Vec<DeadLetterRecord> = dead_letters(&service, dlq.as_mut())
        .await
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert_eq!(letters.len(), 3, "{letters:?}");
    let mut wrong = Vec::new();
    for (line_no, line, field, code) in &bad {
        let Some(letter) = letters.iter().find(|l| l.reason_code == *code as i32) else {
            wrong.push(format!("line {line_no}: no dead letter with code {code:?}"));
            continue;
        };
        let origin = component(letter);
        assert_eq!(origin.input, "csv", "{letter:?}");
        assert_eq!(origin.backfill_job_id, job_id, "{letter:?}");
        assert_eq!(letter.symbol, "CSVA", "{letter:?}");
        if field.is_empty() {
            assert!(
                ["high", "low"].contains(&letter.field.as_str()),
                "{letter:?}"
            );
        } else {
            assert_eq!(letter.field, *field, "{letter:?}");
        }
        let got = (
            origin.index,
            letter.payload_type.as_str(),
            String::from_utf8_lossy(&letter.payload).into_owned(),
        );
        let want = (*line_no, "text/csv", (*line).to_owned());
        if got != want {
            wrong.push(format!(
                "line {line_no} ({code:?}): dead letter has (index, payload_type, payload) \
                 {got:?}, want {want:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "CSV dead letters must carry the 1-based line number as index and the original line \
         as text/csv payload (docs/ingestion.md: \"`csv` with the line number\"; the CSV line \
         as original payload). A row that parses but fails validation (high < low) loses \
         both: services/ingestion/src/jobs.rs (`SourceRecord::Bar(bar) => (i as i64, ...)` in \
         `run`) indexes it by its position in the chunk, and ingest.rs dead-letters the \
         re-encoded protobuf Bar, because SourceRecord::Bar carries neither line nor bytes.\n{}",
        wrong.join("\n")
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_running_a_csv_backfill_finds_only_duplicates_and_publishes_nothing_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, good, bad) = csv_file("CSVR");
    write_csv(&dir, "csvr.csv", &text);
    let path = Path::new("csvr.csv");
    let service = Service::start(csv_settings("src-csv-rerun", &dir)).await;
    let mut client = service.client.clone();
    let mut consumer = service.bars_consumer().await;

    let first = start(&mut client, csv_request(path, "CSVR")).await;
    let first = finished(&mut client, &first).await;
    assert_eq!(state(&first), JobState::Succeeded, "{first:?}");
    assert_eq!(counts(&first), (6, 3, 0, 0), "{first:?}");
    assert_eq!(bar_events(&service, consumer.as_mut()).await.len(), 6);

    // Same file, new request id: a new job whose every good row is a duplicate.
    let second_id = start(&mut client, csv_request(path, "CSVR")).await;
    assert_ne!(second_id, first.job_id, "a new request id is a new job");
    let second = finished(&mut client, &second_id).await;
    assert_eq!(state(&second), JobState::Succeeded, "{second:?}");
    assert_eq!(
        counts(&second),
        (0, bad.len() as i64, good.len() as i64, 0),
        "(accepted, rejected, duplicate, corrected): {second:?}"
    );
    let again = bar_events(&service, consumer.as_mut()).await;
    assert!(again.is_empty(), "no event for a duplicate: {again:?}");
    assert_eq!(stored(&service, "CSVR", Interval::D1).await, good);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_with_a_bad_header_fails_the_job_and_a_missing_or_outside_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_csv(
        &dir,
        "no_close.csv",
        "Date,Open,High,Low,Adj Close,Volume\n2024-01-02,187.15,188.44,183.89,185.40,82488700\n",
    );
    // Readable, but outside `ingest.csv_dir`.
    let outside = tempfile::tempdir().expect("tempdir");
    let outside = write_csv(&outside, "outside.csv", &csv_file("CSVO").0);
    let service = Service::start(csv_settings("src-csv-fail", &dir)).await;
    let mut client = service.client.clone();

    let header_job = start(&mut client, csv_request(Path::new("no_close.csv"), "CSVH")).await;
    // A missing file and a file outside the directory are refused before a job exists, with
    // one message that says neither where the directory is nor whether the file exists.
    for (path, symbol) in [
        (Path::new("does_not_exist.csv"), "CSVM"),
        (outside.as_path(), "CSVO"),
    ] {
        let status = client
            .start_backfill(csv_request(path, symbol))
            .await
            .expect_err("refused up front");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status
                .message()
                .contains("is not a readable file inside the service's CSV directory")
                && !status.message().contains(&*dir.path().to_string_lossy()),
            "{}",
            status.message()
        );
    }
    let header_job = finished(&mut client, &header_job).await;
    assert_eq!(state(&header_job), JobState::Failed, "{header_job:?}");
    let error = header_job.error.to_ascii_lowercase();
    assert!(
        error.contains("no_close.csv") && error.contains("close column"),
        "names the file and the missing column: {}",
        header_job.error
    );
    assert_eq!(counts(&header_job), (0, 0, 0, 0));

    assert!(stored(&service, "CSVO", Interval::D1).await.is_empty());
    assert!(stored(&service, "CSVH", Interval::D1).await.is_empty());
    assert!(stored(&service, "CSVM", Interval::D1).await.is_empty());
    let mut consumer = service.bars_consumer().await;
    let events = bar_events(&service, consumer.as_mut()).await;
    assert!(events.is_empty(), "{events:?}");
    let mut dlq = service.dlq_consumer().await;
    let letters = dead_letters(&service, dlq.as_mut()).await;
    assert!(letters.is_empty(), "{letters:?}");
    service.stop().await;
}
