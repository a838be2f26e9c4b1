//! `stockcast`: run the whole platform in one process (`demo`), or one service (`serve`).

mod bench;
mod bench_features;
mod demo;
mod ingest;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use stockcast_runtime::cli::ServiceArgs;

/// stockcast — an MLOps platform for stock prediction.
///
/// `stockcast demo` runs all five services in this process on embedded backends (in-process
/// event bus, in-memory online store, SQLite, a local model directory): nothing else to
/// install. `stockcast serve <service>` runs one service against the production backends
/// named in its configuration.
#[derive(Debug, Parser)]
#[command(
    name = "stockcast",
    version,
    about,
    long_about,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs all five services in one process on embedded backends, until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Loads market data into the ingestion service: a CSV file, the generator, Alpha Vantage.
    Ingest(ingest::IngestArgs),
    /// Trains a model on the feature store's history, validates it walk-forward and registers it.
    Train(Box<train::TrainArgs>),
    /// Measures a running service from a client (numbers go to docs/benchmarks.md).
    Bench(bench::BenchArgs),
    /// Runs one service; configuration from `--config`, `STOCKCAST_<SERVICE>__…` and flags.
    Serve {
        /// Which service.
        service: Service,
        #[command(flatten)]
        args: ServiceArgs,
    },
}

/// The five services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// Market data in: sources, validation, bars onto Kafka and PostgreSQL.
    Ingestion,
    /// Streaming indicators, Redis online store, point-in-time offline store.
    FeatureStore,
    /// ONNX models over stockcast's API and KServe v2.
    Inference,
    /// MLflow Model Registry behind a typed gRPC API.
    ModelRegistryProxy,
    /// Strategy P&L, risk and model performance.
    RiskMetrics,
}

impl Service {
    /// Every service, in data-flow order.
    pub const ALL: [Service; 5] = [
        Service::Ingestion,
        Service::FeatureStore,
        Service::Inference,
        Service::ModelRegistryProxy,
        Service::RiskMetrics,
    ];

    /// The service's name as used in config and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Service::Ingestion => stockcast_ingestion::SERVICE,
            Service::FeatureStore => stockcast_feature_store::SERVICE,
            Service::Inference => stockcast_inference::SERVICE,
            Service::ModelRegistryProxy => stockcast_model_registry_proxy::SERVICE,
            Service::RiskMetrics => stockcast_risk_metrics::SERVICE,
        }
    }
}

/// How long the runtime may take to stop what is left once a command has returned.
const TEARDOWN: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            report(&format!(
                "stockcast: cannot start the async runtime: {error}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // A command has already shut down in order (servers cut their calls after the grace
    // period); tasks left behind, such as a blocking read, must not hold the process.
    runtime.shutdown_timeout(TEARDOWN);
    code
}

#[allow(clippy::print_stderr)]
fn report(message: &str) {
    eprintln!("{message}");
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Ingest(args) => client_command(ingest::run(args)).await,
        Command::Bench(args) => client_command(bench::run(args)).await,
        Command::Train(args) => client_command(train::run(*args)).await,
        Command::Serve { service, args } => match service {
            Service::Ingestion => stockcast_ingestion::run(args).await,
            Service::FeatureStore => stockcast_feature_store::run(args).await,
            Service::Inference => stockcast_inference::run(args).await,
            Service::ModelRegistryProxy => stockcast_model_registry_proxy::run(args).await,
            Service::RiskMetrics => stockcast_risk_metrics::run(args).await,
        },
    }
}

/// Runs a client command with plain logs; errors print and exit 1.
async fn client_command(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let _telemetry =
        stockcast_runtime::telemetry::init("cli", &stockcast_runtime::TelemetrySettings::default());
    match command.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
