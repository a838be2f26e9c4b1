//! The audit store conformance suite on a real PostgreSQL (`scripts/deps.sh up pg`), one
//! schema per test.

use crate::support::audit_cases::{Exec, executor};

use std::sync::Arc;
use std::time::Duration;

use stockcast_model_registry_proxy::audit::{AuditStore, PostgresAudit};

async fn postgres() -> (Arc<dyn AuditStore>, Exec) {
    let url = stockcast_testkit::POSTGRES.require();
    let schema = stockcast_testkit::unique("registry_audit");
    let store = PostgresAudit::from(
        stockcast_sql::SchemaPool::connect_lazy(&url, &schema, 2, Duration::from_secs(10)).unwrap(),
    );
    store.migrate().await.unwrap();
    let exec = executor(store.pool().clone());
    (Arc::new(store), exec)
}

crate::audit_conformance!(postgres());
