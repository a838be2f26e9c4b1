//! The proxy in-process over a registry: the local directory (SQLite audit, in-process bus)
//! or real MLflow (PostgreSQL audit in its own schema, Kafka topic of its own), with a
//! connected gRPC client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use stockcast_bus::{BusKind, Consumer, EventBus, KafkaBus, KafkaSettings, MemoryBus};
use stockcast_model::contract::Contract;
use stockcast_model::metadata::encode_model;
use stockcast_model_registry_proxy::audit::{AuditStore, PostgresAudit, SqliteAudit};
use stockcast_model_registry_proxy::onnx::hex;
use stockcast_model_registry_proxy::registry::{
    ArtifactFormat, LocalRegistry, MlflowRegistry, MlflowSettings, NewVersion, Registry,
    VersionInfo,
};
use stockcast_model_registry_proxy::{Deps, Settings, StartError};
use stockcast_proto::stockcast::events::v1::ModelEvent;
use stockcast_proto::stockcast::registry::v1 as pb;
use stockcast_proto::stockcast::registry::v1::model_registry_service_client::ModelRegistryServiceClient;
use stockcast_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Which registry the proxy runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The local directory registry.
    Local,
    /// The local directory registry with the audit log in PostgreSQL (in-process bus).
    LocalPostgres,
    /// The MLflow test server (`STOCKCAST_TEST_MLFLOW_URL`).
    Mlflow,
}

/// MLflow client settings for `url`, with short deadlines.
pub fn mlflow_settings(url: &str) -> MlflowSettings {
    MlflowSettings {
        tracking_uri: url.to_owned(),
        request_timeout_ms: 15_000,
        retries: 1,
        retry_backoff_ms: 50,
        breaker_failures: 3,
        breaker_cooldown_ms: 500,
        ..MlflowSettings::default()
    }
}

/// A running in-process proxy.
pub struct Harness {
    /// A connected client.
    pub client: ModelRegistryServiceClient<Channel>,
    /// The registry behind it (tests change it directly, as users of MLflow do).
    pub registry: Arc<dyn Registry>,
    /// The bus it publishes on.
    pub bus: Arc<dyn EventBus>,
    /// Its model-events topic.
    pub topic: String,
    /// Its audit store.
    pub audit: Arc<dyn AuditStore>,
    pub kind: Kind,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), StartError>>,
    _dirs: tempfile::TempDir,
}

impl Harness {
    /// A proxy on a fresh registry of `kind`, polling every `poll` (`ZERO`: no polling).
    pub async fn start(kind: Kind, poll: Duration) -> Self {
        let dirs = tempfile::tempdir().expect("tempdir");
        let registry: Arc<dyn Registry> = match kind {
            Kind::Local | Kind::LocalPostgres => Arc::new(
                LocalRegistry::open(
                    dirs.path().join("models"),
                    stockcast_runtime::clock::system(),
                )
                .await
                .expect("local registry"),
            ),
            Kind::Mlflow => {
                let url = stockcast_testkit::MLFLOW.require();
                Arc::new(MlflowRegistry::new(&mlflow_settings(&url)).expect("mlflow client"))
            }
        };
        Self::start_on(kind, registry, poll, dirs).await
    }

    /// A proxy on a fresh local registry, publishing on `bus` (in-process when `None`),
    /// without polling, with settings adjusted by `configure`.
    pub async fn start_local(
        bus: Option<Arc<dyn EventBus>>,
        configure: &dyn Fn(&mut Settings),
    ) -> Self {
        let dirs = tempfile::tempdir().expect("tempdir");
        let registry: Arc<dyn Registry> = Arc::new(
            LocalRegistry::open(
                dirs.path().join("models"),
                stockcast_runtime::clock::system(),
            )
            .await
            .expect("local registry"),
        );
        Self::start_with_bus(Kind::Local, registry, bus, Duration::ZERO, dirs, configure).await
    }

    /// A proxy on `registry`, with its cache under `dirs`.
    pub async fn start_on(
        kind: Kind,
        registry: Arc<dyn Registry>,
        poll: Duration,
        dirs: tempfile::TempDir,
    ) -> Self {
        Self::start_with_bus(kind, registry, None, poll, dirs, &|_| {}).await
    }

