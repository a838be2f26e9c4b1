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
use stockcast_runtime::StartError;
use stockcast_runtime::cli::ServiceArgs;
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
) -> Result<(), StartError> {
    GrpcServer::new(SERVICE, &settings.server)
        .add_service(RiskMetricsServiceServer::new(Api))
        .serve(listener, shutdown)
        .await
        .map_err(StartError::from)
}

/// Runs the service as a process with `args`.
pub async fn run(args: ServiceArgs) -> ExitCode {
    stockcast_runtime::cli::run::<Settings, _, _>(
        SERVICE,
        DEFAULTS,
        &args,
        |settings, listener, shutdown| serve(listener, settings, shutdown),
    )
    .await
}
