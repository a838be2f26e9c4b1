//! Opening a service's database by URL, migrated, waiting at start-up for a PostgreSQL
//! server that is not reachable yet.

use sqlx::migrate::Migrator;
use sqlx::{Postgres, Sqlite};
use stockcast_runtime::start::wait_for;
use stockcast_runtime::{Shutdown, StartError};

use crate::classify::classify;
use crate::pool::SchemaPool;
use crate::postgres::{SetupError, migrate, schema_pool};
use crate::settings::{Backend, DatabaseSettings};
use crate::sqlite::sqlite_pool;

/// A service's migrations, one set per dialect.
#[derive(Debug, Clone, Copy)]
pub struct Migrations<'a> {
    /// Applied in the service's PostgreSQL schema.
    pub postgres: &'a Migrator,
    /// Applied to the SQLite database.
    pub sqlite: &'a Migrator,
}

/// An open, migrated database: a service's store is built `From` either pool.
#[derive(Debug, Clone)]
pub enum Database {
    /// PostgreSQL, every connection on the service's schema.
    Postgres(SchemaPool<Postgres>),
    /// SQLite.
    Sqlite(SchemaPool<Sqlite>),
}

/// Opens the database `settings.url` names and applies `migrations`. A PostgreSQL server that
/// is not reachable yet is waited for (containers start in any order) until the start-up
/// attempts run out or `shutdown` fires. `dependency` names it in errors and logs.
pub async fn open(
    dependency: &'static str,
    settings: &DatabaseSettings,
    migrations: Migrations<'_>,
    shutdown: &Shutdown,
) -> Result<Database, StartError> {
    let Some(backend) = settings.backend() else {
        return Err(StartError::config(format!(
            "{dependency}: the url must start with sqlite:, postgres:// or postgresql://"
        )));
    };
    tracing::info!(dependency, backend = backend.name(), schema = %settings.schema, "opening the database");
    match backend {
        Backend::Sqlite => {
            let pool = sqlite_pool(settings)
                .await
                .map_err(|e| StartError::dependency(dependency, e))?;
            migrations
                .sqlite
                .run(&pool)
                .await
                .map_err(|e| StartError::dependency(dependency, format!("migrations: {e}")))?;
            Ok(Database::Sqlite(SchemaPool::new(pool, "")))
        }
        Backend::Postgres => {
            let pool = schema_pool(
                settings.url.expose(),
                &settings.schema,
                settings.max_connections,
                settings.acquire_timeout(),
            )
            .map_err(|e| StartError::dependency(dependency, e))?;
            wait_for(dependency, shutdown, is_transient, || {
                migrate(&pool, &settings.schema, migrations.postgres)
            })
            .await?;
            Ok(Database::Postgres(SchemaPool::new(pool, &settings.schema)))
        }
    }
}

/// Whether a set-up error may go away by itself (the server is starting).
pub fn is_transient(error: &SetupError) -> bool {
    match error {
        SetupError::Sql(e) => classify(e).is_transient(),
        SetupError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => classify(e).is_transient(),
        _ => false,
    }
}
