//! The online-store conformance suite on a real Redis (`scripts/deps.sh up redis`), one key
//! prefix per test; then what only Redis can do: lose its script cache, restart.

#![allow(clippy::panic)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, Config, KeysInterface, LuaInterface};
use fred::types::{ClusterHash, CustomCommand};
use stockcast_feature_store::store::redis::{
    MAX_EVENT_TIME, MAX_KEYS_PER_COMMAND, MIN_EVENT_TIME, RedisOnline, RedisSettings,
};
use stockcast_feature_store::store::{OnlineStore, StoreError};
use stockcast_runtime::Secret;
use stockcast_testkit::process::ChildGuard;

use super::cases::{self, T0, put, read_one, symbols, view, write};

fn settings(url: &str) -> RedisSettings {
    RedisSettings {
        url: Secret::new(url),
        key_prefix: stockcast_testkit::unique("fs"),
        pool_size: 2,
        timeout_ms: 2_000,
    }
}

async fn connect(settings: &RedisSettings) -> RedisOnline {
    RedisOnline::connect(settings)
        .await
        .unwrap_or_else(|e| panic!("connect to Redis: {e}"))
}

async fn redis() -> Arc<dyn OnlineStore> {
    let url = stockcast_testkit::REDIS.require();
    Arc::new(connect(&settings(&url)).await)
}

crate::online_store_cases!(redis());

/// A plain client for what the store does not do (flush scripts, inspect keys).
async fn admin(url: &str) -> fred::prelude::Client {
    let client = Builder::from_config(Config::from_url(url).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_documented_layout() {
    let url = stockcast_testkit::REDIS.require();
    let settings = settings(&url);
    let store = connect(&settings).await;
    let view = view();
    store
        .write(&[
            write(&view, "AAPL", T0, &[1.0, f64::NAN]),
            write(&view, "OLD", -3_600, &[]),
        ])
        .await
        .unwrap();
    let key = format!("{}:default:v1:AAPL", settings.key_prefix);
    assert_eq!(store.key(&view, "AAPL"), key);
    let admin = admin(&url).await;
    let kind: String = admin.r#type(&key).await.unwrap();
    assert_eq!(kind, "string");
    let value: Vec<u8> = admin.get(&key).await.unwrap();
    let mut expected = b"001704153600".to_vec();
    expected.extend_from_slice(&1.0f64.to_le_bytes());
    expected.extend_from_slice(&f64::NAN.to_le_bytes());
    assert_eq!(value, expected);
    let ttl_ms: i64 = admin.pttl(&key).await.unwrap();
    assert!(
        ttl_ms > 0 && ttl_ms <= cases::LONG_TTL.as_millis() as i64,
        "{ttl_ms}"
    );
    let old: Vec<u8> = admin.get(store.key(&view, "OLD")).await.unwrap();
    assert_eq!(old, b"-00000003600");
    admin.quit().await.unwrap();
}

/// Event times outside the 12-character range fail the whole batch before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_times_outside_the_layout_fail_the_batch() {
    let store = redis().await;
    let view = view();
    for t in [MAX_EVENT_TIME + 1, MIN_EVENT_TIME - 1, i64::MAX, i64::MIN] {
        let result = store
            .write(&[
                write(&view, "AAPL", T0, &[1.0]),
                write(&view, "MSFT", t, &[1.0]),
            ])
            .await;
        assert!(
            matches!(result, Err(StoreError::Failed { .. })),
            "{t}: {result:?}"
        );
    }
    assert_eq!(read_one(store.as_ref(), &view, "AAPL").await, None);
    let applied = store
        .write(&[
            write(&view, "AAPL", MAX_EVENT_TIME, &[1.0]),
            write(&view, "MSFT", MIN_EVENT_TIME, &[2.0]),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true]);
    assert!(!put(store.as_ref(), &view, "AAPL", MAX_EVENT_TIME - 1, &[0.0]).await);
    assert!(put(store.as_ref(), &view, "MSFT", MIN_EVENT_TIME + 1, &[3.0]).await);
    let read = store
        .read(&view, &symbols(&["AAPL", "MSFT"]))
        .await
        .unwrap();
    assert_eq!(read[0].as_ref().unwrap().event_time, MAX_EVENT_TIME);
    assert_eq!(
        read[1].as_ref().map(|v| (v.event_time, v.values.clone())),
        Some((MIN_EVENT_TIME + 1, vec![3.0]))
    );
}

/// A key that holds something else (a hash of an earlier layout, or a string without a
/// readable event time) reads as absent or corrupt, and the next write replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_values_are_replaced_by_the_next_write() {
    let url = stockcast_testkit::REDIS.require();
    let store = connect(&settings(&url)).await;
    let admin = admin(&url).await;
    let view = view();
    let hash_key = store.key(&view, "HASH");
    let _: () =
        fred::prelude::HashesInterface::hset(&admin, &hash_key, [("t", "9999999999"), ("v", "")])
            .await
            .unwrap();
    let junk_key = store.key(&view, "JUNK");
    let _: () = admin
        .set(&junk_key, "not a vector", None, None, false)
        .await
        .unwrap();
    assert_eq!(read_one(&store, &view, "HASH").await, None);
    assert!(matches!(
        store.read(&view, &symbols(&["JUNK"])).await,
        Err(StoreError::Corrupt(_))
    ));

    let applied = store
        .write(&[
            write(&view, "HASH", T0, &[1.0]),
            write(&view, "JUNK", T0, &[2.0]),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true]);
    let read = store
        .read(&view, &symbols(&["HASH", "JUNK"]))
        .await
        .unwrap();
    assert_eq!(read[0].as_ref().unwrap().values, vec![1.0]);
    assert_eq!(read[1].as_ref().unwrap().values, vec![2.0]);
    let kind: String = admin.r#type(&hash_key).await.unwrap();
    assert_eq!(kind, "string");
    admin.quit().await.unwrap();
}

