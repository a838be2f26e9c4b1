//! `stockcast-risk-metrics`: the risk-metrics service as its own process.

use std::process::ExitCode;

use clap::Parser;
use stockcast_runtime::cli::ServiceArgs;

/// The stockcast risk-metrics service.
#[derive(Debug, Parser)]
#[command(name = "stockcast-risk-metrics", version, about)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    stockcast_risk_metrics::run(Args::parse().service).await
}
