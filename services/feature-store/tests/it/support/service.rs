//! The feature store in-process behind its gRPC API: on Kafka (tansu), Redis and PostgreSQL
//! with a unique topic, consumer group, key prefix and schema per test, or on the embedded
//! backends (in-process bus, in-memory online store, SQLite); with a connected client, bar
//! publishing, polling helpers and a clean shutdown.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stockcast_bus::{BusKind, KafkaSettings};
use stockcast_feature_store::store::memory::MemoryOnline;
use stockcast_feature_store::store::postgres::PostgresOffline;
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_feature_store::view::{View, ViewSpec};
use stockcast_feature_store::{Deps, OnlineKind, Settings, StartError};
use stockcast_market::{Bar, Interval};
use stockcast_proto::stockcast::features::v1 as pb;
use stockcast_proto::stockcast::features::v1::feature_store_service_client::FeatureStoreServiceClient;
use stockcast_runtime::{Secret, Shutdown};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How long the service may take to answer its first call (topics, migrations).
pub const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long consuming, materializing or stopping may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(120);
pub const DAY: i64 = 86_400;

/// Settings on the test servers: a unique bars topic (one partition), consumer group, Redis
/// key prefix and PostgreSQL schema, with `views`.
pub fn real_settings(case: &str, views: Vec<ViewSpec>) -> Settings {
    let (topic, group) = stockcast_bus::conformance::names(case);
    let mut s = Settings::default();
    s.topics.bars = topic;
    s.topics.partitions = 1;
    s.stream.group = group;
    s.stream.batch_max = 500;
    s.stream.batch_wait_ms = 20;
    s.bus.kind = BusKind::Kafka;
    s.bus.kafka = KafkaSettings {
        brokers: stockcast_testkit::KAFKA.require(),
        ..KafkaSettings::default()
    };
    s.online.kind = OnlineKind::Redis;
    s.online.redis.url = Secret::new(stockcast_testkit::REDIS.require());
    s.online.redis.key_prefix = stockcast_testkit::unique(case);
    s.offline = DatabaseSettings {
        url: Secret::new(stockcast_testkit::POSTGRES.require()),
        schema: stockcast_testkit::unique("fs_svc"),
        max_connections: 4,
        acquire_timeout_ms: 10_000,
    };
    s.server.shutdown_grace_ms = 5_000;
    s.views = views;
    s
}

/// Settings and backends of the embedded default: the in-process bus, the in-memory online
/// store and SQLite in memory.
pub async fn embedded(case: &str, views: Vec<ViewSpec>) -> (Settings, Deps) {
    let (topic, group) = stockcast_bus::conformance::names(case);
    let mut s = Settings::default();
    s.topics.bars = topic;
    s.topics.partitions = 1;
    s.stream.group = group;
    s.views = views;
    let deps = Deps {
        online: Arc::new(MemoryOnline::new()),
        offline: open(&DatabaseSettings::default(), &Shutdown::new())
            .await
            .expect("sqlite"),
        bus: Arc::new(stockcast_bus::MemoryBus::new()),
        clock: stockcast_runtime::clock::system(),
    };
    (s, deps)
}

/// A running in-process feature store.
pub struct Service {
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// A connected client.
    pub client: FeatureStoreServiceClient<Channel>,
    /// The backends it runs on (shared with the test).
    pub deps: Deps,
    /// The settings it was started with.
    pub settings: Settings,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), StartError>>,
}

impl Service {
    /// Opens the backends `settings` names and starts the service on them.
    pub async fn start(settings: Settings) -> Self {
        let deps = Deps::from_settings(&settings, &stockcast_runtime::Shutdown::new())
            .await
            .expect("backends");
        Self::start_on(settings, deps).await
    }