/// On a server of its own: `SCRIPT FLUSH` would make other users of the shared Redis
/// reload their scripts too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_flushed_script_cache() {
    let redis = OwnRedis::start(stockcast_testkit::free_port());
    let url = redis.url();
    let store = connect(&settings(&url)).await;
    let admin = admin(&url).await;
    let view = view();
    assert!(put(&store, &view, "AAPL", T0, &[1.0]).await);

    admin.script_flush(false).await.unwrap();
    let applied = store
        .write(&[
            write(&view, "AAPL", T0 + 60, &[2.0]),
            write(&view, "AAPL", T0 + 30, &[9.0]),
            write(&view, "MSFT", T0, &[3.0]),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, false, true]);

    admin.script_flush(false).await.unwrap();
    assert!(!put(&store, &view, "AAPL", T0, &[0.0]).await);
    let read = store
        .read(&view, &symbols(&["AAPL", "MSFT"]))
        .await
        .unwrap();
    assert_eq!(read[0].as_ref().unwrap().values, vec![2.0]);
    assert_eq!(read[1].as_ref().unwrap().values, vec![3.0]);
    admin.quit().await.unwrap();
}

/// Batches larger than one command's share of keys are split and still answer in order,
/// repeats of a key included, also when the script has to be sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_larger_than_one_command_split_in_order() {
    let redis = OwnRedis::start(stockcast_testkit::free_port());
    let url = redis.url();
    let store = connect(&settings(&url)).await;
    let admin = admin(&url).await;
    let view = view();
    let n = MAX_KEYS_PER_COMMAND * 2 + 100;
    let batch = |offset: i64| -> Vec<_> {
        (0..n)
            .map(|i| {
                write(
                    &view,
                    &format!("S{i:05}"),
                    T0 + offset + i as i64,
                    &[i as f64],
                )
            })
            .collect()
    };
    // Every key, then every key again one second older: each repeat sits in another
    // command than its first write, and is refused.
    let mut writes = batch(10);
    writes.extend(batch(9));
    admin.script_flush(false).await.unwrap();
    let applied = store.write(&writes).await.unwrap();
    assert_eq!(applied[..n], vec![true; n][..]);
    assert_eq!(applied[n..], vec![false; n][..]);
    assert_eq!(store.write(&batch(10)).await.unwrap(), vec![true; n]);

    let request: Vec<String> = (0..n + 50)
        .rev()
        .map(|i| format!("S{i:05}"))
        .chain(std::iter::once("S00000".to_owned()))
        .collect();
    let read = store.read(&view, &request).await.unwrap();
    assert_eq!(read.len(), request.len());
    for (symbol, vector) in request.iter().zip(&read) {
        let i: usize = symbol[1..].parse().unwrap();
        match vector {
            Some(v) if i < n => {
                assert_eq!(
                    (v.event_time, v.values.clone()),
                    (T0 + 10 + i as i64, vec![i as f64])
                );
            }
            None if i >= n => {}
            other => panic!("{symbol}: {other:?}"),
        }
    }
    admin.quit().await.unwrap();
}