    /// A proxy on `registry` publishing on `bus` (the kind's default bus when `None`).
    pub async fn start_with_bus(
        kind: Kind,
        registry: Arc<dyn Registry>,
        bus: Option<Arc<dyn EventBus>>,
        poll: Duration,
        dirs: tempfile::TempDir,
        configure: &dyn Fn(&mut Settings),
    ) -> Self {
        let mut settings = Settings::default();
        settings.cache.dir = dirs.path().join("cache");
        settings.cache.resolution_ttl_ms = 0;
        settings.poll.interval_ms = poll.as_millis() as u64;
        settings.topics.model_events = stockcast_bus::conformance::names("model_events").0;
        settings.topics.partitions = 1;
        configure(&mut settings);
        let (audit, default_bus): (Arc<dyn AuditStore>, Arc<dyn EventBus>) = match kind {
            Kind::Local => (
                Arc::new(SqliteAudit::open("sqlite::memory:").await.expect("sqlite")),
                Arc::new(MemoryBus::new()),
            ),
            Kind::LocalPostgres => (postgres_audit().await, Arc::new(MemoryBus::new())),
            Kind::Mlflow => {
                let store = postgres_audit().await;
                settings.bus.kind = BusKind::Kafka;
                let brokers = stockcast_testkit::KAFKA.require();
                let bus = KafkaBus::new(KafkaSettings {
                    brokers,
                    ..KafkaSettings::default()
                })
                .expect("kafka");
                (store, Arc::new(bus))
            }
        };
        let bus = bus.unwrap_or(default_bus);
        let deps = Deps {
            registry: registry.clone(),
            audit: audit.clone(),
            bus: bus.clone(),
            clock: stockcast_runtime::clock::system(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = Shutdown::new();
        let topic = settings.topics.model_events.clone();
        let task = tokio::spawn(Box::pin(stockcast_model_registry_proxy::serve(
            listener,
            settings,
            deps,
            shutdown.clone(),
        )));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .timeout(Duration::from_secs(60))
            .connect_lazy();
        let client = ModelRegistryServiceClient::new(channel);
        let harness = Self {
            client,
            registry,
            bus,
            topic,
            audit,
            kind,
            shutdown,
            task,
            _dirs: dirs,
        };
        harness.wait_ready().await;
        harness
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                !self.task.is_finished(),
                "the proxy stopped before answering"
            );
            let mut client = self.client.clone();
            let answer = client
                .list_audit_log(pb::ListAuditLogRequest {
                    page_size: 1,
                    ..Default::default()
                })
                .await;
            if answer.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "proxy not ready: {answer:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A consumer of the model-events topic in a new group (from the earliest record).
    pub async fn events(&self) -> Box<dyn Consumer> {
        let (_, group) = stockcast_bus::conformance::names("model_events");
        self.bus
            .subscribe(&group, &[&self.topic])
            .await
            .expect("subscribe")
    }

    /// Stops the proxy and waits for it; returns its directories (the artifact cache is in
    /// `cache/`), for a proxy started after it.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("proxy did not stop within 30 s")
            .expect("proxy panicked")
            .expect("proxy failed");
        self._dirs
    }
}

/// The next model event of `model` on `consumer` (events of other models are skipped:
/// a shared MLflow holds other tests' models).
pub async fn next_event(consumer: &mut dyn Consumer, model: &str) -> ModelEvent {
    loop {
        let message = stockcast_bus::conformance::recv(consumer).await;
        let event: ModelEvent = message.decode().expect("a ModelEvent");
        if event.model_name == model {
            assert_eq!(
                message.key.as_ref(),
                model.as_bytes(),
                "events are keyed by model"
            );
            return event;
        }
    }
}

/// A contract for tests.
pub fn contract(view: &str) -> Contract {
    Contract {
        feature_view: view.to_owned(),
        feature_view_version: 3,
        feature_names: vec!["ret_1".into(), "rsi_14".into(), "vol_20".into()],
        target: "log_return".into(),
        horizon_bars: 5,
    }
}

/// An audit store in a schema of its own on the test PostgreSQL.
async fn postgres_audit() -> Arc<dyn AuditStore> {
    let url = stockcast_testkit::POSTGRES.require();
    let schema = stockcast_testkit::unique("registry");
    let store = PostgresAudit::from(
        stockcast_sql::SchemaPool::connect_lazy(&url, &schema, 4, Duration::from_secs(10))
            .expect("pool"),
    );
    store.migrate().await.expect("migrate");
    Arc::new(store)
}

/// A model to register.
#[derive(Debug, Clone)]
pub struct Spec {
    pub format: ArtifactFormat,
    /// Declared in ONNX `metadata_props`.
    pub onnx_contract: Option<Contract>,
    /// Declared in version tags.
    pub tag_contract: Option<Contract>,
    /// Bytes of padding in the model.
    pub padding: usize,
    /// Extra tags (e.g. `sha256`).
    pub tags: BTreeMap<String, String>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            format: ArtifactFormat::OnnxFile,
            onnx_contract: Some(contract("default")),
            tag_contract: None,
            padding: 1000,
            tags: BTreeMap::new(),
        }
    }
}

