//! The risk-metrics service: strategy P&L, risk and model performance.
//!
//! Owns strategy P&L and metric history; consumes market-bar and prediction events; serves
//! `stockcast.risk.v1.RiskMetricsService` and Prometheus gauges.
//!
//! Until its own issue lands, the service runs the shared runtime (health, reflection,
//! metrics, shutdown) and answers its RPCs with UNIMPLEMENTED.

use std::process::ExitCode;

use stockcast_proto::stockcast::risk::v1::risk_metrics_service_server::{
    RiskMetricsService, RiskMetricsServiceServer,
};
use stockcast_runtime::cli::ServiceArgs;
use stockcast_runtime::grpc::ServeError;
use stockcast_runtime::{BasicSettings, GrpcServer, Shutdown};
use tokio::net::TcpListener;

/// Service name: config prefix `STOCKCAST_RISK_METRICS__`, metrics label, health.
pub const SERVICE: &str = "risk-metrics";

/// Per-service defaults below every config layer.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("server.grpc_addr", "127.0.0.1:50055"),
    ("server.metrics_addr", "127.0.0.1:9105"),
];

/// The service's settings.
pub type Settings = BasicSettings;

#[derive(Debug, Clone, Copy)]
struct Api;

#[tonic::async_trait]
impl RiskMetricsService for Api {}

/// Serves the service on `listener` until `shutdown` fires, then drains.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let limit = settings.server.max_message_bytes;
    GrpcServer::new(SERVICE, &settings.server)
        .add_service(
            RiskMetricsServiceServer::new(Api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .serve(listener, shutdown)
        .await
}

/// Runs the service as a process with `args`.
pub async fn run(args: ServiceArgs) -> ExitCode {
    stockcast_runtime::cli::run::<Settings, _, _, _>(
        SERVICE,
        DEFAULTS,
        &args,
        |settings, listener, shutdown| serve(listener, settings, shutdown),
    )
    .await
}
