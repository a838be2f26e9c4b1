//! Settings sections that every service embeds: its server and its telemetry.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// How a service listens and protects itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics` listen address; absent disables the endpoint.
    pub metrics_addr: Option<SocketAddr>,
    /// Longest time a unary call may take, milliseconds (a shorter `grpc-timeout` wins).
    pub request_timeout_ms: u64,
    /// Calls served at once, 1 to [`MAX_CONCURRENCY_LIMIT`]; calls beyond it are shed with
    /// RESOURCE_EXHAUSTED.
    pub concurrency_limit: usize,
    /// Largest request or response message, bytes.
    pub max_message_bytes: usize,
    /// After SIGTERM, how long health reports NOT_SERVING while calls are still accepted,
    /// so that load balancers stop routing here first, milliseconds.
    pub shutdown_delay_ms: u64,
    /// After that, how long in-flight calls may take to finish before they are cut,
    /// milliseconds.
    pub shutdown_grace_ms: u64,
    /// How often dependencies are checked for the health status, milliseconds.
    pub readiness_interval_ms: u64,
}

/// The largest `server.concurrency_limit`: the most permits a semaphore holds.
pub const MAX_CONCURRENCY_LIMIT: usize = tokio::sync::Semaphore::MAX_PERMITS;

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_addr: None,
            request_timeout_ms: 10_000,
            concurrency_limit: 1024,
            max_message_bytes: 16 * 1024 * 1024,
            shutdown_delay_ms: 0,
            shutdown_grace_ms: 20_000,
            readiness_interval_ms: 1_000,
        }
    }
}

impl ServerSettings {
    /// Defaults with another gRPC port, for services that must not collide in one process.
    pub fn on_port(port: u16) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            ..Self::default()
        }
    }

    /// Checks the values that parse but cannot work.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        positive(section, "request_timeout_ms", self.request_timeout_ms)?;
        positive(section, "concurrency_limit", self.concurrency_limit as u64)?;
        if self.concurrency_limit > MAX_CONCURRENCY_LIMIT {
            // The limit is a semaphore's permits, which panics when built with more.
            return Err(ConfigError::invalid(
                format!("{section}.concurrency_limit"),
                format!(
                    "{} is above the maximum of {MAX_CONCURRENCY_LIMIT}",
                    self.concurrency_limit
                ),
            ));
        }
        positive(section, "readiness_interval_ms", self.readiness_interval_ms)?;
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::invalid(
                format!("{section}.max_message_bytes"),
                format!(
                    "{} is below the minimum of 1024 bytes",
                    self.max_message_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

fn positive(section: &str, key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(
            format!("{section}.{key}"),
            "must be greater than 0".to_owned(),
        ));
    }
    Ok(())
}

/// Log line format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,stockcast_bus=debug`; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// OTLP/gRPC collector endpoint (Jaeger accepts it on port 4317); absent disables trace
    /// export. Defaults to `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// Fraction of root traces sampled, 0.0–1.0; a sampled parent is always followed.
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

impl TelemetrySettings {
    /// Checks the values that parse but cannot work.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::invalid(
                format!("{section}.sample_ratio"),
                format!("{} is outside 0.0..=1.0", self.sample_ratio),
            ));
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                format!("{section}.otlp_endpoint"),
                format!("{endpoint:?} must start with http:// or https://"),
            ));
        }
        Ok(())
    }
}

/// Settings of a service that has no sections of its own yet: server and telemetry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BasicSettings {
    /// How the service listens.
    pub server: ServerSettings,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
}

impl crate::config::Settings for BasicSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")
    }
}

impl crate::cli::ServiceSettings for BasicSettings {
    fn server(&self) -> &ServerSettings {
        &self.server
    }

    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }
}
