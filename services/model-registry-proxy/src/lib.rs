//! The model registry proxy: the MLflow Model Registry behind a typed gRPC API.
//!
//! Owns the artifact cache and the promotion audit log; consumes the MLflow REST API;
//! produces model events; serves `stockcast.registry.v1.ModelRegistryService`.
//!
//! Until its own issue lands, the service runs the shared runtime (health, reflection,
//! metrics, shutdown) and answers its RPCs with UNIMPLEMENTED.

use std::process::ExitCode;

use stockcast_proto::stockcast::registry::v1::model_registry_service_server::{
    ModelRegistryService, ModelRegistryServiceServer,
};
use stockcast_runtime::cli::ServiceArgs;
use stockcast_runtime::grpc::ServeError;
use stockcast_runtime::{BasicSettings, GrpcServer, Shutdown};
use tokio::net::TcpListener;

/// Service name: config prefix `STOCKCAST_MODEL_REGISTRY_PROXY__`, metrics label, health.
pub const SERVICE: &str = "model-registry-proxy";

/// Per-service defaults below every config layer.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("server.grpc_addr", "127.0.0.1:50054"),
    ("server.metrics_addr", "127.0.0.1:9104"),
];

/// The service's settings.
pub type Settings = BasicSettings;

#[derive(Debug, Clone, Copy)]
struct Api;

#[tonic::async_trait]
impl ModelRegistryService for Api {}

/// Serves the service on `listener` until `shutdown` fires, then drains.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let limit = settings.server.max_message_bytes;
    GrpcServer::new(SERVICE, &settings.server)
        .add_service(
            ModelRegistryServiceServer::new(Api)
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
