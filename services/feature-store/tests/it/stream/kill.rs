//! The feature-store binary killed with SIGKILL while it consumes, on Kafka (tansu), Redis
//! and PostgreSQL (`scripts/deps.sh up`): two processes are killed mid-stream one after the
//! other, a third finishes, and every feature row exists exactly once with the values of a
//! batch computation, the online store holding each symbol's newest vector. The last process
//! stops on SIGTERM with exit code 0 having committed its offsets: the next process receives
//! only the bars published after it.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stockcast_bus::{EventBus, KafkaBus, KafkaSettings};
use stockcast_feature_store::store::postgres::PostgresOffline;
use stockcast_feature_store::store::redis::{RedisOnline, RedisSettings};
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_feature_store::store::{OfflineStore, OnlineStore};
use stockcast_feature_store::view::{View, default_view};
use stockcast_market::Bar;
use stockcast_runtime::Secret;
use stockcast_runtime::Shutdown;
use stockcast_testkit::process::ChildGuard;
use stream::{assert_exact, count_rows, interleave, publish, series, topic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::stream;

/// How long consuming or stopping may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(180);
const SYMBOLS: [&str; 5] = ["KA", "KB", "KC", "KD", "KE"];
/// Bars per symbol published while the processes are killed.
const BARS: usize = 600;
/// Longer than the consumer's session timeout (10 s): tansu, the test broker, hands a member
/// that joins while a killed member is still in the group an empty assignment for good (the
/// killed member stays leader of that generation), so the next process starts once the
/// killed one has left the group. Apache Kafka rebalances when the session expires.
const SESSION_EXPIRY: Duration = Duration::from_secs(12);

/// What every process of the test is started with.
struct Setup {
    brokers: String,
    redis: String,
    postgres: String,
    schema: String,
    prefix: String,
    topic: String,
    group: String,
}

impl Setup {
    /// Starts the service binary; returns it with its metrics port once it listens.
    fn start(&self, name: &str) -> (ChildGuard, u16) {
        let (grpc, metrics) = (
            stockcast_testkit::free_port(),
            stockcast_testkit::free_port(),
        );
        let mut command = Command::new(env!("CARGO_BIN_EXE_stockcast-feature-store"));
        command.env_remove("STOCKCAST_CONFIG");
        for (key, value) in [
            ("SERVER__GRPC_ADDR", format!("127.0.0.1:{grpc}")),
            ("SERVER__METRICS_ADDR", format!("127.0.0.1:{metrics}")),
            ("SERVER__SHUTDOWN_GRACE_MS", "5000".to_owned()),
            ("ONLINE__KIND", "redis".to_owned()),
            ("ONLINE__REDIS__URL", self.redis.clone()),
            ("ONLINE__REDIS__KEY_PREFIX", self.prefix.clone()),
            ("OFFLINE__URL", self.postgres.clone()),
            ("OFFLINE__SCHEMA", self.schema.clone()),
            ("OFFLINE__MAX_CONNECTIONS", "4".to_owned()),
            ("BUS__KIND", "kafka".to_owned()),
            ("BUS__KAFKA__BROKERS", self.brokers.clone()),
            ("TOPICS__BARS", self.topic.clone()),
            ("TOPICS__PARTITIONS", "3".to_owned()),
            ("STREAM__GROUP", self.group.clone()),
            ("STREAM__BATCH_MAX", "50".to_owned()),
            (
                "BUS__KAFKA__PROPERTIES__DEBUG",
                "cgrp,fetch,consumer".to_owned(),
            ),
            (
                "TELEMETRY__LOG_FILTER",
                "debug,h2=info,tower=info,hyper=info,sqlx=warn".to_owned(),
            ),
        ] {
            command.env(format!("STOCKCAST_FEATURE_STORE__{key}"), value);
        }
        let mut process = ChildGuard::spawn(name, command);
        process.wait_for_port(&format!("127.0.0.1:{metrics}"), Duration::from_secs(30));
        (process, metrics)
    }

    fn offline(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: Secret::new(self.postgres.clone()),
            schema: self.schema.clone(),
            max_connections: 2,
            acquire_timeout_ms: 10_000,
        }
    }
}

