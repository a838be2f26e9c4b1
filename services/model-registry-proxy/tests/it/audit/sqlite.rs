//! The audit store conformance suite on embedded SQLite.

use crate::support::audit_cases::{Exec, executor};

use std::sync::Arc;

use stockcast_model_registry_proxy::audit::{AuditStore, SqliteAudit};

async fn sqlite() -> (Arc<dyn AuditStore>, Exec) {
    let store = SqliteAudit::open("sqlite::memory:").await.unwrap();
    let exec = executor(store.pool().clone());
    (Arc::new(store), exec)
}

crate::audit_conformance!(sqlite());

/// A busy database is UNAVAILABLE (retried by callers), as in every service.
#[tokio::test]
async fn a_busy_database_is_unavailable() {
    use stockcast_model_registry_proxy::audit::AuditError;
    let dir = tempfile::tempdir().unwrap();
    let settings = stockcast_sql::DatabaseSettings {
        url: stockcast_runtime::Secret::new(format!(
            "sqlite://{}",
            dir.path().join("a.db").display()
        )),
        acquire_timeout_ms: 50,
        ..Default::default()
    };
    let audit =
        stockcast_model_registry_proxy::audit::open(&settings, &stockcast_runtime::Shutdown::new())
            .await
            .unwrap();
    let _lock = stockcast_sql::lock_exclusively(&settings).await.unwrap();
    let error = audit.mark_published(1).await.unwrap_err();
    assert!(matches!(error, AuditError::Unavailable(_)), "{error:?}");
}
