//! Shared test support of the ingestion service.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod av_server;
pub mod embedded;
pub mod service;
pub mod store_cases;
