//! Shared test support of the ingestion service.

#![allow(dead_code)]

pub mod embedded;
pub mod service;
pub mod store_cases;
