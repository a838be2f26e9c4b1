//! End-to-end tests: the `stockcast` binary run as users run it, as real processes, alone and
//! against each other on the real servers. One test binary, a module per theme.
//!
//! The binary is built by `stockcast_testkit::bin::stockcast` (see docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backfill_restart;
mod data_path;
mod demo;
mod ingest;
mod serve;
mod train;

/// A `stockcast` command, built when needed.
fn stockcast() -> std::process::Command {
    std::process::Command::new(stockcast_testkit::bin::stockcast())
}
