//! The stream processor while a store goes away and comes back, on Kafka (tansu), Redis and
//! PostgreSQL (`scripts/deps.sh up`): bars keep arriving during the outage, the processor
//! commits nothing past them (none of their rows appear, no offset moves), and once the store
//! is back every feature row exists exactly once with the values of a batch computation and
//! the online store holds each symbol's newest vector.
//!
//! - Redis: a private `redis-server` on a free port, killed with SIGKILL and started again on
//!   the same port, empty (the shared Redis is never touched).
//! - PostgreSQL: reached through a TCP forwarder in the test whose connections are dropped
//!   and new ones refused during the outage (the shared PostgreSQL keeps running).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stockcast_bus::{KafkaBus, KafkaSettings};
use stockcast_feature_store::store::postgres::PostgresOffline;
use stockcast_feature_store::store::redis::{RedisOnline, RedisSettings};
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_feature_store::store::{OfflineStore, OnlineStore};
use stockcast_feature_store::view::{View, default_view};
use stockcast_market::Bar;
use stockcast_runtime::Secret;
use stockcast_runtime::Shutdown;
use stockcast_testkit::process::ChildGuard;
use stream::{
    Backends, assert_exact, catalog, count_rows, interleave, processor, publish, series, settings,
    topic,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::stream;

/// How long catching up may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(120);
/// How long the test watches the processor during the outage.
const OUTAGE: Duration = Duration::from_secs(3);
const SYMBOLS: [&str; 4] = ["RA", "RB", "RC", "RD"];
/// Bars per symbol before the outage, and published during it.
const BEFORE: usize = 150;
const DURING: usize = 60;

/// A dependency the test takes away and gives back.
trait Outage {
    fn cut(&mut self);
    fn restore(&mut self);
}

fn kafka() -> Arc<KafkaBus> {
    Arc::new(
        KafkaBus::new(KafkaSettings {
            brokers: stockcast_testkit::KAFKA.require(),
            ..KafkaSettings::default()
        })
        .expect("kafka bus"),
    )
}

fn postgres(url: String, schema: &str) -> DatabaseSettings {
    DatabaseSettings {
        url: Secret::new(url),
        schema: schema.to_owned(),
        max_connections: 4,
        acquire_timeout_ms: 2_000,
    }
}

async fn redis(url: String, prefix: &str) -> RedisOnline {
    RedisOnline::connect(&RedisSettings {
        url: Secret::new(url),
        key_prefix: prefix.to_owned(),
        ..RedisSettings::default()
    })
    .await
    .expect("redis")
}

async fn drop_schema(settings: &DatabaseSettings) {
    if let Ok(store) = PostgresOffline::connect_lazy(settings) {
        let _ = store.drop_schema().await;
        store.close().await;
    }
}

/// Polls `check` until it holds, failing with `what` at the deadline.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let until = Instant::now() + DEADLINE;
    loop {
        let state = match check().await {
            Ok(()) => return,
            Err(state) => state,
        };
        assert!(
            Instant::now() < until,
            "{what}: not within {DEADLINE:?} ({state})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The newest vector of every series, read from `online`, is its last bar's, bit for bit.
async fn newest_online(
    online: &dyn OnlineStore,
    view: &View,
    all: &[Vec<Bar>],
) -> Result<(), String> {
    let symbols: Vec<String> = all.iter().map(|s| s[0].symbol.clone()).collect();
    let got = online
        .read(&view.id, &symbols)
        .await
        .map_err(|e| e.to_string())?;
    for (s, got) in all.iter().zip(got) {
        let want = view.compute(s).pop().unwrap();
        let at = view.event_time(s.last().unwrap().ts);
        let Some(got) = got else {
            return Err(format!("no online vector of {}", s[0].symbol));
        };
        let same = got.values.len() == want.len()
            && got
                .values
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        if got.event_time != at || !same {
            return Err(format!(
                "{}: online vector at {} {:?}, want {at} {want:?}",
                s[0].symbol, got.event_time, got.values
            ));
        }
    }
    Ok(())
}

/// Bars flow into a processor on `b`; `outage` is cut while they do, more bars are published,
/// and the processor must neither store their rows nor commit their offsets until `outage`
/// is restored; then everything is stored exactly once. `direct` reads the offline store
/// without going through the outage.
async fn bars_during_an_outage(
    case: &str,
    b: Backends,
    direct: &dyn OfflineStore,
    outage: &mut dyn Outage,
) {
    let (topic, group) = topic(&*b.bus, case).await;
    let view = View::compile(&default_view()).unwrap();
    let all: Vec<Vec<Bar>> = SYMBOLS
        .iter()
        .enumerate()
        .map(|(i, s)| series(s, BEFORE + DURING, 1.0 + i as f64 * 0.29))
        .collect();
    let before: Vec<Vec<Bar>> = all.iter().map(|s| s[..BEFORE].to_vec()).collect();
    let during: Vec<Vec<Bar>> = all.iter().map(|s| s[BEFORE..].to_vec()).collect();
    let (total_before, total) = (BEFORE * SYMBOLS.len(), all.iter().map(Vec::len).sum());
    let symbols: Vec<String> = SYMBOLS.iter().map(|s| (*s).to_owned()).collect();

    let p = processor(&b, &catalog(&[default_view()]), settings(&group, 50));
    let committed: Arc<AtomicU64> = p.progress();
    let stop = Arc::new(tokio::sync::Notify::new());
    let task = {
        let (stop, topic) = (Arc::clone(&stop), topic.clone());
        tokio::spawn(async move { p.run(&topic, async move { stop.notified().await }).await })
    };

    // Cut while the first bars flow.
    let publisher = {
        let (bus, topic, events) = (Arc::clone(&b.bus), topic.clone(), interleave(&before));
        tokio::spawn(async move { publish(&*bus, &topic, &events).await })
    };
    eventually("first rows stored", || async {
        let n = count_rows(direct, &view.id, &symbols).await;
        (n >= total_before / 5)
            .then_some(())
            .ok_or(format!("{n} rows"))
    })
    .await;
    outage.cut();
    publisher.await.expect("publisher");
    publish(&*b.bus, &topic, &interleave(&during)).await;

    // A batch in flight at the cut may still have finished; after that nothing moves.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows_cut = count_rows(direct, &view.id, &symbols).await;
    let committed_cut = committed.load(Ordering::Relaxed);
    assert!(
        rows_cut <= total_before && committed_cut <= total_before as u64,
        "bars published during the outage were stored ({rows_cut} rows) or committed \
         ({committed_cut} events) with {total_before} bars before it"
    );
    let watch_until = Instant::now() + OUTAGE;
    while Instant::now() < watch_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !task.is_finished(),
            "the processor stopped during the outage"
        );
        assert_eq!(
            count_rows(direct, &view.id, &symbols).await,
            rows_cut,
            "rows stored while the store was away"
        );
        assert_eq!(
            committed.load(Ordering::Relaxed),
            committed_cut,
            "offsets committed while the store was away"
        );
    }

    outage.restore();
    eventually("every row stored after the outage", || async {
        let n = count_rows(direct, &view.id, &symbols).await;
        let c = committed.load(Ordering::Relaxed);
        (n >= total && c >= total as u64)
            .then_some(())
            .ok_or(format!("{n} rows of {total}, {c} events committed"))
    })
    .await;
    eventually("newest online vectors", || {
        newest_online(&*b.online, &view, &all)
    })
    .await;
    stop.notify_one();
    let stats = tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the processor did not stop")
        .expect("processor task")
        .expect("the processor ends cleanly");
    assert_eq!(stats.dead_letters, 0, "{stats:?}");
    assert_exact(direct, &view, &all).await;
}

// ---------------------------------------------------------------------------------------
// Redis

/// A private `redis-server` without persistence on a fixed port.
struct PrivateRedis {
    port: u16,
    server: Option<ChildGuard>,
}

impl PrivateRedis {
    fn start(port: u16) -> ChildGuard {
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        let mut server = ChildGuard::spawn("redis-server", command);
        server.wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(30));
        server
    }
}

