//! The feature store: streaming indicators, the online store and the point-in-time offline
//! store.
//!
//! Consumes market-bar events ([`stream`]), computes the declared feature views
//! ([`view`]), keeps the latest vector per symbol in the online store and every vector in
//! the offline store ([`store`]), recomputes views over history on request
//! ([`materialize`]), and serves `stockcast.features.v1.FeatureStoreService` ([`grpc`]).

pub mod grpc;
pub mod materialize;
pub mod settings;
pub mod store;
pub mod stream;
pub mod view;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use stockcast_bus::EventBus;
use stockcast_proto::stockcast::features::v1::feature_store_service_server::FeatureStoreServiceServer;
use stockcast_runtime::cli::ServiceArgs;
use stockcast_runtime::{GrpcServer, Shutdown};
use tokio::net::TcpListener;

pub use crate::settings::{OnlineKind, Settings};
use crate::store::memory::MemoryOnline;
use crate::store::redis::RedisOnline;
use crate::store::{OfflineStore, OnlineStore, StoreError};
use crate::view::Catalog;

/// Service name: config prefix `STOCKCAST_FEATURE_STORE__`, metrics label, health.
pub const SERVICE: &str = "feature-store";

/// Per-service defaults below every config layer.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("server.grpc_addr", "127.0.0.1:50052"),
    ("server.metrics_addr", "127.0.0.1:9102"),
];

/// The backends the service runs on.
#[derive(Debug, Clone)]
pub struct Deps {
    /// Latest vectors.
    pub online: Arc<dyn OnlineStore>,
    /// Bars, rows, state and jobs.
    pub offline: Arc<dyn OfflineStore>,
    /// Event bus.
    pub bus: Arc<dyn EventBus>,
}

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The bus could not be set up.
    #[error("event bus: {0}")]
    Bus(#[from] stockcast_bus::BusError),
    /// A setting or a view definition is unusable.
    #[error("{0}")]
    Config(String),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] stockcast_runtime::grpc::ServeError),
}

impl Deps {
    /// Opens the stores and the bus named by `settings`, retrying while they do not answer
    /// yet (servers start in any order).
    pub async fn from_settings(settings: &Settings) -> Result<Self, StartError> {
        let online: Arc<dyn OnlineStore> = match settings.online.kind {
            OnlineKind::Memory => Arc::new(MemoryOnline::new()),
            OnlineKind::Redis => {
                let redis = settings.online.redis.clone();
                Arc::new(retry("redis", || RedisOnline::connect(&redis)).await?)
            }
        };
        let offline_settings = settings.offline.clone();
        let offline = retry("offline store", || store::offline::open(&offline_settings)).await?;
        let bus = settings.bus.connect()?;
        Ok(Self {
            online,
            offline,
            bus,
        })
    }
}

async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut wait = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match f().await {
            Err(StoreError::Unavailable { reason, .. }) if attempt < 10 => {
                tracing::warn!(attempt, reason, "{what} not reachable yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Serves the feature store on `listener` until `shutdown` fires: consumes market bars,
/// runs materializations, answers gRPC; then drains calls, lets the stream processor and
/// jobs stop after their current batch or chunk, and returns.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    deps: Deps,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let mut catalog =
        Catalog::new(&settings.views).map_err(|e| StartError::Config(e.to_string()))?;
    // A version's definition may never change once it was served.
    for view in catalog.views_mut() {
        let recorded = deps
            .offline
            .register_view(&view.id, &view.definition)
            .await?;
        if recorded.definition != view.definition {
            return Err(StartError::Config(format!(
                "feature view {} was served with another definition; declare the change as a new version (stored: {}; configured: {})",
                view.id, recorded.definition, view.definition
            )));
        }
        view.created_at = Some(recorded.registered_at);
    }
    let catalog = Arc::new(catalog);
    let topic = settings.topics.bars.clone();
    stockcast_bus::ensure_topics(
        &*deps.bus,
        &[&topic, &stockcast_bus::dead_letter_topic(&topic)],
        settings.topics.partitions,
    )
    .await?;

    let workers = Shutdown::new();
    let processor = if settings.stream.enabled {
        let processor = stream::Processor::new(
            Arc::clone(&catalog),
            Arc::clone(&deps.online),
            Arc::clone(&deps.offline),
            Arc::clone(&deps.bus),
            settings.stream.clone(),
            &settings.validation,
        )
        .map_err(StartError::Config)?;
        let stop = workers.clone();
        Some(tokio::spawn(async move {
            let result = processor
                .run(&topic, async move { stop.wait().await })
                .await;
            if let Err(error) = &result {
                tracing::error!(%error, "stream processor stopped");
            }
            result
        }))
    } else {
        None
    };
    let materializer = materialize::Materializer::new(
        Arc::clone(&catalog),
        Arc::clone(&deps.offline),
        Arc::clone(&deps.online),
        settings.materialize.clone(),
        workers.clone(),
    );
    match materializer.resume_all().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "resumed interrupted materializations"),
        Err(error) => tracing::error!(%error, "cannot resume materializations"),
    }
    let api = grpc::Api {
        catalog,
        online: Arc::clone(&deps.online),
        offline: Arc::clone(&deps.offline),
        materializer: materializer.clone(),
    };
    let limit = settings.server.max_message_bytes;
    let (online, offline, bus) = (deps.online.clone(), deps.offline.clone(), deps.bus.clone());
    let result = GrpcServer::new(SERVICE, &settings.server)
        .add_service(
            FeatureStoreServiceServer::new(api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .readiness_check("online-store", move || {
            let online = online.clone();
            async move { online.ping().await.map_err(|e| e.to_string()) }
        })
        .readiness_check("offline-store", move || {
            let offline = offline.clone();
            async move { offline.ping().await.map_err(|e| e.to_string()) }
        })
        .readiness_check("event-bus", move || {
            let bus = bus.clone();
            async move { bus.ping().await.map_err(|e| e.to_string()) }
        })
        .serve(listener, shutdown)
        .await;
    workers.trigger();
    if let Some(task) = processor {
        let _ = task.await;
    }
    materializer.join().await;
    result.map_err(StartError::from)
}

/// Runs the service as a process with `args`.
pub async fn run(args: ServiceArgs) -> ExitCode {
    stockcast_runtime::cli::run::<Settings, _, _, _>(
        SERVICE,
        DEFAULTS,
        &args,
        |settings, listener, shutdown| async move {
            let deps = Deps::from_settings(&settings).await?;
            serve(listener, settings, deps, shutdown).await
        },
    )
    .await
}
