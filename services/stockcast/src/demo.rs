//! `stockcast demo`: the five services in one process on embedded backends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use stockcast_bus::{EventBus, MemoryBus};
use stockcast_runtime::{BasicSettings, ServerSettings, Shutdown, TelemetrySettings};
use tokio::net::TcpListener;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::Service;

/// `stockcast demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// gRPC listen address of the first service (ingestion), as `serve --grpc-addr` takes it;
    /// the other four services take the next ports on the same IP. Port 0 lets the system pick
    /// a free port for each. Default 127.0.0.1:50051.
    #[arg(
        long,
        value_name = "ADDR",
        env = "STOCKCAST_DEMO_GRPC_ADDR",
        conflicts_with = "base_port"
    )]
    grpc_addr: Option<SocketAddr>,
    /// Port of the first service on 127.0.0.1: `--base-port P` is `--grpc-addr 127.0.0.1:P`.
    #[arg(long, value_name = "PORT", env = "STOCKCAST_DEMO_BASE_PORT")]
    base_port: Option<u16>,
    /// Prometheus `/metrics` listen address of the whole process, as `serve --metrics-addr`
    /// takes it; port 0 picks a free port.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9100",
        env = "STOCKCAST_DEMO_METRICS_ADDR"
    )]
    metrics_addr: SocketAddr,
    /// Keeps the demo's files (the local model registry and its cache) in DIR and leaves them
    /// there at exit; without it they go to a temporary directory removed at exit, also on
    /// Ctrl-C and SIGTERM.
    #[arg(long, value_name = "DIR")]
    keep_data: Option<PathBuf>,
    /// Stops after this long (e.g. `30s`) instead of waiting for Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Starts empty instead of generating two years of daily bars for five symbols (and
    /// training the `daily-return@champion` model on them).
    #[arg(long)]
    no_data: bool,
}

/// Where the demo keeps its files; a temporary one is removed when dropped, which happens on
/// every way out of [`demo`] (normal end, Ctrl-C, SIGTERM, an error).
struct DataDir {
    path: PathBuf,
    remove: bool,
}

