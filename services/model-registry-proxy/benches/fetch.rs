//! Fetch throughput through gRPC: a 64 MiB model from the local registry, cold (download
//! into the cache with SHA-256, then stream) and warm (streamed from the cache); with
//! `STOCKCAST_TEST_MLFLOW_URL` set, also cold through MLflow's artifact proxy.
//!
//! `cargo bench -p stockcast-model-registry-proxy --bench fetch`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use stockcast_bus::MemoryBus;
use stockcast_model::metadata::encode_model;
use stockcast_model_registry_proxy::audit::SqliteAudit;
use stockcast_model_registry_proxy::registry::{
    ArtifactFormat, LocalRegistry, MlflowRegistry, MlflowSettings, NewVersion, Registry,
};
use stockcast_model_registry_proxy::{Deps, Settings};
use stockcast_proto::stockcast::registry::v1 as pb;
use stockcast_proto::stockcast::registry::v1::model_registry_service_client::ModelRegistryServiceClient;
use stockcast_runtime::Shutdown;

const SIZE: usize = 64 * 1024 * 1024;

async fn fetch_all(
    client: &mut ModelRegistryServiceClient<tonic::transport::Channel>,
    uri: &str,
) -> usize {
    let mut stream = client
        .fetch_model(pb::FetchModelRequest {
            uri: uri.to_owned(),
            offset: 0,
            chunk_size_bytes: 1024 * 1024,
        })
        .await
        .unwrap()
        .into_inner();
    let mut total = 0;
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(pb::fetch_model_response::Payload::Chunk(chunk)) = message.payload {
            total += chunk.data.len();
        }
    }
    total
}

async fn run(label: &str, registry: Arc<dyn Registry>) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
    registry.create_model(&name, "").await.unwrap();
    let onnx = encode_model(&Default::default(), SIZE);
    registry
        .create_version(
            &name,
            NewVersion {
                format: ArtifactFormat::MlflowOnnx,
                onnx: Bytes::from(onnx),
                tags: Default::default(),
                description: String::new(),
            },
        )
        .await
        .unwrap();
    let mut settings = Settings::default();
    settings.cache.dir = dir.path().join("cache");
    settings.poll.interval_ms = 0;
    settings.server.max_message_bytes = 8 * 1024 * 1024;
    let deps = Deps {
        registry,
        audit: Arc::new(SqliteAudit::open("sqlite::memory:").await.unwrap()),
        bus: Arc::new(MemoryBus::new()),
        clock: stockcast_runtime::clock::system(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let server = tokio::spawn(stockcast_model_registry_proxy::serve(
        listener,
        settings,
        deps,
        shutdown.clone(),
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut client =
        ModelRegistryServiceClient::new(channel).max_decoding_message_size(8 * 1024 * 1024);
    let uri = format!("models:/{name}/1");
    for pass in ["cold", "warm", "warm"] {
        let start = Instant::now();
        let bytes = fetch_all(&mut client, &uri).await;
        let seconds = start.elapsed().as_secs_f64();
        eprintln!(
            "{label} {pass}: {} MiB in {seconds:.3} s = {:.0} MiB/s",
            bytes / (1024 * 1024),
            bytes as f64 / (1024.0 * 1024.0) / seconds
        );
    }
    shutdown.trigger();
    let _ = server.await;
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    run(
        "local registry",
        Arc::new(
            LocalRegistry::open(dir.path(), stockcast_runtime::clock::system())
                .await
                .unwrap(),
        ),
    )
    .await;
    if let Ok(url) = std::env::var("STOCKCAST_TEST_MLFLOW_URL") {
        let settings = MlflowSettings {
            tracking_uri: url,
            ..MlflowSettings::default()
        };
        run("mlflow", Arc::new(MlflowRegistry::new(&settings).unwrap())).await;
    }
}
