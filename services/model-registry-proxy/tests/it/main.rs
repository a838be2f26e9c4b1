//! Integration tests of the model registry proxy, in one binary with a module per theme.
//! Tests that need PostgreSQL, Kafka or MLflow get their addresses from
//! `stockcast-testkit` and fail with how to start a missing server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod artifacts;
mod audit;
mod changes;
mod conformance;
mod hostile;
mod local_confinement;
mod mlflow;
