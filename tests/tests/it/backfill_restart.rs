//! A backfill killed mid-job (SIGKILL) and resumed by a new process, across real processes
//! on a real PostgreSQL and Kafka-protocol broker: the job ends with exactly the generated
//! rows, and an event for every bar and for nothing else.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use stockcast_bus::conformance::recv;
use stockcast_bus::{Consumer, EventBus, KafkaBus, KafkaSettings, Record};
use stockcast_ingestion::store::{BarStore, JobState as StoredState, PostgresStore};
use stockcast_market::sources::synthetic::{CHUNK_BARS, SyntheticParams, SyntheticPath};
use stockcast_market::{Bar, Interval};
use stockcast_proto::stockcast::events::v1::{IngestPath, MarketBarEvent};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use stockcast_proto::stockcast::ingestion::v1::start_backfill_request::Params;
use stockcast_proto::stockcast::types::v1::{Interval as PbInterval, JobState, TimeRange};
use stockcast_testkit::process::ChildGuard;
use tonic::transport::Channel;

/// 2024-01-01 00:00 UTC, a Monday.
const START: i64 = 1_704_067_200;
/// 40 weeks: 200 weekdays of 78 five-minute bars, 15,600 bars and two chunks per symbol.
const END: i64 = START + 40 * 7 * 86_400;
/// 2100-01-01 00:00 UTC: after every bar of these tests.
const Y2100: i64 = 4_102_444_800;
const SYMBOLS: [&str; 4] = ["KILLA", "KILLB", "KILLC", "KILLD"];
/// Bars per transaction: a chunk (10,000 bars) takes 20 of them.
const BATCH_SIZE: usize = 500;
const MARKER_KEY: &[u8] = b"__marker__";

fn params() -> SyntheticParams {
    SyntheticParams {
        seed: 2_024,
        ..SyntheticParams::default()
    }
}

/// What the service is started with; both processes get the same.
struct Setup {
    pg_url: String,
    schema: String,
    brokers: String,
    topic: String,
    addr: String,
}

/// `stockcast serve ingestion` on `setup`; both processes of the test are started alike.
fn start_server(setup: &Setup, name: &str) -> ChildGuard {
    let mut command = super::stockcast();
    command
        .args([
            "serve",
            "ingestion",
            "--grpc-addr",
            &setup.addr,
            "--set",
            "server.metrics_addr=127.0.0.1:0",
            "--set",
            &format!("ingest.batch_size={BATCH_SIZE}"),
            // One partition: a marker published after the job comes after its events.
            "--set",
            "topics.partitions=1",
        ])
        .env("STOCKCAST_INGESTION__STORAGE__URL", &setup.pg_url)
        .env("STOCKCAST_INGESTION__STORAGE__SCHEMA", &setup.schema)
        .env("STOCKCAST_INGESTION__BUS__KIND", "kafka")
        .env("STOCKCAST_INGESTION__BUS__KAFKA__BROKERS", &setup.brokers)
        .env("STOCKCAST_INGESTION__TOPICS__BARS", &setup.topic);
    ChildGuard::spawn(&format!("ingestion-{name}"), command)
}