    /// Starts the service on `deps`.
    pub async fn start_on(settings: Settings, deps: Deps) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = Shutdown::new();
        let task = tokio::spawn(Box::pin(stockcast_feature_store::serve(
            listener,
            settings.clone(),
            deps.clone(),
            shutdown.clone(),
        )));
        let client = connect(addr, &task).await;
        Self {
            addr,
            client,
            deps,
            settings,
            shutdown,
            task,
        }
    }

    /// A client (cheap clone of the connected one).
    pub fn client(&self) -> FeatureStoreServiceClient<Channel> {
        self.client.clone()
    }

    /// The bars topic.
    pub fn topic(&self) -> &str {
        &self.settings.topics.bars
    }

    /// Publishes `bars` to the service's bars topic, one record per publish call.
    pub async fn publish(&self, bars: &[Bar]) {
        crate::support::stream::publish(&*self.deps.bus, self.topic(), bars).await;
    }

    /// Stops the service (the stream processor after its batch, jobs after their chunk) and
    /// returns its result.
    pub async fn stop(self) -> Result<(), StartError> {
        let Self {
            client,
            shutdown,
            task,
            ..
        } = self;
        drop(client);
        shutdown.trigger();
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("the service did not stop in time")
            .expect("service task panicked")
    }
}

/// Drops the PostgreSQL schema of `settings` (best effort: it only holds test data).
pub async fn drop_schema(settings: &Settings) {
    if let Ok(store) = PostgresOffline::connect_lazy(&settings.offline) {
        let _ = store.drop_schema().await;
        store.close().await;
    }
}