impl Outage for PrivateRedis {
    fn cut(&mut self) {
        self.server.take().expect("redis running").kill();
    }

    fn restore(&mut self) {
        self.server = Some(Self::start(self.port));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_while_bars_flow_loses_and_duplicates_nothing() {
    let port = stockcast_testkit::free_port();
    let mut redis_server = PrivateRedis {
        port,
        server: Some(PrivateRedis::start(port)),
    };
    let offline_settings = postgres(
        stockcast_testkit::POSTGRES.require(),
        &stockcast_testkit::unique("fs_redis_down"),
    );
    let offline = open(&offline_settings, &Shutdown::new())
        .await
        .expect("postgres");
    let b = Backends {
        bus: kafka(),
        online: Arc::new(redis(format!("redis://127.0.0.1:{port}"), "fs").await),
        offline: Arc::clone(&offline),
    };
    bars_during_an_outage("fs-redis-down", b, &*offline, &mut redis_server).await;
    drop_schema(&offline_settings).await;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

/// A TCP forwarder to `upstream` whose connections can be cut: while down, open
/// connections are dropped and new ones closed at once.
struct Forwarder {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cuts: Arc<watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let up = Arc::new(AtomicBool::new(true));
        let cuts = Arc::new(watch::channel(0u64).0);
        let task = {
            let (up, cuts) = (Arc::clone(&up), Arc::clone(&cuts));
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let mut cut = cuts.subscribe();
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            up,
            cuts,
            task,
        }
    }
}

impl Outage for Forwarder {
    fn cut(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn restore(&mut self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// `url` with its `host:port` replaced by `authority`, and the `host:port` it had.
fn redirect(url: &str, authority: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host_start = rest.rfind('@').map_or(0, |i| i + 1);
    let host_end = rest[host_start..]
        .find(['/', '?'])
        .map_or(rest.len(), |i| host_start + i);
    let mut upstream = rest[host_start..host_end].to_owned();
    if !upstream.contains(':') {
        upstream.push_str(":5432");
    }
    let redirected = format!(
        "{scheme}://{}{authority}{}",
        &rest[..host_start],
        &rest[host_end..]
    );
    (redirected, upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_while_bars_flow_loses_and_duplicates_nothing() {
    let url = stockcast_testkit::POSTGRES.require();
    let schema = stockcast_testkit::unique("fs_pg_down");
    let direct_settings = postgres(url.clone(), &schema);
    // The test's own connection creates the schema and reads it during the outage.
    let direct = open(&direct_settings, &Shutdown::new())
        .await
        .expect("postgres");
    let (_, upstream) = redirect(&url, "");
    let mut forwarder = Forwarder::start(upstream).await;
    let (proxied, _) = redirect(&url, &forwarder.addr.to_string());
    let b = Backends {
        bus: kafka(),
        online: Arc::new(
            redis(
                stockcast_testkit::REDIS.require(),
                &stockcast_testkit::unique("fs-pg-down"),
            )
            .await,
        ),
        offline: open(&postgres(proxied, &schema), &Shutdown::new())
            .await
            .expect("postgres via the forwarder"),
    };
    bars_during_an_outage("fs-pg-down", b, &*direct, &mut forwarder).await;
    drop_schema(&direct_settings).await;
}

#[test]
fn redirect_replaces_the_authority_only() {
    assert_eq!(
        redirect("postgres://postgres@127.0.0.1:5432/db?x=1", "127.0.0.1:7"),
        (
            "postgres://postgres@127.0.0.1:7/db?x=1".to_owned(),
            "127.0.0.1:5432".to_owned()
        )
    );
    assert_eq!(
        redirect("postgresql://localhost/db", "h:1"),
        (
            "postgresql://h:1/db".to_owned(),
            "localhost:5432".to_owned()
        )
    );
}