/// Polls the stored rows until `done` holds for their count, while `process` keeps running.
async fn await_rows(
    offline: &dyn OfflineStore,
    view: &View,
    process: &mut ChildGuard,
    what: &str,
    done: impl Fn(usize) -> bool,
) -> usize {
    let symbols: Vec<String> = SYMBOLS.iter().map(|s| (*s).to_owned()).collect();
    let until = Instant::now() + DEADLINE;
    loop {
        let n = count_rows(offline, &view.id, &symbols).await;
        if done(n) {
            return n;
        }
        process.assert_running();
        assert!(
            Instant::now() < until,
            "{what}: {n} rows after {DEADLINE:?}\n{}",
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the online vector of every series is its last bar's, bit for bit.
async fn await_online_newest(online: &dyn OnlineStore, view: &View, all: &[Vec<Bar>]) {
    let symbols: Vec<String> = all.iter().map(|s| s[0].symbol.clone()).collect();
    let want: Vec<(i64, Vec<u64>)> = all
        .iter()
        .map(|s| {
            let values = view.compute(s).pop().unwrap();
            (
                view.event_time(s.last().unwrap().ts),
                values.iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect();
    let until = Instant::now() + DEADLINE;
    loop {
        let got: Vec<Option<(i64, Vec<u64>)>> = online
            .read(&view.id, &symbols)
            .await
            .expect("online read")
            .into_iter()
            .map(|v| v.map(|v| (v.event_time, v.values.iter().map(|x| x.to_bits()).collect())))
            .collect();
        if got.iter().zip(&want).all(|(g, w)| g.as_ref() == Some(w)) {
            return;
        }
        assert!(
            Instant::now() < until,
            "online vectors are not the newest after {DEADLINE:?}: {got:?}\nwant {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of an unlabelled counter or gauge on the process's `/metrics`.
async fn metric(port: u16, name: &str) -> f64 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to /metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request /metrics");
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .await
        .expect("read /metrics");
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !rest.starts_with([' ', '{']) {
                return None;
            }
            rest.split_whitespace().last()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_twice_mid_stream_stores_every_row_exactly_once() {
    let bus: Arc<dyn EventBus> = Arc::new(
        KafkaBus::new(KafkaSettings {
            brokers: stockcast_testkit::KAFKA.require(),
            ..KafkaSettings::default()
        })
        .expect("kafka bus"),
    );
    let (topic, group) = topic(&*bus, "fs-kill").await;
    let setup = Setup {
        brokers: stockcast_testkit::KAFKA.require(),
        redis: stockcast_testkit::REDIS.require(),
        postgres: stockcast_testkit::POSTGRES.require(),
        schema: stockcast_testkit::unique("fs_kill"),
        prefix: stockcast_testkit::unique("fs-kill"),
        topic,
        group,
    };
    // The test's own view of both stores (it also creates the schema).
    let offline = open(&setup.offline(), &Shutdown::new())
        .await
        .expect("postgres");
    let online = RedisOnline::connect(&RedisSettings {
        url: Secret::new(setup.redis.clone()),
        key_prefix: setup.prefix.clone(),
        ..RedisSettings::default()
    })
    .await
    .expect("redis");
    let view = View::compile(&default_view()).unwrap();

    // One more bar per symbol is held back for the last process.
    let full: Vec<Vec<Bar>> = SYMBOLS
        .iter()
        .enumerate()
        .map(|(i, s)| series(s, BARS + 1, 1.0 + i as f64 * 0.37))
        .collect();
    let head: Vec<Vec<Bar>> = full.iter().map(|s| s[..BARS].to_vec()).collect();
    let tail: Vec<Bar> = full.iter().map(|s| s[BARS].clone()).collect();
    let total = BARS * SYMBOLS.len();

    // Bars flow while the processes are killed.
    let publisher = {
        let (bus, topic, events) = (Arc::clone(&bus), setup.topic.clone(), interleave(&head));
        tokio::spawn(async move { publish(&*bus, &topic, &events).await })
    };

    let (mut first, _) = setup.start("feature-store-1");
    await_rows(&*offline, &view, &mut first, "first process", |n| {
        n >= total / 10
    })
    .await;
    first.kill();
    tokio::time::sleep(SESSION_EXPIRY).await;
    let symbols: Vec<String> = SYMBOLS.iter().map(|s| (*s).to_owned()).collect();
    let at_first = count_rows(&*offline, &view.id, &symbols).await;
    assert!(
        at_first < total,
        "the first process stored all {total} rows before it was killed; publish more bars"
    );

    let (mut second, _) = setup.start("feature-store-2");
    await_rows(&*offline, &view, &mut second, "second process", |n| {
        n >= at_first + 100
    })
    .await;
    second.kill();
    tokio::time::sleep(SESSION_EXPIRY).await;
    let at_second = count_rows(&*offline, &view.id, &symbols).await;
    assert!(
        at_second < total,
        "the second process stored all {total} rows before it was killed; publish more bars"
    );
    publisher.await.expect("publisher");

    let (mut third, _) = setup.start("feature-store-3");
    await_rows(&*offline, &view, &mut third, "third process", |n| {
        n >= total
    })
    .await;
    await_online_newest(&online, &view, &head).await;
    assert_exact(&*offline, &view, &head).await;
    let status = third.terminate(DEADLINE);
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM stops the service cleanly: {status}\n{}",
        third.logs()
    );

    // The graceful stop committed every offset: the next process consumes the new bars only.
    publish(&*bus, &setup.topic, &tail).await;
    let (mut fourth, metrics) = setup.start("feature-store-4");
    await_rows(&*offline, &view, &mut fourth, "fourth process", |n| {
        n >= total + tail.len()
    })
    .await;
    assert_eq!(
        metric(metrics, "stockcast_features_events_total").await,
        tail.len() as f64,
        "events consumed after a graceful stop: only the new bars\n{}",
        fourth.logs()
    );
    await_online_newest(&online, &view, &full).await;
    assert_exact(&*offline, &view, &full).await;
    let status = fourth.terminate(DEADLINE);
    assert_eq!(status.code(), Some(0), "{status}\n{}", fourth.logs());

    if let Ok(store) = PostgresOffline::connect_lazy(&setup.offline()) {
        let _ = store.drop_schema().await;
        store.close().await;
    }
}