/// The files in the artifact cache under `dirs` (from `Harness::stop`), but its index.
pub fn cache_files(dirs: &tempfile::TempDir) -> Vec<String> {
    std::fs::read_dir(dirs.path().join("cache"))
        .expect("cache dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name != "index.json")
        .collect()
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Creates `name` (if needed) and registers a version of it; returns it with its ONNX bytes.
pub async fn register(registry: &dyn Registry, name: &str, spec: Spec) -> (VersionInfo, Vec<u8>) {
    match registry.create_model(name, "test model").await {
        Ok(_) | Err(stockcast_model_registry_proxy::registry::RegistryError::AlreadyExists(_)) => {}
        Err(error) => panic!("create model {name}: {error}"),
    }
    let props = spec
        .onnx_contract
        .as_ref()
        .map(Contract::to_props)
        .unwrap_or_default();
    let bytes = encode_model(&props, spec.padding);
    let mut tags = spec
        .tag_contract
        .as_ref()
        .map(Contract::to_props)
        .unwrap_or_default();
    tags.extend(spec.tags);
    let version = registry
        .create_version(
            name,
            NewVersion {
                format: spec.format,
                onnx: Bytes::from(bytes.clone()),
                tags,
                description: "registered by a test".to_owned(),
            },
        )
        .await
        .expect("create version");
    (version, bytes)
}

/// A model name unique to this test.
pub fn model_name(case: &str) -> String {
    stockcast_testkit::unique(case).replace('_', "-")
}

/// A request carrying `actor` as the caller's identity.
pub fn as_actor<T>(actor: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        stockcast_model_registry_proxy::ACTOR_HEADER,
        actor.parse().expect("ascii actor"),
    );
    request
}

/// Fetches `uri` whole: the header and the concatenated chunks (offsets checked).
pub async fn fetch(
    client: &mut ModelRegistryServiceClient<Channel>,
    uri: &str,
    offset: i64,
    chunk_size_bytes: i32,
) -> Result<(pb::FetchModelHeader, Vec<u8>, usize), tonic::Status> {
    use pb::fetch_model_response::Payload;
    let mut stream = client
        .fetch_model(pb::FetchModelRequest {
            uri: uri.to_owned(),
            offset,
            chunk_size_bytes,
        })
        .await?
        .into_inner();
    let first = stream.message().await?.expect("a header");
    let Some(Payload::Header(header)) = first.payload else {
        panic!("first message is not a header: {first:?}");
    };
    let mut bytes = Vec::new();
    let mut chunks = 0;
    while let Some(message) = stream.message().await? {
        let Some(Payload::Chunk(chunk)) = message.payload else {
            panic!("a second header");
        };
        assert_eq!(
            chunk.offset,
            offset + bytes.len() as i64,
            "chunks arrive in order"
        );
        bytes.extend_from_slice(&chunk.data);
        chunks += 1;
    }
    Ok((header, bytes, chunks))
}

/// The audit entries of `model`, newest first (first page of 100).
pub async fn audit_of(
    client: &mut ModelRegistryServiceClient<Channel>,
    model: &str,
) -> Vec<pb::AuditEntry> {
    client
        .list_audit_log(pb::ListAuditLogRequest {
            model_name: model.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

/// A request pointing `alias` of `name` at `version`, without compare-and-set.
pub fn set(name: &str, alias: &str, version: i64, reason: &str) -> pb::SetAliasRequest {
    pb::SetAliasRequest {
        name: name.to_owned(),
        alias: alias.to_owned(),
        version,
        reason: reason.to_owned(),
        expected_current_version: None,
    }
}

/// Resolves `uri` through the proxy.
pub async fn resolve(
    client: &mut ModelRegistryServiceClient<Channel>,
    uri: &str,
) -> Result<pb::ResolveModelResponse, tonic::Status> {
    client
        .resolve_model(pb::ResolveModelRequest {
            uri: uri.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}
