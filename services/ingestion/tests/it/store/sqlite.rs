//! The store conformance suite on embedded SQLite.

use std::sync::Arc;

use stockcast_ingestion::store::{BarStore, SqliteStore};

async fn sqlite() -> Arc<dyn BarStore> {
    Arc::new(SqliteStore::open("sqlite::memory:").await.expect("sqlite"))
}

crate::store_conformance!(sqlite());

/// A busy database is UNAVAILABLE (retried by callers), as in every service.
#[tokio::test]
async fn a_busy_database_is_unavailable() {
    use stockcast_ingestion::store::{JobUpdate, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let settings = stockcast_sql::DatabaseSettings {
        url: stockcast_runtime::Secret::new(format!(
            "sqlite://{}",
            dir.path().join("i.db").display()
        )),
        acquire_timeout_ms: 50,
        ..Default::default()
    };
    let store = stockcast_ingestion::store::open(&settings, &stockcast_runtime::Shutdown::new())
        .await
        .unwrap();
    let _lock = stockcast_sql::lock_exclusively(&settings).await.unwrap();
    let update = JobUpdate {
        finished: true,
        ..Default::default()
    };
    let error = store
        .update_job(uuid::Uuid::new_v4(), &update)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}
