//! The model registry proxy: the one door to the MLflow Model Registry (or the embedded
//! local registry).
//!
//! - **Owns** the artifact cache (a bounded directory) and the append-only audit log of
//!   alias changes (its PostgreSQL schema, or SQLite embedded).
//! - **Consumes** the MLflow REST API 2.0 and its proxied artifact API, or a local directory.
//! - **Produces** `stockcast.events.v1.ModelEvent` on `stockcast.registry.model-events.v1`
//!   (key = model name) for every alias change, made here or detected by polling.
//! - **Serves** `stockcast.registry.v1.ModelRegistryService`.
//!
//! See `docs/model-registry.md` for URIs, contract tags, promotion and failure behaviour.

pub mod aliases;
pub mod audit;
pub mod cache;
pub mod deadline;
pub mod error;
mod grpc;
mod metrics;
pub mod onnx;
pub mod registry;
pub mod resolver;
pub mod settings;
pub mod uri;
pub mod webhook;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use stockcast_bus::EventBus;
use stockcast_proto::stockcast::registry::v1::model_registry_service_server::ModelRegistryServiceServer;
pub use stockcast_runtime::StartError;
use stockcast_runtime::cli::ServiceArgs;
use stockcast_runtime::clock::SharedClock;
use stockcast_runtime::{GrpcServer, Shutdown};
use tokio::net::TcpListener;

use crate::aliases::AliasManager;
use crate::audit::AuditStore;
use crate::cache::ArtifactCache;
pub use crate::grpc::ACTOR_HEADER;
use crate::registry::{LocalRegistry, MlflowRegistry, Registry};
use crate::resolver::Resolver;
use crate::settings::RegistryKind;
pub use crate::settings::Settings;

/// Service name: config prefix `STOCKCAST_MODEL_REGISTRY_PROXY__`, metrics label, health.
pub const SERVICE: &str = "model-registry-proxy";

/// Per-service defaults below every config layer.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("server.grpc_addr", "127.0.0.1:50054"),
    ("server.metrics_addr", "127.0.0.1:9104"),
    ("storage.schema", SCHEMA),
    ("storage.max_connections", "4"),
];

/// The PostgreSQL schema the service owns by default.
pub const SCHEMA: &str = "registry";

/// What the service runs on.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The registry behind the proxy.
    pub registry: Arc<dyn Registry>,
    /// The audit log.
    pub audit: Arc<dyn AuditStore>,
    /// The event bus.
    pub bus: Arc<dyn EventBus>,
    /// The time of audit entries, watches, cached artifacts, webhook checks and local
    /// registry files.
    pub clock: SharedClock,
}

impl Deps {
    /// Builds the dependencies named by `settings`: the registry, the audit store
    /// (migrated; a database that is not reachable yet is waited for until `shutdown`), the
    /// bus, on the system's clock.
    pub async fn from_settings(
        settings: &Settings,
        shutdown: &Shutdown,
    ) -> Result<Self, StartError> {
        let clock = stockcast_runtime::clock::system();
        let registry: Arc<dyn Registry> = match settings.registry.kind {
            RegistryKind::Local => Arc::new(
                LocalRegistry::open(&settings.registry.local_dir, clock.clone())
                    .await
                    .map_err(|e| StartError::dependency("registry", e))?,
            ),
            RegistryKind::Mlflow => Arc::new(
                MlflowRegistry::new(&settings.registry.mlflow)
                    .map_err(|e| StartError::dependency("registry", e))?,
            ),
        };
        settings.registry.log_choice();
        let audit = audit::open(&settings.storage, shutdown).await?;
        let bus = settings
            .bus
            .connect()
            .map_err(|e| StartError::dependency("event-bus", e))?;
        Ok(Self {
            registry,
            audit,
            bus,
            clock,
        })
    }
}

/// Serves the proxy on `listener` until `shutdown` fires, polling the registry for alias
/// changes meanwhile; then drains calls and returns.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    deps: Deps,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let topic = settings.topics.model_events.clone();
    let partitions = settings.topics.partitions;
    stockcast_bus::ensure_topics(&*deps.bus, &[&topic], partitions, &shutdown).await?;
    let cache = ArtifactCache::open(&settings.cache.dir, settings.cache.max_bytes)
        .await
        .map_err(|e| StartError::dependency("artifact-cache", e))?;
    let resolver = Arc::new(Resolver::new(
        deps.registry.clone(),
        cache,
        Duration::from_millis(settings.cache.resolution_ttl_ms),
        deps.clock.clone(),
    ));
    let aliases = Arc::new(AliasManager::new(
        resolver.clone(),
        deps.audit.clone(),
        deps.bus.clone(),
        &topic,
        deps.clock.clone(),
    ));
    let poller_shutdown = Shutdown::new();
    let poller = (settings.poll.interval_ms > 0).then(|| {
        tokio::spawn(poll(
            aliases.clone(),
            Duration::from_millis(settings.poll.interval_ms),
            poller_shutdown.clone(),
        ))
    });
    let webhook = match settings.webhook.listen_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                StartError::Config(format!("cannot bind webhook.listen_addr {addr}: {e}"))
            })?;
            tracing::info!(addr = %addr, path = webhook::PATH, "receiving mlflow webhooks");
            Some(tokio::spawn(webhook::serve(
                listener,
                aliases.clone(),
                settings.webhook.secret.clone(),
                Duration::from_secs(settings.webhook.max_age_s),
                deps.clock.clone(),
                poller_shutdown.clone(),
            )))
        }
        None => None,
    };
    let api = grpc::Api {
        resolver,
        aliases,
        max_message_bytes: settings.server.max_message_bytes,
        shutdown: shutdown.clone(),
        request_timeout: settings.server.request_timeout(),
    };
    let result = GrpcServer::new(SERVICE, &settings.server)
        .add_service(ModelRegistryServiceServer::new(api))
        // The registry is not a readiness check: when it is down the proxy still serves
        // what it has cached, which is the point of it.
        .ready(
            "database",
            deps.audit.clone(),
            |a| async move { a.ping().await },
        )
        .ready(
            "event-bus",
            deps.bus.clone(),
            |b| async move { b.ping().await },
        )
        .serve(listener, shutdown)
        .await;
    poller_shutdown.trigger();
    if let Some(poller) = poller {
        let _ = poller.await;
    }
    if let Some(webhook) = webhook {
        let _ = webhook.await;
    }
    result.map_err(StartError::from)
}

/// Polls the registry every `interval` until `shutdown`.
async fn poll(aliases: Arc<AliasManager>, interval: Duration, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = ticks.tick() => {}
        }
        match aliases.poll_once().await {
            Ok(0) => {}
            Ok(changes) => tracing::info!(changes, "alias changes detected in the registry"),
            Err(error) => {
                crate::metrics::poll_failed();
                tracing::warn!(%error, "polling the registry failed");
            }
        }
    }
}

/// Runs the service as a process with `args`.
pub async fn run(args: ServiceArgs) -> ExitCode {
    stockcast_runtime::cli::run::<Settings, _, _>(
        SERVICE,
        DEFAULTS,
        &args,
        |settings, listener, shutdown| async move {
            let deps = Deps::from_settings(&settings, &shutdown).await?;
            serve(listener, settings, deps, shutdown).await
        },
    )
    .await
}
