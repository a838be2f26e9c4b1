//! The online-store conformance suite on a real Redis (`scripts/deps.sh up redis`), one key
//! prefix per test; then what only Redis can do: lose its script cache, restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/online_cases.rs"]
mod online_cases;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, Config, KeysInterface, LuaInterface};
use online_cases::{T0, put, read_one, symbols, view, write};
use stockcast_feature_store::store::redis::{RedisOnline, RedisSettings};
use stockcast_feature_store::store::{OnlineStore, StoreError};
use stockcast_runtime::Secret;

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

online_store_cases!(redis());

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
        .write(&[write(&view, "AAPL", T0, &[1.0, f64::NAN])])
        .await
        .unwrap();
    let key = format!("{}:default:v1:AAPL", settings.key_prefix);
    assert_eq!(store.key(&view, "AAPL"), key);
    let admin = admin(&url).await;
    let t: String = fred::prelude::HashesInterface::hget(&admin, &key, "t")
        .await
        .unwrap();
    assert_eq!(t, T0.to_string());
    let v: Vec<u8> = fred::prelude::HashesInterface::hget(&admin, &key, "v")
        .await
        .unwrap();
    let mut expected = 1.0f64.to_le_bytes().to_vec();
    expected.extend_from_slice(&f64::NAN.to_le_bytes());
    assert_eq!(v, expected);
    let ttl_ms: i64 = admin.pttl(&key).await.unwrap();
    assert!(
        ttl_ms > 0 && ttl_ms <= online_cases::LONG_TTL.as_millis() as i64,
        "{ttl_ms}"
    );
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
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        let redis = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
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
