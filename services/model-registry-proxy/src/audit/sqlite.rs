//! The embedded audit store: one SQLite file (or memory), the same tables as PostgreSQL with
//! the time stored as milliseconds.

use sqlx::Sqlite;

use super::AuditError;
use super::sql::{AuditDialect, AuditStatements, SqlAudit};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The audit log in SQLite.
pub type SqliteAudit = SqlAudit<Sqlite>;

impl AuditDialect for Sqlite {
    const STATEMENTS: AuditStatements = AuditStatements {
        insert: "INSERT INTO audit_log (occurred_at_ms, actor, kind, model_name, alias, \
                 from_version, to_version, reason, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 RETURNING id, occurred_at_ms, actor, kind, model_name, alias, from_version, \
                 to_version, reason, origin",
        set_alias: "INSERT INTO known_aliases (model_name, alias, version) VALUES (?, ?, ?) \
                    ON CONFLICT (model_name, alias) DO UPDATE SET version = excluded.version",
        delete_alias: "DELETE FROM known_aliases WHERE model_name = ? AND alias = ?",
        list: "SELECT id, occurred_at_ms, actor, kind, model_name, alias, from_version, \
               to_version, reason, origin FROM audit_log \
               WHERE (?1 IS NULL OR model_name = ?1) \
                 AND (?2 IS NULL OR alias = ?2) \
                 AND (?3 IS NULL OR actor = ?3) \
                 AND (?4 IS NULL OR occurred_at_ms >= ?4) \
                 AND (?5 IS NULL OR occurred_at_ms < ?5) \
                 AND (?6 IS NULL OR id < ?6) \
               ORDER BY id DESC LIMIT ?7",
        unpublished: "SELECT id, occurred_at_ms, actor, kind, model_name, alias, from_version, \
                      to_version, reason, origin FROM audit_log \
                      WHERE id > (SELECT audit_id FROM publish_cursor) ORDER BY id LIMIT ?",
        mark_published: "UPDATE publish_cursor SET audit_id = ?1 WHERE audit_id < ?1",
    };
}

impl SqlAudit<Sqlite> {
    /// Opens (creating if missing) the database at `url` (`sqlite::memory:` or
    /// `sqlite://path/to/file.db`) and applies migrations.
    pub async fn open(url: &str) -> Result<Self, AuditError> {
        Ok(stockcast_sql::SchemaPool::open_sqlite(url, &MIGRATOR)
            .await?
            .into())
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
