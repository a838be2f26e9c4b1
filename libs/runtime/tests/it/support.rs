//! A slow gRPC service and clients for the runtime's lifecycle tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stockcast_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use stockcast_proto::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use stockcast_proto::inference::{ServerLiveRequest, ServerLiveResponse};
use stockcast_runtime::{GrpcServer, ServerSettings, Shutdown};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// `ServerLive` sleeps for the number of milliseconds in the `x-sleep-ms` metadata.
#[derive(Debug, Clone, Copy)]
pub struct Slow;

#[tonic::async_trait]
impl GrpcInferenceService for Slow {
    async fn server_live(
        &self,
        request: tonic::Request<ServerLiveRequest>,
    ) -> Result<tonic::Response<ServerLiveResponse>, tonic::Status> {
        let ms = request
            .metadata()
            .get("x-sleep-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(tonic::Response::new(ServerLiveResponse { live: true }))
    }
}

/// A running test server.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub ready: Arc<AtomicBool>,
    pub handle: tokio::task::JoinHandle<Result<(), stockcast_runtime::grpc::ServeError>>,
}

/// Starts a server whose readiness follows the returned flag (initially false).
pub async fn start(settings: ServerSettings, shutdown: Shutdown) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let server = GrpcServer::new("lifecycle-test", &settings)
        .add_service(GrpcInferenceServiceServer::new(Slow))
        .readiness_check("fake-dependency", move || {
            let ready = flag.load(Ordering::SeqCst);
            async move {
                if ready {
                    Ok(())
                } else {
                    Err("not yet".to_owned())
                }
            }
        });
    let handle = tokio::spawn(server.serve(listener, shutdown));
    Running {
        addr,
        ready,
        handle,
    }
}

pub fn settings() -> ServerSettings {
    ServerSettings {
        readiness_interval_ms: 20,
        ..ServerSettings::default()
    }
}

pub fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

pub async fn health(addr: SocketAddr) -> Result<i32, tonic::Status> {
    HealthClient::new(channel(addr))
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
}

/// Polls health on one connection until it reports `want`, or panics after `within`.
pub async fn wait_health(addr: SocketAddr, want: ServingStatus, within: Duration) {
    let mut client = HealthClient::new(channel(addr));
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        if matches!(status, Ok(s) if s == want as i32) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health did not become {want:?} within {within:?}; last {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Calls `ServerLive` sleeping `ms` on the server.
pub async fn slow_call(channel: Channel, ms: u64) -> Result<bool, tonic::Status> {
    let mut request = tonic::Request::new(ServerLiveRequest {});
    request
        .metadata_mut()
        .insert("x-sleep-ms", ms.to_string().parse().unwrap());
    GrpcInferenceServiceClient::new(channel)
        .server_live(request)
        .await
        .map(|r| r.into_inner().live)
}