/// Connects, retrying until the process answers; fails with its output when it exits.
async fn connect(server: &mut ChildGuard, addr: &str) -> IngestionServiceClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30));
    loop {
        server.assert_running();
        if let Ok(channel) = endpoint.connect().await {
            let mut client = IngestionServiceClient::new(channel);
            if client.get_status(pb::GetStatusRequest {}).await.is_ok() {
                return client;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server on {addr} did not answer within 60 s:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn job(client: &mut IngestionServiceClient<Channel>, id: &str) -> pb::BackfillJob {
    client
        .get_backfill(pb::GetBackfillRequest {
            job_id: id.to_owned(),
        })
        .await
        .expect("get backfill")
        .into_inner()
        .job
        .expect("job")
}

/// Every record of `topic` from the start, up to a marker published now (one partition).
async fn all_events(bus: &KafkaBus, topic: &str) -> Vec<stockcast_bus::Message> {
    let (_, group) = stockcast_bus::conformance::names("restart");
    let mut consumer: Box<dyn Consumer> = bus.subscribe(&group, &[topic]).await.expect("subscribe");
    let marker = uuid::Uuid::new_v4().to_string();
    bus.publish(topic, Record::new(MARKER_KEY, marker.clone().into_bytes()))
        .await
        .expect("publish marker");
    let mut events = Vec::new();
    loop {
        let message = recv(consumer.as_mut()).await;
        if message.key.as_ref() == MARKER_KEY && message.payload.as_ref() == marker.as_bytes() {
            return events;
        }
        events.push(message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backfill_resumes_with_exactly_the_expected_rows_and_events() {
    let setup = Setup {
        pg_url: stockcast_testkit::POSTGRES.require(),
        schema: stockcast_testkit::unique("restart"),
        brokers: stockcast_testkit::KAFKA.require(),
        topic: stockcast_bus::conformance::names("restart").0,
        addr: format!("127.0.0.1:{}", stockcast_testkit::free_port()),
    };
    let expected: Vec<Vec<Bar>> = SYMBOLS
        .iter()
        .map(|symbol| {
            SyntheticPath::new(symbol, Interval::M5, START, &params())
                .unwrap()
                .take_while(|b| b.ts < END)
                .collect()
        })
        .collect();
    for bars in &expected {
        assert!(bars.len() > CHUNK_BARS, "two chunks per symbol");
    }
    let total: usize = expected.iter().map(Vec::len).sum();

    let mut first = start_server(&setup, "first");
    let mut client = connect(&mut first, &setup.addr).await;
    let p = params();
    let started = client
        .start_backfill(pb::StartBackfillRequest {
            symbols: SYMBOLS.iter().map(|s| (*s).to_owned()).collect(),
            source: pb::BackfillSource::Synthetic as i32,
            interval: PbInterval::Interval5Minutes as i32,
            range: Some(TimeRange {
                start: Some(prost_types::Timestamp {
                    seconds: START,
                    nanos: 0,
                }),
                end: Some(prost_types::Timestamp {
                    seconds: END,
                    nanos: 0,
                }),
            }),
            params: Some(Params::Synthetic(pb::SyntheticParams {
                seed: p.seed,
                initial_price: p.initial_price,
                annual_drift: p.annual_drift,
                annual_volatility: p.annual_volatility,
                turbulent_volatility_multiplier: p.turbulent_volatility_multiplier,
                regime_switch_probability: p.regime_switch_probability,
                jumps_per_year: p.jumps_per_year,
                jump_volatility: p.jump_volatility,
            })),
            request_id: String::new(),
        })
        .await
        .expect("start backfill")
        .into_inner()
        .job
        .expect("job");
    let job_id = started.job_id.clone();

    // Kill mid-chunk: once the first chunk (KILLA's first 10,000 bars) is durable and two
    // batches of the second are committed, while the job is still running.
    let store = PostgresStore::from(
        stockcast_sql::SchemaPool::connect_lazy(
            &setup.pg_url,
            &setup.schema,
            2,
            Duration::from_secs(10),
        )
        .expect("pool"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let progress = job(&mut client, &job_id).await;
        assert_ne!(
            progress.state,
            JobState::Succeeded as i32,
            "the job finished before it could be killed; make it bigger: {progress:?}"
        );
        assert_ne!(progress.state, JobState::Failed as i32, "{progress:?}");
        let stored: i64 = store
            .coverage(Some(Interval::M5), "", None, 10)
            .await
            .expect("coverage")
            .iter()
            .map(|c| c.bar_count)
            .sum();
        if progress.chunks_done >= 1 && stored >= (CHUNK_BARS + 2 * BATCH_SIZE) as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not far enough within 60 s: {progress:?}, {stored} rows\n{}",
            first.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill();

    // What the killed process left behind, read from the database itself.
    let id = uuid::Uuid::parse_str(&job_id).expect("job id");
    let at_kill = store.job(id).await.expect("job").expect("job row");
    assert_eq!(
        at_kill.state,
        StoredState::Running,
        "the job must be killed mid-job: {at_kill:?}"
    );
    assert!(
        at_kill.chunks_done >= 1 && at_kill.chunks_done < at_kill.chunks_total,
        "killed between the first and the last chunk: {at_kill:?}"
    );
    let mut rows_at_kill = 0;
    for symbol in SYMBOLS {
        rows_at_kill += store
            .bars(symbol, Interval::M5, START, END)
            .await
            .expect("bars")
            .len();
    }
    assert!(
        rows_at_kill < total,
        "rows at kill {rows_at_kill} of {total}"
    );
    // Rows of the chunks marked done; more rows than that means a chunk was cut short after
    // some of its batches committed, so the resumed job has to redo part of a chunk.
    let done_keys = store.done_chunks(id).await.expect("done chunks");
    let rows_of_done_chunks: usize = done_keys
        .iter()
        .map(|key| {
            let (symbol, range) = key.split_once('/').expect("symbol/start-end");
            let (from, to) = range.split_once('-').expect("start-end");
            let (from, to): (i64, i64) = (from.parse().unwrap(), to.parse().unwrap());
            let index = SYMBOLS.iter().position(|s| *s == symbol).expect("symbol");
            expected[index]
                .iter()
                .filter(|b| (from..to).contains(&b.ts))
                .count()
        })
        .sum();
    assert!(
        rows_at_kill > rows_of_done_chunks,
        "killed mid-chunk: {rows_at_kill} rows stored, {rows_of_done_chunks} in done chunks \
         {done_keys:?}"
    );

    let mut second = start_server(&setup, "second");
    let mut client = connect(&mut second, &setup.addr).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let progress = job(&mut client, &job_id).await;
        if progress.state == JobState::Succeeded as i32 {
            break progress;
        }
        assert_ne!(
            progress.state,
            JobState::Failed as i32,
            "{progress:?}\n{}",
            second.logs()
        );
        assert!(
            Instant::now() < deadline,
            "resumed job not done within 120 s: {progress:?}\n{}",
            second.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(done.resumes >= 1, "{done:?}");
    assert_eq!(done.chunks_done, done.chunks_total, "{done:?}");
    assert_eq!(done.chunks_total, 2 * SYMBOLS.len() as i64, "{done:?}");
    assert_eq!(
        (done.bars_rejected, done.bars_corrected),
        (0, 0),
        "{done:?}"
    );
    // Batches of the interrupted chunk committed before the kill are found again as
    // duplicates when the chunk is redone.
    assert_eq!(
        done.bars_accepted + done.bars_duplicate,
        total as i64,
        "{done:?}"
    );

    // Rows: exactly the generated path of every symbol, each once, never corrected.
    for (symbol, bars) in SYMBOLS.iter().zip(&expected) {
        let rows = store
            .bars(symbol, Interval::M5, 0, Y2100)
            .await
            .expect("bars");
        assert_eq!(rows.len(), bars.len(), "{symbol}: row count");
        for (row, bar) in rows.iter().zip(bars) {
            assert_eq!(&row.bar, bar, "{symbol}");
            assert_eq!(
                (row.source.as_str(), row.revision),
                ("synthetic", 0),
                "{symbol}"
            );
        }
    }

    // Events: at least once. A batch is published before its transaction commits, so the
    // one batch in flight at the kill may be published twice (its rows were rolled back and
    // redone); every other bar is published once. Repeats must be the same event: only
    // `ingested_at`, the time of each attempt, may differ.
    let bus = KafkaBus::new(KafkaSettings {
        brokers: setup.brokers.clone(),
        ..KafkaSettings::default()
    })
    .expect("bus");
    let messages = all_events(&bus, &setup.topic).await;
    let mut by_key: BTreeMap<(String, i64), Vec<MarketBarEvent>> = BTreeMap::new();
    for message in &messages {
        let event: MarketBarEvent = message.decode().expect("decode MarketBarEvent");
        let bar = Bar::try_from(event.bar.as_ref().expect("bar")).expect("valid bar");
        assert_eq!(message.key.as_ref(), bar.symbol.as_bytes());
        by_key.entry((bar.symbol, bar.ts)).or_default().push(event);
    }
    let (mut missing, mut without_job_id) = (0, 0);
    for bars in &expected {
        for bar in bars {
            let Some(events) = by_key.remove(&(bar.symbol.clone(), bar.ts)) else {
                missing += 1;
                continue;
            };
            let first_event = MarketBarEvent {
                ingested_at: None,
                ..events[0].clone()
            };
            assert_eq!(first_event.bar, Some(bar.to_proto("synthetic")));
            assert_eq!(first_event.revision, 0);
            assert_eq!(first_event.previous, None);
            assert_eq!(first_event.ingest_path, IngestPath::Backfill as i32);
            if first_event.backfill_job_id != job_id {
                without_job_id += 1;
            }
            for repeat in &events[1..] {
                let repeat = MarketBarEvent {
                    ingested_at: None,
                    ..repeat.clone()
                };
                assert_eq!(repeat, first_event, "a repeated event differs");
            }
        }
    }
    assert_eq!(missing, 0, "bars without an event");
    assert!(
        by_key.is_empty(),
        "{} unexpected (symbol, ts) keys, e.g. {:?}",
        by_key.len(),
        by_key.keys().next()
    );
    let repeats = messages.len() - total;
    assert!(
        repeats <= BATCH_SIZE,
        "{repeats} repeated events: more than the one batch in flight at the kill"
    );
    eprintln!(
        "killed at {} of {} chunks with {rows_at_kill} of {total} rows stored \
         ({rows_of_done_chunks} in done chunks); {} events, {repeats} repeated; job after \
         resume: {done:?}",
        at_kill.chunks_done,
        at_kill.chunks_total,
        messages.len()
    );
    // Checked last so that the checks above still run: ingest.rs takes the event's job id
    // from the chunk marker, which jobs.rs sets only on a chunk's last batch.
    assert_eq!(
        without_job_id, 0,
        "of {total} backfill events, {without_job_id} have a backfill_job_id other than {job_id:?} \
         (every batch but a chunk's last publishes an empty one)"
    );
    second.kill();
    let _ = store.db().drop_schema().await;
}
