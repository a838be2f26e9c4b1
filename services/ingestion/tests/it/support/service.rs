//! The ingestion service in-process on real PostgreSQL and Kafka: each test gets its own
//! schema and topics, and a connected gRPC client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stockcast_bus::{Consumer, EventBus, KafkaBus, KafkaSettings, dead_letter_topic};
use stockcast_ingestion::store::{BarStore, PostgresStore};
use stockcast_ingestion::{Deps, Settings, StartError};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use stockcast_runtime::Shutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How long the service may take to answer its first call (topic creation, migrations).
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// A running in-process ingestion service.
pub struct Service {
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// A connected client.
    pub client: IngestionServiceClient<Channel>,
    /// The store it writes (for assertions).
    pub store: PostgresStore,
    /// The bus it publishes on.
    pub bus: Arc<KafkaBus>,
    /// Bars topic.
    pub topic: String,
    /// Its dead-letter topic.
    pub dlq: String,
    /// The settings it was started with.
    pub settings: Settings,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), StartError>>,
}

/// A PostgreSQL store in a fresh schema, migrated.
pub async fn fresh_store(case: &str) -> PostgresStore {
    let url = stockcast_testkit::POSTGRES.require();
    let schema = stockcast_testkit::unique(case);
    store_at(&url, &schema).await
}

/// A migrated store in `schema` of the database at `url`.
pub async fn store_at(url: &str, schema: &str) -> PostgresStore {
    let store = PostgresStore::from(
        stockcast_sql::SchemaPool::connect_lazy(url, schema, 4, Duration::from_secs(10))
            .expect("pool"),
    );
    store.migrate().await.expect("migrate");
    store
}

/// A Kafka bus on the test broker.
pub fn kafka() -> Arc<KafkaBus> {
    let brokers = stockcast_testkit::KAFKA.require();
    Arc::new(
        KafkaBus::new(KafkaSettings {
            brokers,
            ..KafkaSettings::default()
        })
        .expect("kafka bus"),
    )
}

/// Settings with a unique bars topic of one partition (so that a marker record published
/// after the service's events is read after them), adjusted by `configure`.
pub fn settings(case: &str, configure: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = Settings::default();
    settings.topics.bars = stockcast_bus::conformance::names(case).0;
    settings.topics.partitions = 1;
    settings.bus.kind = stockcast_bus::BusKind::Kafka;
    configure(&mut settings);
    settings
}

impl Service {
    /// Starts the service on a fresh schema with `settings`.
    pub async fn start(settings: Settings) -> Self {
        let store = fresh_store("ingest_svc").await;
        Self::start_on(settings, store).await
    }

    /// Starts the service on `store` (which may be unreachable) with `settings`.
    pub async fn start_on(settings: Settings, store: PostgresStore) -> Self {
        let bus = kafka();
        let (sources, budget) = stockcast_ingestion::sources(&settings);
        let deps = Deps {
            store: Arc::new(store.clone()) as Arc<dyn BarStore>,
            bus: bus.clone() as Arc<dyn EventBus>,
            sources,
            budget,
            clock: stockcast_runtime::clock::system(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = Shutdown::new();
        let task = tokio::spawn(Box::pin(stockcast_ingestion::serve(
            listener,
            settings.clone(),
            deps,
            shutdown.clone(),
        )));
        let client = connect(addr, &task).await;
        let topic = settings.topics.bars.clone();
        Self {
            addr,
            client,
            store,
            bus,
            dlq: dead_letter_topic(&topic),
            topic,
            settings,
            shutdown,
            task,
        }
    }

    /// A consumer of the bars topic in a new group (reads from the earliest record).
    pub async fn bars_consumer(&self) -> Box<dyn Consumer> {
        let (_, group) = stockcast_bus::conformance::names("bars");
        self.bus
            .subscribe(&group, &[&self.topic])
            .await
            .expect("subscribe bars")
    }

    /// A consumer of the dead-letter topic in a new group.
    pub async fn dlq_consumer(&self) -> Box<dyn Consumer> {
        let (_, group) = stockcast_bus::conformance::names("dlq");
        self.bus
            .subscribe(&group, &[&self.dlq])
            .await
            .expect("subscribe dlq")
    }

    /// Stops the service (backfills pause after their chunk) and waits for it.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let result = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("service did not stop within 30 s")
            .expect("service task panicked");
        result.expect("service failed");
        // Best effort: the schema only holds test data.
        let _ = self.store.db().drop_schema().await;
    }
}

/// Connects to `addr`, retrying a cheap call until the service answers or the deadline passes.
async fn connect(
    addr: SocketAddr,
    task: &JoinHandle<Result<(), StartError>>,
) -> IngestionServiceClient<Channel> {
    let deadline = Instant::now() + START_DEADLINE;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30));
    let mut last_error = String::new();
    while Instant::now() < deadline {
        assert!(
            !task.is_finished(),
            "the service stopped before answering: see its result"
        );
        if let Ok(channel) = endpoint.connect().await {
            let mut client = IngestionServiceClient::new(channel);
            match client.get_status(pb::GetStatusRequest {}).await {
                Ok(_) => return client,
                Err(status) => last_error = status.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("ingestion on {addr} did not answer within {START_DEADLINE:?}: {last_error}");
}

/// Polls `check` every 20 ms until it returns `Some`, panicking with `what` at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy in front of a server that can be cut: open connections are dropped and new
/// ones refused, as when the server's host goes away.
pub struct Proxy {
    /// The proxy's address.
    pub addr: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Proxies connections to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let spawned = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                spawned.lock().unwrap().push(task);
            }
        });
        Self {
            addr,
            tasks,
            accept,
        }
    }

    /// Closes the listener and every proxied connection.
    pub fn cut(&self) {
        self.accept.abort();
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// The `host:port` of a `postgres://` URL, resolved.
pub fn postgres_addr(url: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    rest[..end]
        .to_socket_addrs()
        .expect("resolve postgres")
        .next()
        .expect("postgres address")
}

/// `url` with its `host:port` replaced by `addr`.
pub fn with_addr(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("url scheme");
    let (user, host_and_path) = match rest.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), rest),
    };
    let end = host_and_path
        .find(['/', '?'])
        .unwrap_or(host_and_path.len());
    format!("{scheme}://{user}{addr}{}", &host_and_path[end..])
}

/// Key of the marker records [`read_to_marker`] publishes.
pub const MARKER_KEY: &[u8] = b"__marker__";

/// Every record `consumer` reads from `topic` before a marker published now. The topic must
/// have one partition: then the marker comes after every record already acknowledged, and
/// "nothing else arrived" is certain rather than a timeout. Older markers are skipped.
pub async fn read_to_marker(
    bus: &dyn EventBus,
    consumer: &mut dyn Consumer,
    topic: &str,
) -> Vec<stockcast_bus::Message> {
    let marker = uuid::Uuid::new_v4().to_string();
    bus.publish(
        topic,
        stockcast_bus::Record::new(MARKER_KEY, marker.clone().into_bytes()),
    )
    .await
    .expect("publish marker");
    let mut out = Vec::new();
    loop {
        let message = stockcast_bus::conformance::recv(consumer).await;
        if message.key.as_ref() == MARKER_KEY {
            if message.payload.as_ref() == marker.as_bytes() {
                return out;
            }
            continue;
        }
        out.push(message);
    }
}
