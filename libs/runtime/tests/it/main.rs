//! The runtime's integration tests: configuration loading, the gRPC server's deadlines,
//! limits and shutdown (a real SIGTERM), metrics upkeep and trace export, each against a real
//! server in the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config_props;
mod deadline;
mod limits;
#[cfg(target_os = "linux")]
mod metrics_upkeep;
mod otlp;
mod sigterm;
mod support;
