//! The offline store conformance suite on embedded SQLite (in memory, one database per test).

use std::sync::Arc;

use stockcast_feature_store::store::OfflineStore;
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_runtime::Shutdown;

use super::cases;

async fn sqlite() -> Arc<dyn OfflineStore> {
    open(&DatabaseSettings::default(), &Shutdown::new())
        .await
        .expect("sqlite")
}

crate::offline_store_cases!(async sqlite);

/// A file database keeps what was written across a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_database_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let settings = DatabaseSettings {
        url: stockcast_runtime::Secret::new(format!(
            "sqlite://{}",
            dir.path().join("offline.db").display()
        )),
        ..DatabaseSettings::default()
    };
    let view = cases::view(1);
    {
        let store = open(&settings, &Shutdown::new()).await.unwrap();
        assert!(store.register_view(&view, "{}").await.unwrap().new);
    }
    let store = open(&settings, &Shutdown::new()).await.unwrap();
    let recorded = store.register_view(&view, "{\"x\":1}").await.unwrap();
    assert_eq!((recorded.new, recorded.definition.as_str()), (false, "{}"));
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused() {
    let settings = DatabaseSettings {
        url: stockcast_runtime::Secret::new("mysql://localhost/db"),
        ..DatabaseSettings::default()
    };
    let error = open(&settings, &Shutdown::new()).await.unwrap_err();
    assert!(error.to_string().contains("sqlite:"), "{error}");
}

/// A busy database is UNAVAILABLE (the batch is retried), as in every service.
#[tokio::test]
async fn a_busy_database_is_unavailable() {
    use stockcast_feature_store::store::{StoreError, ViewId};
    let dir = tempfile::tempdir().unwrap();
    let settings = DatabaseSettings {
        url: stockcast_runtime::Secret::new(format!(
            "sqlite://{}",
            dir.path().join("f.db").display()
        )),
        acquire_timeout_ms: 50,
        ..Default::default()
    };
    let store = open(&settings, &Shutdown::new()).await.unwrap();
    let _lock = stockcast_sql::lock_exclusively(&settings).await.unwrap();
    let error = store
        .register_view(&ViewId::new("busy", 1), "{}")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
}
