//! The market crate's integration tests, one binary with a module per theme: the Alpha
//! Vantage source against a fake server (`stockcast_testkit::alpha_vantage`), the CSV source
//! against fixture files, with its property and fuzz suites, and the synthetic generator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alpha_vantage;
mod csv;
mod csv_fuzz;
mod csv_props;
mod logs;
mod synthetic;
