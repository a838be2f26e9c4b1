//! The SQL crate's integration tests on real databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sqlite_busy;
