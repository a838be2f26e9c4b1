//! What every stockcast service shares: layered typed config, telemetry (logs, OTLP traces,
//! Prometheus metrics), the gRPC server bootstrap (health lifecycle, reflection, timeouts,
//! load shedding, request metrics) and ordered, bounded graceful shutdown.

pub mod cli;
pub mod clock;
pub mod config;
pub mod echo;
pub mod grpc;
pub mod metrics;
pub mod retry;
pub mod secret;
pub mod settings;
pub mod shutdown;
pub mod start;
pub mod sync;
pub mod telemetry;

pub use crate::clock::{Clock, SharedClock, SystemClock};
pub use crate::config::{ConfigError, ConfigSource, Settings};
pub use crate::grpc::GrpcServer;
pub use crate::retry::{Backoff, Retry, RetryError};
pub use crate::secret::Secret;
pub use crate::settings::{BasicSettings, LogFormat, ServerSettings, TelemetrySettings};
pub use crate::shutdown::Shutdown;
pub use crate::start::StartError;

/// Process exit code for a configuration that cannot be used (`EX_USAGE` in sysexits.h).
pub const EXIT_CONFIG: u8 = 64;
