//! The gRPC server every service runs: its routes plus `grpc.health.v1` and reflection,
//! behind timeouts, load shedding and request metrics, with the health lifecycle
//! NOT_SERVING → SERVING (dependencies answer) → NOT_SERVING (shutdown) → drained.

mod deadline;
mod limits;
mod middleware;
mod status;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use self::deadline::{client_timeout, parse_grpc_timeout};
pub use self::limits::{LimitedBody, MessageLimits};
pub use self::middleware::{GrpcMiddleware, GrpcMiddlewareLayer, code_name};
pub use self::status::{error_status, is_server_fault};
use crate::metrics::SERVING;
use crate::settings::ServerSettings;
use crate::shutdown::Shutdown;

/// A dependency check for readiness: `Ok` when the dependency answers, otherwise why not.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the descriptor sets.
    #[error("grpc reflection: {0}")]
    Reflection(String),
    /// The transport failed.
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Builder and runner of one service's gRPC server.
pub struct GrpcServer {
    name: &'static str,
    settings: ServerSettings,
    routes: RoutesBuilder,
    health_names: Vec<&'static str>,
    checks: Vec<(&'static str, ReadinessCheck)>,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("health_names", &self.health_names)
            .field(
                "checks",
                &self.checks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl GrpcServer {
    /// A server for the service called `name` (used in metrics and logs).
    pub fn new(name: &'static str, settings: &ServerSettings) -> Self {
        Self {
            name,
            settings: settings.clone(),
            routes: RoutesBuilder::default(),
            health_names: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Adds one of the project's generated services, limited to `server.max_message_bytes`
    /// per message; its health status follows the server's.
    pub fn add_service<S>(self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + MessageLimits
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        let limit = self.settings.max_message_bytes;
        self.add_foreign_service(service.message_limits(limit))
    }

    /// Adds a service generated outside the project (tonic's own limits apply to it); its
    /// health status follows the server's.
    pub fn add_foreign_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.health_names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Adds a dependency check; the server reports SERVING only while every check passes.
    pub fn readiness_check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: ReadinessCheck = Arc::new(move || Box::pin(check()));
        self.checks.push((name, check));
        self
    }

    /// Adds the dependency `name`, ready while `ping(dependency)` succeeds: the server reports
    /// SERVING only while every dependency answers.
    pub fn ready<T, F, Fut, E>(self, name: &'static str, dependency: T, ping: F) -> Self
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let ping = Arc::new(ping);
        self.readiness_check(name, move || {
            let (dependency, ping) = (dependency.clone(), ping.clone());
            async move { ping(dependency).await.map_err(|e| e.to_string()) }
        })
    }

    /// Serves on `listener` until `shutdown` fires, then reports NOT_SERVING, keeps accepting
    /// for `shutdown_delay_ms`, stops accepting and drains in-flight calls for at most
    /// `shutdown_grace_ms`.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), ServeError> {
        let Self {
            name,
            settings,
            mut routes,
            mut health_names,
            checks,
        } = self;
        health_names.push("");
        let health = Health::new(name, health_names).await;
        let (reporter_service, reflection) = (health.service.clone(), reflection()?);
        routes.add_service(reporter_service);
        routes.add_service(reflection);

        let readiness = tokio::spawn(readiness_loop(
            health.clone(),
            checks,
            Duration::from_millis(settings.readiness_interval_ms),
            shutdown.clone(),
        ));

        let delay = Duration::from_millis(settings.shutdown_delay_ms);
        let grace = Duration::from_millis(settings.shutdown_grace_ms);
        let stop_accepting = {
            let health = health.clone();
            let shutdown = shutdown.clone();
            async move {
                shutdown.wait().await;
                health.stop().await;
                tracing::info!(
                    service = name,
                    delay_ms = delay.as_millis() as u64,
                    "not serving; draining"
                );
                tokio::time::sleep(delay).await;
            }
        };

        let addr = listener.local_addr().ok();
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tonic::transport::Server::builder()
            .timeout(settings.request_timeout())
            .layer(
                GrpcMiddlewareLayer::new(name, settings.concurrency_limit)
                    .with_message_limit(settings.max_message_bytes),
            )
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, stop_accepting);
        if let Some(addr) = addr {
            tracing::info!(service = name, %addr, "grpc server listening");
        }

        let cut_off = async {
            shutdown.wait().await;
            tokio::time::sleep(delay + grace).await;
        };
        let result = tokio::select! {
            result = server => result.map_err(ServeError::from),
            () = cut_off => {
                tracing::warn!(service = name, grace_ms = grace.as_millis() as u64, "calls still running after the grace period were cut");
                Ok(())
            }
        };
        readiness.abort();
        tracing::info!(service = name, "grpc server stopped");
        result
    }
}

fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    ServeError,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(stockcast_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))
}

/// The health statuses of one server, guarded so that a readiness check finishing late
/// cannot turn a stopping server back to SERVING.
#[derive(Clone)]
struct Health {
    name: &'static str,
    reporter: HealthReporter,
    service: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    names: Arc<Vec<&'static str>>,
    state: Arc<Mutex<State>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    NotServing,
    Serving,
    Stopped,
}

impl Health {
    async fn new(name: &'static str, names: Vec<&'static str>) -> Self {
        let reporter = HealthReporter::new();
        let service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        let health = Self {
            name,
            reporter,
            service,
            names: Arc::new(names),
            state: Arc::new(Mutex::new(State::NotServing)),
        };
        health.publish(ServingStatus::NotServing).await;
        health
    }

    async fn publish(&self, status: ServingStatus) {
        for name in self.names.iter() {
            self.reporter.set_service_status(*name, status).await;
        }
        let serving = if status == ServingStatus::Serving {
            1.0
        } else {
            0.0
        };
        metrics::gauge!(SERVING, "service" => self.name).set(serving);
    }

    /// Sets SERVING or NOT_SERVING unless the server is stopping.
    async fn set_ready(&self, ready: bool) -> bool {
        let mut state = self.state.lock().await;
        let next = if ready {
            State::Serving
        } else {
            State::NotServing
        };
        if *state == State::Stopped || *state == next {
            return false;
        }
        *state = next;
        self.publish(if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        })
        .await;
        true
    }

    async fn stop(&self) {
        let mut state = self.state.lock().await;
        *state = State::Stopped;
        self.publish(ServingStatus::NotServing).await;
    }
}

async fn readiness_loop(
    health: Health,
    checks: Vec<(&'static str, ReadinessCheck)>,
    interval: Duration,
    shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = ticker.tick() => {}
        }
        let mut failure = None;
        for (dependency, check) in &checks {
            let outcome = tokio::time::timeout(interval.max(Duration::from_secs(1)), check()).await;
            let reason = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(reason)) => reason,
                Err(_) => "check timed out".to_owned(),
            };
            failure = Some((*dependency, reason));
            break;
        }
        let ready = failure.is_none();
        if health.set_ready(ready).await {
            match failure {
                None => tracing::info!(service = health.name, "serving"),
                Some((dependency, reason)) => {
                    tracing::warn!(
                        service = health.name,
                        dependency,
                        reason,
                        "not serving: dependency unavailable"
                    )
                }
            }
        }
    }
}
