//! `stockcast-feature-store`: the feature-store service as its own process.

use std::process::ExitCode;

use clap::Parser;
use stockcast_runtime::cli::ServiceArgs;

/// The stockcast feature-store service.
#[derive(Debug, Parser)]
#[command(name = "stockcast-feature-store", version, about)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    stockcast_feature_store::run(Args::parse().service).await
}
