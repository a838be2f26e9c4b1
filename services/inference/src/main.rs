//! `stockcast-inference`: the inference service as its own process.

use std::process::ExitCode;

use clap::Parser;
use stockcast_runtime::cli::ServiceArgs;

/// The stockcast inference service.
#[derive(Debug, Parser)]
#[command(name = "stockcast-inference", version, about)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    stockcast_inference::run(Args::parse().service).await
}
