//! The event bus's integration tests: the conformance suite on the in-process bus and on a
//! real Kafka-protocol broker, and a consumer process killed before it commits.

#![allow(clippy::expect_used)]

mod kafka;
mod kill;
mod memory;
