//! A pool with the schema its connections are on: what a service's store keeps, so that
//! connecting, migrating and dropping the schema are written once.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::{Database, Pool, Postgres, Sqlite};

use crate::postgres::{SetupError, drop_schema, migrate, schema_pool};
use crate::settings::DatabaseSettings;
use crate::sqlite::sqlite_pool;

/// A pool of `DB` and the schema every connection is on (PostgreSQL; empty for SQLite).
#[derive(Debug)]
pub struct SchemaPool<DB: Database> {
    pool: Pool<DB>,
    schema: String,
}

impl<DB: Database> SchemaPool<DB> {
    /// `pool`, whose connections are on `schema` (PostgreSQL; empty for SQLite).
    pub fn new(pool: Pool<DB>, schema: &str) -> Self {
        Self {
            pool,
            schema: schema.to_owned(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// The schema every connection is on (PostgreSQL; empty for SQLite).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl SchemaPool<Postgres> {
    /// Connects lazily to `url` (no I/O here), every connection on `schema`.
    pub fn connect_lazy(
        url: &str,
        schema: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, SetupError> {
        let pool = schema_pool(url, schema, max_connections, acquire_timeout)?;
        Ok(Self::new(pool, schema))
    }

    /// Creates the schema if missing and applies `migrator` in it.
    pub async fn migrate(&self, migrator: &Migrator) -> Result<(), SetupError> {
        migrate(&self.pool, &self.schema, migrator).await
    }

    /// Drops the schema with everything in it (tests and benchmarks).
    pub async fn drop_schema(&self) -> Result<(), SetupError> {
        drop_schema(&self.pool, &self.schema).await
    }
}

impl SchemaPool<Sqlite> {
    /// Opens (creating if missing) the SQLite database at `url` (`sqlite::memory:` or
    /// `sqlite://path/to/file.db`) with the default settings, and applies `migrator`.
    pub async fn open_sqlite(url: &str, migrator: &Migrator) -> Result<Self, SetupError> {
        let settings = DatabaseSettings {
            url: stockcast_runtime::Secret::new(url),
            ..Default::default()
        };
        let pool = sqlite_pool(&settings).await.map_err(SetupError::Sql)?;
        migrator.run(&pool).await.map_err(SetupError::Migrate)?;
        Ok(Self::new(pool, ""))
    }
}

impl<DB: Database> Clone for SchemaPool<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            schema: self.schema.clone(),
        }
    }
}
