//! The embedded SQLite database.

use std::str::FromStr;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::settings::DatabaseSettings;

/// A pool on the SQLite database `settings.url` names (created when missing): WAL journal,
/// foreign keys on, and a busy database waited for up to `acquire_timeout_ms` before the
/// statement fails as unavailable.
pub async fn sqlite_pool(settings: &DatabaseSettings) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(settings.url.expose())?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(settings.acquire_timeout());
    pool_options(settings).connect_with(options).await
}

/// The pool settings. A memory database lives and dies with its one connection, so that
/// connection is kept forever: a pool that closed it when idle or old (sqlx closes idle
/// connections after 10 minutes and every connection after 30 by default) would lose every
/// table.
fn pool_options(settings: &DatabaseSettings) -> SqlitePoolOptions {
    let url = settings.url.expose();
    let pool = SqlitePoolOptions::new().acquire_timeout(settings.acquire_timeout());
    if url.contains(":memory:") || url.contains("mode=memory") {
        pool.max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        pool.max_connections(settings.max_connections.max(1))
    }
}

/// Holds an exclusive lock on a SQLite file database until dropped, so that tests can see
/// how a store behaves when the database is busy.
#[derive(Debug)]
pub struct ExclusiveLock {
    _connection: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    _pool: SqlitePool,
}

/// Takes an exclusive lock on the SQLite database of `settings` (a file database).
pub async fn lock_exclusively(settings: &DatabaseSettings) -> Result<ExclusiveLock, sqlx::Error> {
    let pool = sqlite_pool(settings).await?;
    let mut connection = pool.acquire().await?;
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *connection)
        .await?;
    Ok(ExclusiveLock {
        _connection: connection,
        _pool: pool,
    })
}

#[cfg(test)]
mod tests {
    use stockcast_runtime::Secret;

    use super::*;

    fn at(url: &str) -> DatabaseSettings {
        DatabaseSettings {
            url: Secret::new(url),
            max_connections: 4,
            ..DatabaseSettings::default()
        }
    }

    #[test]
    fn a_memory_pool_never_closes_its_connection() {
        for url in ["sqlite::memory:", "sqlite:file:x?mode=memory&cache=shared"] {
            let options = pool_options(&at(url));
            assert_eq!(options.get_max_connections(), 1, "{url}");
            assert_eq!(options.get_min_connections(), 1, "{url}");
            assert_eq!(options.get_idle_timeout(), None, "{url}");
            assert_eq!(options.get_max_lifetime(), None, "{url}");
        }
    }

    #[test]
    fn a_file_pool_keeps_several_connections() {
        assert_eq!(
            pool_options(&at("sqlite://audit.db")).get_max_connections(),
            4
        );
    }

    #[tokio::test]
    async fn a_memory_database_keeps_its_tables_on_its_one_connection() {
        let pool = sqlite_pool(&at("sqlite::memory:")).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(pool.size(), 1);
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count, 0);
    }
}
