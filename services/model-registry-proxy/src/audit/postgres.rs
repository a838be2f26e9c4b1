//! The audit store in the service's own PostgreSQL schema.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgPool;

use super::{
    AuditEntry, AuditError, AuditFilter, AuditStore, Change, ChangeKind, KnownAliases,
    entry_from_row,
};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The audit log in one PostgreSQL schema.
#[derive(Debug, Clone)]
pub struct PostgresAudit {
    pool: PgPool,
    schema: String,
}

pub use stockcast_sql::valid_schema;

impl PostgresAudit {
    /// Connects lazily to `url`, every connection on `schema`.
    pub fn connect_lazy(
        url: &str,
        schema: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, AuditError> {
        let pool = stockcast_sql::schema_pool(url, schema, max_connections, acquire_timeout)?;
        Ok(Self {
            pool,
            schema: schema.to_owned(),
        })
    }

    /// An audit store on `pool`, whose connections are on `schema` (see [`super::open`]).
    pub fn from_pool(pool: PgPool, schema: &str) -> Self {
        Self {
            pool,
            schema: schema.to_owned(),
        }
    }

    /// Creates the schema and applies migrations.
    pub async fn migrate(&self) -> Result<(), AuditError> {
        Ok(stockcast_sql::migrate(&self.pool, &self.schema, &MIGRATOR).await?)
    }

    /// Drops the schema with everything in it (tests).
    pub async fn drop_schema(&self) -> Result<(), AuditError> {
        Ok(stockcast_sql::drop_schema(&self.pool, &self.schema).await?)
    }

    /// The pool (tests check that rows cannot be changed).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

const COLUMNS: &str = "id, (extract(epoch FROM occurred_at) * 1000)::bigint AS occurred_at_ms, \
     actor, kind, model_name, alias, from_version, to_version, reason, origin";

#[async_trait]
impl AuditStore for PostgresAudit {
    async fn ping(&self) -> Result<(), AuditError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn record(&self, change: &Change) -> Result<AuditEntry, AuditError> {
        let mut tx = self.pool.begin().await?;
        let insert = format!(
            "INSERT INTO audit_log (occurred_at, actor, kind, model_name, alias, from_version, \
             to_version, reason, origin) \
             VALUES (to_timestamp($1::float8 / 1000.0), $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(change.occurred_at_ms as f64)
            .bind(&change.actor)
            .bind(change.kind.as_str())
            .bind(&change.model)
            .bind(&change.alias)
            .bind(change.from_version)
            .bind(change.to_version)
            .bind(&change.reason)
            .bind(change.origin.as_str())
            .fetch_one(&mut *tx)
            .await?;
        match change.kind {
            ChangeKind::AliasSet => {
                sqlx::query(
                    "INSERT INTO known_aliases (model_name, alias, version) VALUES ($1, $2, $3) \
                     ON CONFLICT (model_name, alias) DO UPDATE SET version = EXCLUDED.version",
                )
                .bind(&change.model)
                .bind(&change.alias)
                .bind(change.to_version)
                .execute(&mut *tx)
                .await?;
            }
            ChangeKind::AliasDeleted => {
                sqlx::query("DELETE FROM known_aliases WHERE model_name = $1 AND alias = $2")
                    .bind(&change.model)
                    .bind(&change.alias)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        entry_from_row(&row)
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError> {
        let select = format!(
            "SELECT {COLUMNS} FROM audit_log \
             WHERE ($1::text IS NULL OR model_name = $1) \
               AND ($2::text IS NULL OR alias = $2) \
               AND ($3::text IS NULL OR actor = $3) \
               AND ($4::float8 IS NULL OR occurred_at >= to_timestamp($4 / 1000.0)) \
               AND ($5::float8 IS NULL OR occurred_at < to_timestamp($5 / 1000.0)) \
               AND ($6::bigint IS NULL OR id < $6) \
             ORDER BY id DESC LIMIT $7"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(select))
            .bind(filter.model.as_deref())
            .bind(filter.alias.as_deref())
            .bind(filter.actor.as_deref())
            .bind(filter.start_ms.map(|ms| ms as f64))
            .bind(filter.end_ms.map(|ms| ms as f64))
            .bind(filter.before_id)
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn known_aliases(&self) -> Result<KnownAliases, AuditError> {
        let rows = sqlx::query("SELECT model_name, alias, version FROM known_aliases")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    (row.try_get("model_name")?, row.try_get("alias")?),
                    row.try_get("version")?,
                ))
            })
            .collect()
    }

    async fn unpublished(&self, limit: i64) -> Result<Vec<AuditEntry>, AuditError> {
        let select = format!(
            "SELECT {COLUMNS} FROM audit_log \
             WHERE id > (SELECT audit_id FROM publish_cursor) ORDER BY id LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(select))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn mark_published(&self, id: i64) -> Result<(), AuditError> {
        sqlx::query("UPDATE publish_cursor SET audit_id = $1 WHERE audit_id < $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