/// On Redis Cluster a command's keys must share a hash slot: reads and writes group them
/// by slot, and a node that lost the script gets it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_groups_keys_by_slot() {
    let port = stockcast_testkit::free_port();
    let redis = OwnRedis::start_cluster(port).await;
    let settings = settings(&format!("redis-cluster://127.0.0.1:{port}"));
    settings.validate("online.redis").unwrap();
    let new_store = || async { Arc::new(connect(&settings).await) as Arc<dyn OnlineStore> };
    cases::roundtrip_preserves_values_bit_exactly(new_store().await).await;
    cases::many_symbols_read_in_request_order(new_store().await).await;
    cases::older_never_replaces_newer_and_equal_replaces(new_store().await).await;
    cases::views_and_versions_are_isolated(new_store().await).await;

    let admin = admin(&redis.url()).await;
    admin.script_flush(false).await.unwrap();
    let store = new_store().await;
    admin.script_flush(false).await.unwrap();
    let view = view();
    let writes: Vec<_> = (0..50)
        .map(|i| write(&view, &format!("C{i}"), T0 + i, &[i as f64]))
        .collect();
    assert_eq!(store.write(&writes).await.unwrap(), vec![true; 50]);
    let request: Vec<String> = (0..50).map(|i| format!("C{i}")).collect();
    let read = store.read(&view, &request).await.unwrap();
    for (i, vector) in read.iter().enumerate() {
        assert_eq!(vector.as_ref().unwrap().values, vec![i as f64]);
    }
    admin.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_nothing_is_unavailable() {
    let port = stockcast_testkit::free_port();
    let mut settings = settings(&format!("redis://127.0.0.1:{port}"));
    settings.timeout_ms = 500;
    match RedisOnline::connect(&settings).await {
        Err(StoreError::Unavailable { backend, .. }) => assert_eq!(backend, "redis"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A `redis-server` of this test's own on a free port (never the shared one).
struct OwnRedis {
    port: u16,
    child: ChildGuard,
    /// Where a cluster node keeps its `nodes.conf`.
    _dir: Option<tempfile::TempDir>,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        Self::start_with(port, &[], None)
    }

    /// A one-node Redis Cluster holding all 16,384 slots: keys of different slots are
    /// refused in one command (`CROSSSLOT`) as on a real cluster.
    async fn start_cluster(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let conf = format!("{path}/nodes.conf");
        let redis = Self::start_with(
            port,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--cluster-announce-ip",
                "127.0.0.1",
                "--dir",
                &path,
            ],
            Some(dir),
        );
        let admin = admin(&format!("redis://127.0.0.1:{port}")).await;
        let _: () = admin
            .custom(
                CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                vec!["ADDSLOTSRANGE", "0", "16383"],
            )
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info: String = admin
                .custom(
                    CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                    vec!["INFO"],
                )
                .await
                .unwrap();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster not ok: {info}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        admin.quit().await.unwrap();
        redis
    }

    fn start_with(port: u16, extra: &[&str], dir: Option<tempfile::TempDir>) -> Self {
        let port_arg = port.to_string();
        let mut args = vec!["--port", &port_arg, "--save", "", "--appendonly", "no"];
        args.extend_from_slice(extra);
        let mut command = Command::new("redis-server");
        command.args(&args);
        // Fails with how it could not start (apt-get install redis-server when missing).
        let mut child = ChildGuard::spawn("redis-server", command);
        child.wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(20));
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        self.child.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_recovers_after_a_redis_restart() {
    let port = stockcast_testkit::free_port();
    let mut redis = OwnRedis::start(port);
    let mut settings = settings(&redis.url());
    settings.timeout_ms = 500;
    let store = connect(&settings).await;
    let view = view();
    assert!(put(&store, &view, "AAPL", T0, &[1.0]).await);

    redis.kill();
    // During the outage every call fails as Unavailable (once the pool has noticed).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    while failures < 3 {
        assert!(
            Instant::now() < deadline,
            "calls kept succeeding with Redis down"
        );
        let read = store.read(&view, &symbols(&["AAPL"])).await;
        let written = store.write(&[write(&view, "AAPL", T0 + 1, &[1.5])]).await;
        for result in [read.map(|_| ()), written.map(|_| ())] {
            match result {
                Err(StoreError::Unavailable { .. }) => failures += 1,
                Err(other) => panic!("expected Unavailable during the outage, got {other}"),
                Ok(()) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.ping().await.is_err());

    // Same port, empty data set, empty script cache.
    let _redis = OwnRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.write(&[write(&view, "AAPL", T0 + 2, &[2.0])]).await {
            Ok(applied) => {
                assert_eq!(applied, vec![true]);
                break;
            }
            Err(StoreError::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("no recovery after the restart: {other}"),
        }
    }
    store.ping().await.unwrap();
    let stored = read_one(&store, &view, "AAPL").await.unwrap();
    assert_eq!((stored.event_time, stored.values), (T0 + 2, vec![2.0]));
    assert!(!put(&store, &view, "AAPL", T0, &[0.0]).await);
}
