//! The ingestion service in-process on its embedded backends (SQLite, in-process bus): no
//! server needed, so the hostile-input and property suites run everywhere in seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stockcast_bus::{EventBus, MemoryBus};
use stockcast_ingestion::store::{BarStore, SqliteStore};
use stockcast_ingestion::{Deps, Settings, StartError};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use stockcast_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Deadline of every call the suites make: a call running past it is a hang.
pub const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// A running embedded ingestion service.
pub struct Embedded {
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// A connected client (every call has [`CALL_DEADLINE`]).
    pub client: IngestionServiceClient<Channel>,
    /// The store it writes (for reading state back).
    pub store: Arc<dyn BarStore>,
    /// The settings it was started with.
    pub settings: Settings,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), StartError>>,
}

impl Embedded {
    /// Starts the service on an in-memory SQLite database, adjusted by `configure`.
    pub async fn start(configure: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings::default();
        configure(&mut settings);
        let url = settings.storage.url.expose().to_owned();
        let store: Arc<dyn BarStore> = Arc::new(SqliteStore::open(&url).await.expect("sqlite"));
        Self::start_on(settings, store).await
    }

    /// Starts the service on `store` with `settings`.
    pub async fn start_on(settings: Settings, store: Arc<dyn BarStore>) -> Self {
        let (sources, budget) = stockcast_ingestion::sources(&settings);
        let deps = Deps {
            store: store.clone(),
            bus: Arc::new(MemoryBus::new()) as Arc<dyn EventBus>,
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
        Self {
            addr,
            client,
            store,
            settings,
            shutdown,
            task,
        }
    }

    /// Stops the service and waits for it.
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("service did not stop within 30 s")
            .expect("service task panicked")
            .expect("service failed");
    }
}

async fn connect(
    addr: SocketAddr,
    task: &JoinHandle<Result<(), StartError>>,
) -> IngestionServiceClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .timeout(CALL_DEADLINE);
    loop {
        assert!(!task.is_finished(), "the service stopped before answering");
        if let Ok(channel) = endpoint.connect().await {
            let mut client = IngestionServiceClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            if client.get_status(pb::GetStatusRequest {}).await.is_ok() {
                return client;
            }
        }
        assert!(
            Instant::now() < deadline,
            "ingestion on {addr} did not answer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
