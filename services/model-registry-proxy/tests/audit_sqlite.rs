//! The audit store conformance suite on embedded SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::audit_cases::{Exec, executor};

use std::sync::Arc;

use stockcast_model_registry_proxy::audit::{AuditStore, SqliteAudit};

async fn sqlite() -> (Arc<dyn AuditStore>, Exec) {
    let store = SqliteAudit::open("sqlite::memory:").await.unwrap();
    let exec = executor(store.pool().clone());
    (Arc::new(store), exec)
}

audit_conformance!(sqlite());
