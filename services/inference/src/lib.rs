//! The inference service: ONNX models served over stockcast's API and the KServe v2 protocol.
//!
//! Owns loaded models, A/B routes and the prediction log; consumes features (gRPC), models
//! (gRPC) and model events; produces prediction events; serves
//! `stockcast.inference.v1.InferenceService` and `inference.GRPCInferenceService`.
//!
//! Until its own issue lands, the service runs the shared runtime (health, reflection,
//! metrics, shutdown) and answers its RPCs with UNIMPLEMENTED.

use std::process::ExitCode;

use stockcast_proto::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use stockcast_proto::stockcast::inference::v1::inference_service_server::{
    InferenceService, InferenceServiceServer,
};
use stockcast_runtime::StartError;
use stockcast_runtime::cli::ServiceArgs;
use stockcast_runtime::{BasicSettings, GrpcServer, Shutdown};
use tokio::net::TcpListener;

/// Service name: config prefix `STOCKCAST_INFERENCE__`, metrics label, health.
pub const SERVICE: &str = "inference";

/// Per-service defaults below every config layer.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("server.grpc_addr", "127.0.0.1:50053"),
    ("server.metrics_addr", "127.0.0.1:9103"),
];

/// The service's settings.
pub type Settings = BasicSettings;

#[derive(Debug, Clone, Copy)]
struct Api;

#[tonic::async_trait]
impl InferenceService for Api {}

#[tonic::async_trait]
impl GrpcInferenceService for Api {}

/// Serves the service on `listener` until `shutdown` fires, then drains.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    GrpcServer::new(SERVICE, &settings.server)
        .add_service(InferenceServiceServer::new(Api))
        .add_service(GrpcInferenceServiceServer::new(Api))
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
