//! The ingestion service's integration tests, one binary with a module per theme: the store
//! conformance suite on SQLite and PostgreSQL, pushes, backfills and their sources end to end
//! on PostgreSQL and Kafka, and hostile input, the ingestor's clock and job runs on the
//! embedded backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backfill;
mod hostile;
mod ingest;
mod jobs;
mod push;
mod sources;
mod store;
mod support;
