//! The ingestion service: where market data enters stockcast.
//!
//! - **Owns** the raw bars table, corrections and backfill jobs (its PostgreSQL schema, or
//!   SQLite embedded).
//! - **Consumes** Alpha Vantage, CSV files, the synthetic generator and bars pushed over gRPC.
//! - **Produces** `stockcast.events.v1.MarketBarEvent` on `stockcast.market.bars.v1` (key =
//!   symbol) and `DeadLetterRecord`s on `stockcast.market.bars-dlq.v1`.
//! - **Serves** `stockcast.ingestion.v1.IngestionService`.
//!
//! See `docs/ingestion.md` for the rules and guarantees.

mod backfill_request;
pub mod coverage;
pub mod error;
pub mod gaps;
mod grpc;
pub mod ingest;
pub mod jobs;
mod metrics;
pub mod push;
pub mod settings;
pub mod store;

use std::process::ExitCode;
use std::sync::Arc;

use stockcast_bus::{BusKind, EventBus};
use stockcast_market::Validator;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_server::IngestionServiceServer;
pub use stockcast_runtime::StartError;
use stockcast_runtime::cli::ServiceArgs;
use stockcast_runtime::clock::SharedClock;
use stockcast_runtime::{GrpcServer, Shutdown};
use tokio::net::TcpListener;

use crate::coverage::Catalog;
pub use crate::grpc::BudgetProbe;
use crate::ingest::Ingestor;
use crate::jobs::{Backfills, Sources};
pub use crate::settings::Settings;
use crate::store::BarStore;

/// Service name: config prefix `STOCKCAST_INGESTION__`, metrics label, health.
pub const SERVICE: &str = "ingestion";

/// Per-service defaults below every config layer.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("server.grpc_addr", "127.0.0.1:50051"),
    ("server.metrics_addr", "127.0.0.1:9101"),
    ("storage.schema", SCHEMA),
];

/// The PostgreSQL schema the service owns by default.
pub const SCHEMA: &str = "ingestion";

/// What the service runs on.
#[derive(Debug, Clone)]
pub struct Deps {
    /// Bars and jobs.
    pub store: Arc<dyn BarStore>,
    /// Event bus.
    pub bus: Arc<dyn EventBus>,
    /// Backfill sources.
    pub sources: Sources,
    /// Alpha Vantage budget probe for status.
    pub budget: BudgetProbe,
    /// The time: the system's in production, one a test moves by hand in tests.
    pub clock: SharedClock,
}

impl Deps {
    /// Builds the dependencies named by `settings`: the store (migrated; a database that is
    /// not reachable yet is waited for until `shutdown`), the bus, sources.
    pub async fn from_settings(
        settings: &Settings,
        shutdown: &Shutdown,
    ) -> Result<Self, StartError> {
        let store = store::open(&settings.storage, shutdown).await?;
        let bus = settings
            .bus
            .connect()
            .map_err(|e| StartError::dependency("event-bus", e))?;
        let (sources, budget) = sources(settings);
        Ok(Self {
            store,
            bus,
            sources,
            budget,
            clock: stockcast_runtime::clock::system(),
        })
    }
}

/// The backfill sources for `settings`, and the Alpha Vantage budget probe.
pub fn sources(settings: &Settings) -> (Sources, BudgetProbe) {
    use stockcast_market::sources::{alpha_vantage, csv, synthetic};
    let alpha = (!settings.alpha_vantage.api_key.is_empty())
        .then(|| alpha_vantage::AlphaVantage::new(settings.alpha_vantage.clone()))
        .and_then(|r| {
            r.map_err(|e| tracing::error!(error = %e, "alpha vantage disabled"))
                .ok()
        })
        .map(Arc::new);
    let probe_source = alpha.clone();
    let budget = BudgetProbe(Arc::new(move || {
        probe_source.as_ref().map(|a| {
            let (minute, day) = a.budget_status();
            (minute as i32, day as i32)
        })
    }));
    let sources = Sources {
        alpha_vantage: alpha.map(|a| a as Arc<dyn stockcast_market::sources::Source>),
        csv: Arc::new(csv::CsvSource::within(settings.ingest.csv_dir.clone())),
        synthetic: Arc::new(synthetic::SyntheticSource),
    };
    (sources, budget)
}

/// Serves ingestion on `listener` until `shutdown` fires; then drains calls, lets backfills
/// stop after their current chunk, and returns.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    deps: Deps,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let validator = Validator::new(&settings.validation).map_err(StartError::Config)?;
    if settings.bus.kind == BusKind::Kafka || settings.bus.kind == BusKind::Memory {
        let topic = &settings.topics.bars;
        let dead_letters = stockcast_bus::dead_letter_topic(topic);
        stockcast_bus::ensure_topics(
            &*deps.bus,
            &[topic, &dead_letters],
            settings.topics.partitions,
            &shutdown,
        )
        .await?;
    }
    let rules = backfill_request::Rules {
        validator: validator.clone(),
        csv_dir: settings.ingest.csv_dir.clone(),
    };
    let ingestor = Ingestor::new(
        deps.store.clone(),
        deps.bus.clone(),
        validator,
        &settings.topics.bars,
        deps.clock.clone(),
    );
    let jobs_shutdown = Shutdown::new();
    let backfills = Backfills::new(
        ingestor.clone(),
        deps.sources.clone(),
        settings.ingest.backfill_concurrency,
        settings.ingest.batch_size,
        jobs_shutdown.clone(),
    );
    match backfills.resume_all().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "resumed interrupted backfills"),
        Err(error) => tracing::error!(%error, "cannot resume backfills"),
    }
    let api = grpc::Api {
        ingestor,
        backfills: backfills.clone(),
        catalog: Catalog::new(deps.store.clone()),
        batch_size: settings.ingest.batch_size,
        started_at: deps.clock.now_seconds(),
        budget: deps.budget.clone(),
        rules,
    };
    let result = GrpcServer::new(SERVICE, &settings.server)
        .add_service(IngestionServiceServer::new(api))
        .ready(
            "database",
            deps.store.clone(),
            |s| async move { s.ping().await },
        )
        .ready(
            "event-bus",
            deps.bus.clone(),
            |b| async move { b.ping().await },
        )
        .serve(listener, shutdown)
        .await;
    jobs_shutdown.trigger();
    backfills.join().await;
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
