//! PostgreSQL: every service owns one schema. Its pool sets `search_path` to that schema on
//! every connection, migrations create the schema first, and tests drop it afterwards.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

/// Whether `schema` is a plain lower-case identifier (it is interpolated into SQL).
pub fn valid_schema(schema: &str) -> bool {
    let mut bytes = schema.bytes();
    schema.len() <= 63
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Why a schema could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// The schema name is not a plain lower-case identifier.
    InvalidSchema(String),
    /// The database refused or could not be reached.
    Sql(sqlx::Error),
    /// A migration failed.
    Migrate(sqlx::migrate::MigrateError),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::InvalidSchema(schema) => {
                write!(f, "schema {schema:?} must be a lower-case identifier")
            }
            SetupError::Sql(e) => write!(f, "{e}"),
            SetupError::Migrate(e) => write!(f, "migrations: {e}"),
        }
    }
}

impl std::error::Error for SetupError {}

/// A pool that connects lazily to `url` (no I/O here), every connection on `schema`.
pub fn schema_pool(
    url: &str,
    schema: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, SetupError> {
    if !valid_schema(schema) {
        return Err(SetupError::InvalidSchema(schema.to_owned()));
    }
    let search_path = format!("SET search_path TO \"{schema}\"");
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _| {
            let statement = search_path.clone();
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .connect_lazy(url)
        .map_err(SetupError::Sql)
}

/// Creates `schema` if missing and applies `migrator` in it.
pub async fn migrate(pool: &PgPool, schema: &str, migrator: &Migrator) -> Result<(), SetupError> {
    if !valid_schema(schema) {
        return Err(SetupError::InvalidSchema(schema.to_owned()));
    }
    let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(pool)
        .await
        .map_err(SetupError::Sql)?;
    migrator.run(pool).await.map_err(SetupError::Migrate)
}

/// Drops `schema` with everything in it (tests and benchmarks).
pub async fn drop_schema(pool: &PgPool, schema: &str) -> Result<(), SetupError> {
    if !valid_schema(schema) {
        return Err(SetupError::InvalidSchema(schema.to_owned()));
    }
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(pool)
        .await
        .map_err(SetupError::Sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::valid_schema;

    #[test]
    fn schemas_are_plain_lower_case_identifiers() {
        for ok in ["ingestion", "feature_store", "_x1", "fs_0a1b"] {
            assert!(valid_schema(ok), "{ok}");
        }
        for bad in ["", "1abc", "Upper", "a-b", "a\"b", "a b", &"x".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