async fn connect(
    addr: SocketAddr,
    task: &JoinHandle<Result<(), StartError>>,
) -> FeatureStoreServiceClient<Channel> {
    let deadline = Instant::now() + START_DEADLINE;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(60));
    let mut last_error = String::new();
    while Instant::now() < deadline {
        assert!(
            !task.is_finished(),
            "the feature store stopped before answering"
        );
        if let Ok(channel) = endpoint.connect().await {
            let mut client =
                FeatureStoreServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
            match client
                .list_feature_views(pb::ListFeatureViewsRequest::default())
                .await
            {
                Ok(_) => return client,
                Err(status) => last_error = status.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the feature store on {addr} did not answer within {START_DEADLINE:?}: {last_error}");
}

/// Polls `check` every 50 ms until it returns `Some`, panicking with `what` at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < until, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Now, seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Today 00:00 UTC.
pub fn today() -> i64 {
    let n = now();
    n - n.rem_euclid(DAY)
}

pub fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// `bars` moved so that the first opens at `start` (daily, consecutive).
pub fn starting_at(mut bars: Vec<Bar>, start: i64) -> Vec<Bar> {
    for (i, b) in bars.iter_mut().enumerate() {
        b.ts = start + i as i64 * DAY;
    }
    bars
}

/// A daily series whose closes jump sharply from one bar to the next (every close differs
/// from its neighbours by several percent, up or down), so that a feature or label that
/// used one bar too many or too few has a visibly different value.
pub fn jumpy(symbol: &str, start: i64, n: usize, salt: usize) -> Vec<Bar> {
    let mut prev = 60.0;
    (0..n)
        .map(|i| {
            let step = ((i * 37 + salt * 11) % 13) as f64;
            let close = 50.0 + 4.0 * step + i as f64 * 0.01;
            let open = prev;
            prev = close;
            Bar {
                symbol: symbol.to_owned(),
                interval: Interval::D1,
                ts: start + i as i64 * DAY,
                open,
                high: open.max(close) * 1.01,
                low: open.min(close) * 0.99,
                close,
                volume: 1.0e6 + ((i * 13 + salt) % 7) as f64 * 1.0e5,
            }
        })
        .collect()
}

/// The online vectors of `symbols`, version 0 of `view`.
pub async fn online(
    client: &mut FeatureStoreServiceClient<Channel>,
    view: &str,
    version: i32,
    symbols: &[&str],
) -> pb::GetOnlineFeaturesResponse {
    client
        .get_online_features(pb::GetOnlineFeaturesRequest {
            feature_view: view.to_owned(),
            feature_view_version: version,
            symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
        })
        .await
        .expect("GetOnlineFeatures")
        .into_inner()
}

/// Waits until the online vector of each series' symbol has the event time of its last bar,
/// and every bar's row is in the offline store.
pub async fn await_online(
    client: &FeatureStoreServiceClient<Channel>,
    view: &View,
    all: &[&[Bar]],
) {
    let symbols: Vec<&str> = all.iter().map(|s| s[0].symbol.as_str()).collect();
    let want: Vec<i64> = all
        .iter()
        .map(|s| view.event_time(s.last().unwrap().ts))
        .collect();
    eventually("online vectors of the last bars", || {
        let mut client = client.clone();
        let symbols = symbols.clone();
        let want = want.clone();
        let name = view.id.name.clone();
        let version = view.id.version;
        async move {
            let r = online(&mut client, &name, version, &symbols).await;
            let got: Vec<i64> = r
                .vectors
                .iter()
                .map(|v| v.event_time.map_or(0, |t| t.seconds))
                .collect();
            (got == want).then_some(())
        }
    })
    .await;
    // The online write precedes the offline transaction: wait for the rows as well.
    let total: usize = all.iter().map(|s| s.len()).sum();
    eventually("offline rows of every bar", || {
        let mut client = client.clone();
        let symbols = symbols.clone();
        let name = view.id.name.clone();
        let version = view.id.version;
        async move {
            let rows = span_rows(&mut client, &name, version, &symbols).await;
            (rows.len() == total).then_some(())
        }
    })
    .await;
}

/// Every chunk of a historical stream.
pub async fn historical(
    client: &mut FeatureStoreServiceClient<Channel>,
    request: pb::GetHistoricalFeaturesRequest,
) -> Vec<pb::GetHistoricalFeaturesResponse> {
    let mut stream = client
        .get_historical_features(request)
        .await
        .expect("GetHistoricalFeatures")
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.message().await.expect("historical chunk") {
        chunks.push(chunk);
    }
    chunks
}

/// A span request of `symbols` over every event time, version `version` of `view`.
pub fn span_request(
    view: &str,
    version: i32,
    symbols: &[&str],
    chunk: i32,
    horizon: Option<i32>,
) -> pb::GetHistoricalFeaturesRequest {
    pb::GetHistoricalFeaturesRequest {
        feature_view: view.to_owned(),
        feature_view_version: version,
        entities: Some(pb::get_historical_features_request::Entities::Span(
            pb::EntitySpan {
                symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
                range: Some(stockcast_proto::stockcast::types::v1::TimeRange {
                    start: ts(0),
                    end: None,
                }),
            },
        )),
        label: horizon.map(|h| pb::LabelSpec { horizon_bars: h }),
        max_rows_per_chunk: chunk,
    }
}

/// Every row of a span of `symbols`, in stream order.
pub async fn span_rows(
    client: &mut FeatureStoreServiceClient<Channel>,
    view: &str,
    version: i32,
    symbols: &[&str],
) -> Vec<pb::HistoricalFeatureRow> {
    historical(client, span_request(view, version, symbols, 0, None))
        .await
        .into_iter()
        .flat_map(|c| c.rows)
        .collect()
}

/// Whether two vectors are identical bit for bit (NaN included).
pub fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Asserts that the span rows of each series are exactly `view.compute` over its bars: one
/// row per bar, in symbol then time order.
pub fn assert_rows_exact(view: &View, rows: &[pb::HistoricalFeatureRow], all: &[&[Bar]]) {
    let mut sorted: Vec<&[Bar]> = all.to_vec();
    sorted.sort_by(|a, b| a[0].symbol.cmp(&b[0].symbol));
    let expected: Vec<(String, i64, Vec<f64>)> = sorted
        .iter()
        .flat_map(|s| {
            s.iter()
                .zip(view.compute(s))
                .map(|(b, v)| (b.symbol.clone(), view.event_time(b.ts), v))
        })
        .collect();
    assert_eq!(rows.len(), expected.len(), "row count of {}", view.id);
    for (row, (symbol, at, values)) in rows.iter().zip(&expected) {
        let event_time = row.event_time.expect("span rows have event times").seconds;
        assert_eq!((&row.symbol, event_time), (symbol, *at), "row key");
        assert!(
            same_bits(&row.values, values),
            "{symbol} at {at}: {:?} != {values:?}",
            row.values
        );
    }
}
