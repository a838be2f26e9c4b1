//! A busy SQLite database is reported as unavailable (retry later), not as a refusal.

use stockcast_runtime::Secret;
use stockcast_sql::{DatabaseSettings, SqlErrorKind, classify, lock_exclusively, sqlite_pool};

#[tokio::test]
async fn a_write_to_a_database_locked_by_another_connection_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let settings = DatabaseSettings {
        url: Secret::new(format!("sqlite://{}", dir.path().join("busy.db").display())),
        acquire_timeout_ms: 50,
        ..DatabaseSettings::for_schema("busy")
    };
    let writer = sqlite_pool(&settings).await.unwrap();
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&writer)
        .await
        .unwrap();
    let lock = lock_exclusively(&settings).await.unwrap();
    let error = sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&writer)
        .await
        .unwrap_err();
    assert_eq!(classify(&error), SqlErrorKind::Unavailable, "{error}");
    drop(lock);
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&writer)
        .await
        .unwrap();
}
