//! The feature store's integration tests, one binary with a module per theme. Tests that
//! need the real servers (PostgreSQL, Redis, Kafka) get their addresses from
//! `stockcast-testkit` and fail with how to start a missing one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile;
mod materialize;
mod offline;
mod online;
mod service;
mod stream;
mod support;
