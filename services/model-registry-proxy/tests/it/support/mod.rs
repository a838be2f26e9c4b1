//! Shared test support of the model registry proxy.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod audit_cases;
pub mod cases;
pub mod harness;
pub mod venv;
