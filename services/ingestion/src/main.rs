//! `stockcast-ingestion`: the ingestion service as its own process.

use std::process::ExitCode;

use clap::Parser;
use stockcast_runtime::cli::ServiceArgs;

/// The stockcast ingestion service.
#[derive(Debug, Parser)]
#[command(name = "stockcast-ingestion", version, about)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    stockcast_ingestion::run(Args::parse().service).await
}
