//! The registry conformance suite on the local directory registry (SQLite audit log,
//! in-process bus).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::harness::Kind;

registry_conformance!(Kind::Local);
