//! The registry conformance suite on a real MLflow tracking server
//! (`scripts/deps.sh up mlflow`), with the audit log in PostgreSQL and events on Kafka.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::harness::Kind;

registry_conformance!(Kind::Mlflow);
