//! `stockcast-model-registry-proxy`: the model-registry-proxy service as its own process.

use std::process::ExitCode;

use clap::Parser;
use stockcast_runtime::cli::ServiceArgs;

/// The stockcast model-registry-proxy service.
#[derive(Debug, Parser)]
#[command(name = "stockcast-model-registry-proxy", version, about)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    stockcast_model_registry_proxy::run(Args::parse().service).await
}
