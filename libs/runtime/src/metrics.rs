//! Prometheus metrics: the process-wide recorder, the `/metrics` endpoint, and the names of
//! the metrics this crate records.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// gRPC calls finished, by `service`, `method` and `code` (the gRPC status name).
pub const GRPC_REQUESTS: &str = "stockcast_grpc_server_requests_total";
/// gRPC call duration in seconds until the response ended, by `service`, `method`, `code`.
pub const GRPC_DURATION: &str = "stockcast_grpc_server_request_duration_seconds";
/// gRPC calls in flight, by `service`.
pub const GRPC_IN_FLIGHT: &str = "stockcast_grpc_server_in_flight";
/// gRPC calls refused because the concurrency limit was reached, by `service`.
pub const GRPC_SHED: &str = "stockcast_grpc_server_shed_total";
/// 1 while the service reports SERVING, 0 otherwise, by `service`.
pub const SERVING: &str = "stockcast_serving";

/// Latency buckets, seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets when nothing scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use with upkeep every
/// [`UPKEEP_INTERVAL`].
pub fn handle() -> &'static PrometheusHandle {
    install(UPKEEP_INTERVAL)
}

/// The process-wide Prometheus recorder, installed on first use with its upkeep running on
/// a background thread every `upkeep_every` (later calls return the installed one).
///
/// The recorder keeps each histogram sample until upkeep or a scrape folds it into the
/// buckets; without upkeep a service nobody scrapes grows by every sample it records.
pub fn install(upkeep_every: Duration) -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); ours then renders
        // only what is recorded through it, which is nothing. Say so once.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(upkeep_every);
                    upkeep.run_upkeep();
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "metrics upkeep thread not started; histograms grow until scraped");
        }
        handle
    })
}

/// Serves `GET /metrics` in the Prometheus text format until `shutdown` fires.
pub async fn serve(listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
    let handle = handle();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { handle.render() }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

/// Binds `addr` and serves `/metrics` in the background.
pub async fn spawn(addr: SocketAddr, shutdown: Shutdown) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = serve(listener, shutdown).await {
            tracing::error!(%error, "metrics endpoint stopped");
        }
    });
    tracing::info!(addr = %local, "serving prometheus metrics on /metrics");
    Ok(local)
}
