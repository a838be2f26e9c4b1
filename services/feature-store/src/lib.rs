//! The feature store: streaming indicators, the online store and the point-in-time offline
//! store.
//!
//! Consumes market-bar events ([`stream`]), computes the declared feature views
//! ([`view`]), keeps the latest vector per symbol in the online store and every vector in
//! the offline store ([`store`]), recomputes views over history on request
//! ([`materialize`]), answers point-in-time queries page by page ([`history`]), and serves
//! `stockcast.features.v1.FeatureStoreService` ([`grpc`]). Errors are [`error::Error`],
//! metric names are in [`metrics`].

pub mod error;
pub mod grpc;
pub mod history;
pub mod materialize;
pub mod metrics;
pub mod settings;
pub mod store;
pub mod stream;
pub mod view;

use std::process::ExitCode;
use std::sync::Arc;

use stockcast_bus::EventBus;
use stockcast_proto::stockcast::features::v1::feature_store_service_server::FeatureStoreServiceServer;
pub use stockcast_runtime::StartError;
use stockcast_runtime::cli::ServiceArgs;
use stockcast_runtime::clock::SharedClock;
use stockcast_runtime::start::wait_for;
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
    ("offline.schema", SCHEMA),
];

/// The PostgreSQL schema the service owns by default.
pub const SCHEMA: &str = "feature_store";

/// The backends the service runs on.
#[derive(Debug, Clone)]
pub struct Deps {
    /// Latest vectors.
    pub online: Arc<dyn OnlineStore>,
    /// Bars, rows, state and jobs.
    pub offline: Arc<dyn OfflineStore>,
    /// Event bus.
    pub bus: Arc<dyn EventBus>,
    /// Wall-clock time: staleness, validation of bar and request times, job times.
    pub clock: SharedClock,
}

impl Deps {
    /// Opens the stores and the bus named by `settings`, waiting while they do not answer
    /// yet (servers start in any order) until the start-up attempts run out or `shutdown`
    /// fires.
    pub async fn from_settings(
        settings: &Settings,
        shutdown: &Shutdown,
    ) -> Result<Self, StartError> {
        let unavailable = |e: &StoreError| matches!(e, StoreError::Unavailable { .. });
        let online: Arc<dyn OnlineStore> = match settings.online.kind {
            OnlineKind::Memory => Arc::new(MemoryOnline::new()),
            OnlineKind::Redis => {
                let redis = &settings.online.redis;
                Arc::new(
                    wait_for("online-store", shutdown, unavailable, || {
                        RedisOnline::connect(redis)
                    })
                    .await?,
                )
            }
        };
        tracing::info!(online = ?settings.online.kind, "online store");
        let offline = store::sql::open(&settings.offline, shutdown).await?;
        let bus = settings
            .bus
            .connect()
            .map_err(|e| StartError::dependency("event-bus", e))?;
        Ok(Self {
            online,
            offline,
            bus,
            clock: stockcast_runtime::clock::system(),
        })
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
            .await
            .map_err(|e| StartError::dependency("offline-store", e))?;
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
        &shutdown,
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
            Arc::clone(&deps.clock),
        )
        .map_err(StartError::config)?;
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
        Arc::clone(&deps.clock),
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
        clock: Arc::clone(&deps.clock),
    };
    let result = GrpcServer::new(SERVICE, &settings.server)
        .add_service(FeatureStoreServiceServer::new(api))
        .ready("online-store", deps.online.clone(), |s| async move {
            s.ping().await
        })
        .ready("offline-store", deps.offline.clone(), |s| async move {
            s.ping().await
        })
        .ready(
            "event-bus",
            deps.bus.clone(),
            |b| async move { b.ping().await },
        )
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