impl DataDir {
    fn new(keep: Option<PathBuf>) -> anyhow::Result<Self> {
        let (path, remove) = match keep {
            Some(dir) => (dir, false),
            None => (
                std::env::temp_dir().join(format!("stockcast-demo-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the demo directory {}", path.display()))?;
        Ok(Self { path, remove })
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove
            && let Err(error) = std::fs::remove_dir_all(&self.path)
        {
            tracing::warn!(dir = %self.path.display(), %error, "cannot remove the demo directory");
        }
    }
}

/// The address of the `index`-th service: the next ports after `first`, or port 0 for each.
fn service_addr(first: SocketAddr, index: usize) -> anyhow::Result<SocketAddr> {
    if first.port() == 0 {
        return Ok(first);
    }
    let port = u16::try_from(index)
        .ok()
        .and_then(|i| first.port().checked_add(i))
        .with_context(|| {
            format!(
                "--grpc-addr port {} leaves no room for five services",
                first.port()
            )
        })?;
    Ok(SocketAddr::new(first.ip(), port))
}

/// Port of the first service when neither `--grpc-addr` nor `--base-port` is given.
const DEFAULT_BASE_PORT: u16 = 50051;

/// Symbols the demo generates.
const DEMO_SYMBOLS: [&str; 5] = ["DEMO.A", "DEMO.B", "DEMO.C", "DEMO.D", "DEMO.E"];

/// Generates daily bars for the demo symbols through the ingestion service, as a client would.
async fn load_demo_data(ingestion: SocketAddr) -> anyhow::Result<()> {
    use stockcast_proto::stockcast::ingestion::v1 as pb;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{ingestion}"))?
        .connect()
        .await?;
    let mut client = pb::ingestion_service_client::IngestionServiceClient::new(channel);
    // History ends with the last completed bar: today's bar closes at midnight tonight.
    let today = chrono::Utc::now().date_naive();
    let start = today - chrono::Duration::days(730);
    tracing::info!(symbols = ?DEMO_SYMBOLS, %start, "generating demo bars through the ingestion service");
    crate::ingest::backfill(
        &mut client,
        DEMO_SYMBOLS.iter().map(|s| (*s).to_owned()).collect(),
        stockcast_market::Interval::D1,
        start,
        None,
        pb::BackfillSource::Synthetic,
        pb::start_backfill_request::Params::Synthetic(pb::SyntheticParams {
            seed: 7,
            ..Default::default()
        }),
    )
    .await
}

/// Waits until the feature store serves the demo symbols and their vectors stop moving (the
/// generated history is processed), and logs their status.
async fn show_features(feature_store: SocketAddr) -> anyhow::Result<()> {
    use stockcast_proto::stockcast::features::v1 as pb;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{feature_store}"))?
        .connect()
        .await?;
    let mut client = pb::feature_store_service_client::FeatureStoreServiceClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut previous = None;
    loop {
        let reply = client
            .get_online_features(pb::GetOnlineFeaturesRequest {
                feature_view: "default".to_owned(),
                feature_view_version: 0,
                symbols: DEMO_SYMBOLS.iter().map(|s| (*s).to_owned()).collect(),
            })
            .await?
            .into_inner();
        let found = reply
            .vectors
            .iter()
            .all(|v| v.status != pb::FeatureStatus::NotFound as i32);
        // settled: the history is processed when no vector moved since the last poll
        let times: Vec<_> = reply.vectors.iter().map(|v| v.event_time).collect();
        let settled = found && previous.as_ref() == Some(&times);
        previous = Some(times);
        if settled || tokio::time::Instant::now() >= deadline {
            for v in &reply.vectors {
                let status = pb::FeatureStatus::try_from(v.status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("?");
                let event_time = v.event_time.map(|t| t.seconds).unwrap_or_default();
                tracing::info!(
                    symbol = %v.symbol,
                    status,
                    event_time = %chrono::DateTime::from_timestamp(event_time, 0).unwrap_or_default(),
                    features = reply.feature_names.len(),
                    "online features"
                );
            }
            anyhow::ensure!(
                found,
                "the feature store has not served every demo symbol within 60 s"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Name of the model `stockcast demo` trains.
pub const DEMO_MODEL: &str = "daily-return";

/// `stockcast demo`'s champion: boosted trees on the demo's history, registered in the local
/// registry at `models_dir` and made `champion` through the proxy (audited, announced).
pub async fn demo_champion(
    feature_store: SocketAddr,
    proxy: SocketAddr,
    models_dir: PathBuf,
    symbols: Vec<String>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let args = crate::train::TrainArgs {
        feature_store,
        view: "default".to_owned(),
        view_version: 0,
        symbols,
        start: None,
        end: None,
        horizon: 1,
        model: crate::train::ModelArg::Gbt,
        folds: 5,
        embargo: None,
        lambda: 1.0,
        trees: 100,
        depth: 3,
        learning_rate: 0.05,
        min_leaf: 20,
        subsample: 0.8,
        seed: 7,
        output: None,
        name: Some(DEMO_MODEL.to_owned()),
        registry_dir: Some(models_dir.clone()),
        mlflow: None,
        alias: Some("champion".to_owned()),
        registry_proxy: Some(proxy),
    };
    let trained = crate::train::train_model(&args).await?;
    let registry = stockcast_model_registry_proxy::registry::LocalRegistry::open(
        models_dir,
        stockcast_runtime::clock::system(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let version = crate::train::register(&registry, DEMO_MODEL, &trained).await?;
    crate::train::set_alias(&registry, Some(proxy), DEMO_MODEL, "champion", version).await?;
    let m = trained.report.overall.model;
    tracing::info!(
        model = %format!("{DEMO_MODEL}@champion"),
        version,
        rows = trained.report.rows,
        rmse = m.rmse,
        directional_accuracy = m.directional_accuracy,
        ic = m.ic,
        ms = started.elapsed().as_millis() as u64,
        "trained and registered the demo model"
    );
    Ok(())
}

pub async fn run(args: DemoArgs) -> ExitCode {
    match demo(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("demo failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let telemetry = stockcast_runtime::telemetry::init("demo", &TelemetrySettings::default())?;
    let shutdown = Shutdown::on_signals();
    let data = DataDir::new(args.keep_data.clone())?;
    let metrics_addr = stockcast_runtime::metrics::spawn(args.metrics_addr, shutdown.clone())
        .await
        .with_context(|| format!("cannot bind the metrics address {}", args.metrics_addr))?;
    let first = args.grpc_addr.unwrap_or_else(|| {
        SocketAddr::from(([127, 0, 0, 1], args.base_port.unwrap_or(DEFAULT_BASE_PORT)))
    });

    // One in-process bus shared by every service, as Kafka would be.
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
    let mut servers = Vec::new();
    let mut endpoints = Vec::new();
    for (index, service) in Service::ALL.into_iter().enumerate() {
        let wanted = service_addr(first, index)?;
        let listener = TcpListener::bind(wanted).await.with_context(|| {
            format!(
                "cannot bind {} on {wanted} (use --grpc-addr or --base-port)",
                service.name()
            )
        })?;
        let addr = listener.local_addr()?;
        let settings = BasicSettings {
            server: ServerSettings {
                grpc_addr: addr,
                shutdown_grace_ms: 5_000,
                ..ServerSettings::default()
            },
            telemetry: TelemetrySettings::default(),
        };
        servers.push(tokio::spawn(serve(
            service,
            listener,
            settings,
            bus.clone(),
            data.path.clone(),
            shutdown.clone(),
        )));
        endpoints.push((service, addr));
    }

    for (service, addr) in &endpoints {
        wait_serving(*addr, Duration::from_secs(10))
            .await
            .with_context(|| format!("{} did not become ready", service.name()))?;
    }
    tracing::info!("stockcast demo ready");
    for (service, addr) in &endpoints {
        tracing::info!(service = service.name(), grpc = %addr, "serving");
    }
    tracing::info!(metrics = %metrics_addr, "prometheus metrics on /metrics; Ctrl-C stops");
    let kept = if data.remove {
        "removed at exit"
    } else {
        "kept at exit"
    };
    tracing::info!(dir = %data.path.display(), "demo files {kept}");

    if !args.no_data {
        let ingestion = endpoints[0].1;
        if let Err(error) = load_demo_data(ingestion).await {
            tracing::error!("demo data: {error:#}");
        } else if let Err(error) = show_features(endpoints[1].1).await {
            tracing::error!("demo features: {error:#}");
        } else if let Err(error) = demo_champion(
            endpoints[1].1,
            endpoints[3].1,
            data.path.join("models"),
            DEMO_SYMBOLS.iter().map(|s| (*s).to_owned()).collect(),
        )
        .await
        {
            tracing::error!("demo model: {error:#}");
        }
    }

    if let Some(duration) = args.duration {
        tokio::select! {
            () = tokio::time::sleep(duration) => shutdown.trigger(),
            () = shutdown.wait() => {}
        }
    }
    let mut failed = None;
    for (server, (service, _)) in servers.into_iter().zip(&endpoints) {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failed = Some(anyhow::anyhow!("{}: {error}", service.name())),
            Err(error) => failed = Some(anyhow::anyhow!("{}: {error}", service.name())),
        }
    }
    drop(data);
    tracing::info!("stockcast demo stopped");
    telemetry.shutdown(Duration::from_secs(2));
    failed.map_or(Ok(()), Err)
}

fn serve(
    service: Service,
    listener: TcpListener,
    settings: BasicSettings,
    bus: Arc<dyn EventBus>,
    dir: PathBuf,
    shutdown: Shutdown,
) -> BoxFuture<'static, anyhow::Result<()>> {
    let skeleton = |f: BoxFuture<'static, Result<(), stockcast_runtime::StartError>>| -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move { f.await.map_err(anyhow::Error::from) })
    };
    match service {
        Service::Ingestion => Box::pin(async move {
            let ingestion = stockcast_ingestion::Settings {
                server: settings.server,
                telemetry: settings.telemetry,
                ..Default::default()
            };
            let (sources, budget) = stockcast_ingestion::sources(&ingestion);
            let store = stockcast_ingestion::store::SqliteStore::open("sqlite::memory:")
                .await
                .map_err(|e| anyhow::anyhow!("ingestion storage: {e}"))?;
            let deps = stockcast_ingestion::Deps {
                store: Arc::new(store),
                bus: bus.clone(),
                sources,
                budget,
                clock: stockcast_runtime::clock::system(),
            };
            stockcast_ingestion::serve(listener, ingestion, deps, shutdown)
                .await
                .map_err(anyhow::Error::from)
        }),
        Service::FeatureStore => Box::pin(async move {
            // In-memory online store, SQLite offline store, the shared bus.
            let features = stockcast_feature_store::Settings {
                server: settings.server,
                telemetry: settings.telemetry,
                ..Default::default()
            };
            let offline = stockcast_feature_store::store::sql::open(&features.offline, &shutdown)
                .await
                .map_err(|e| anyhow::anyhow!("feature store offline store: {e}"))?;
            let deps = stockcast_feature_store::Deps {
                online: Arc::new(stockcast_feature_store::store::memory::MemoryOnline::new()),
                offline,
                bus: bus.clone(),
                clock: stockcast_runtime::clock::system(),
            };
            stockcast_feature_store::serve(listener, features, deps, shutdown)
                .await
                .map_err(anyhow::Error::from)
        }),
        Service::Inference => skeleton(Box::pin(stockcast_inference::serve(
            listener, settings, shutdown,
        ))),
        Service::ModelRegistryProxy => Box::pin(async move {
            // The embedded registry: a local directory, SQLite audit log, the shared bus.
            let mut proxy = stockcast_model_registry_proxy::Settings {
                server: settings.server,
                telemetry: settings.telemetry,
                ..Default::default()
            };
            proxy.registry.local_dir = dir.join("models");
            proxy.cache.dir = dir.join("registry-cache");
            let mut deps = stockcast_model_registry_proxy::Deps::from_settings(&proxy, &shutdown)
                .await
                .map_err(|e| anyhow::anyhow!("model registry proxy: {e}"))?;
            deps.bus = bus.clone();
            tracing::info!(dir = %dir.display(), "model registry proxy on the local registry");
            stockcast_model_registry_proxy::serve(listener, proxy, deps, shutdown)
                .await
                .map_err(anyhow::Error::from)
        }),
        Service::RiskMetrics => skeleton(Box::pin(stockcast_risk_metrics::serve(
            listener, settings, shutdown,
        ))),
    }
}

/// Polls `grpc.health.v1` until the server reports SERVING.
async fn wait_serving(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    let mut client = HealthClient::new(channel);
    loop {
        let status = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        if matches!(status, Ok(code) if code == ServingStatus::Serving as i32) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("health at {addr} is {status:?} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
