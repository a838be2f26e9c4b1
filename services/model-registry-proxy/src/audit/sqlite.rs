//! The embedded audit store: one SQLite file (or memory), the same tables as PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use super::{
    AuditEntry, AuditError, AuditFilter, AuditStore, Change, ChangeKind, KnownAliases,
    entry_from_row,
};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The audit log in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteAudit {
    pool: SqlitePool,
}

impl SqliteAudit {
    /// Opens (creating if missing) the database at `url` (`sqlite::memory:` or
    /// `sqlite://path/to/file.db`) and applies migrations.
    pub async fn open(url: &str) -> Result<Self, AuditError> {
        let settings = stockcast_sql::DatabaseSettings {
            url: stockcast_runtime::Secret::new(url),
            ..Default::default()
        };
        let pool = stockcast_sql::sqlite_pool(&settings).await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| AuditError::Database(format!("migrations: {e}")))?;
        Ok(Self { pool })
    }

    /// An audit store on `pool`, already migrated (see [`super::open`]).
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// The pool (tests check that rows cannot be changed).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

const COLUMNS: &str = "id, occurred_at_ms, actor, kind, model_name, alias, from_version, \
     to_version, reason, origin";

#[async_trait]
impl AuditStore for SqliteAudit {
    async fn ping(&self) -> Result<(), AuditError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn record(&self, change: &Change) -> Result<AuditEntry, AuditError> {
        let mut tx = self.pool.begin().await?;
        let insert = format!(
            "INSERT INTO audit_log (occurred_at_ms, actor, kind, model_name, alias, \
             from_version, to_version, reason, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(change.occurred_at_ms)
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
                    "INSERT INTO known_aliases (model_name, alias, version) VALUES (?, ?, ?) \
                     ON CONFLICT (model_name, alias) DO UPDATE SET version = excluded.version",
                )
                .bind(&change.model)
                .bind(&change.alias)
                .bind(change.to_version)
                .execute(&mut *tx)
                .await?;
            }
            ChangeKind::AliasDeleted => {
                sqlx::query("DELETE FROM known_aliases WHERE model_name = ? AND alias = ?")
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
             WHERE (?1 IS NULL OR model_name = ?1) \
               AND (?2 IS NULL OR alias = ?2) \
               AND (?3 IS NULL OR actor = ?3) \
               AND (?4 IS NULL OR occurred_at_ms >= ?4) \
               AND (?5 IS NULL OR occurred_at_ms < ?5) \
               AND (?6 IS NULL OR id < ?6) \
             ORDER BY id DESC LIMIT ?7"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(select))
            .bind(filter.model.as_deref())
            .bind(filter.alias.as_deref())
            .bind(filter.actor.as_deref())
            .bind(filter.start_ms)
            .bind(filter.end_ms)
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
             WHERE id > (SELECT audit_id FROM publish_cursor) ORDER BY id LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(select))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn mark_published(&self, id: i64) -> Result<(), AuditError> {
        sqlx::query("UPDATE publish_cursor SET audit_id = ?1 WHERE audit_id < ?1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_in_memory_audit_keeps_one_open_connection() {
        let audit = SqliteAudit::open("sqlite::memory:").await.unwrap();
        // The one connection is the one the migrations ran on; it is still open.
        assert_eq!(audit.pool().size(), 1);
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(audit.pool())
            .await
            .unwrap();
        assert_eq!(count, 0);
    }
}
