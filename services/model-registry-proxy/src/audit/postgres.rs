//! The audit store in the service's own PostgreSQL schema: its statements (the time is
//! stored as `timestamptz` and answered as milliseconds) and its setup.

use sqlx::Postgres;

use super::AuditError;
use super::sql::{AuditDialect, AuditStatements, SqlAudit};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The audit log in one PostgreSQL schema.
pub type PostgresAudit = SqlAudit<Postgres>;

pub use stockcast_sql::valid_schema;

impl AuditDialect for Postgres {
    const STATEMENTS: AuditStatements = AuditStatements {
        insert: "INSERT INTO audit_log (occurred_at, actor, kind, model_name, alias, \
                 from_version, to_version, reason, origin) \
                 VALUES (to_timestamp($1::bigint::float8 / 1000.0), $2, $3, $4, $5, $6, $7, \
                 $8, $9) \
                 RETURNING id, (extract(epoch FROM occurred_at) * 1000)::bigint AS \
                 occurred_at_ms, actor, kind, model_name, alias, from_version, to_version, \
                 reason, origin",
        set_alias: "INSERT INTO known_aliases (model_name, alias, version) VALUES ($1, $2, $3) \
                    ON CONFLICT (model_name, alias) DO UPDATE SET version = EXCLUDED.version",
        delete_alias: "DELETE FROM known_aliases WHERE model_name = $1 AND alias = $2",
        list: "SELECT id, (extract(epoch FROM occurred_at) * 1000)::bigint AS occurred_at_ms, \
               actor, kind, model_name, alias, from_version, to_version, reason, origin \
               FROM audit_log \
               WHERE ($1::text IS NULL OR model_name = $1) \
                 AND ($2::text IS NULL OR alias = $2) \
                 AND ($3::text IS NULL OR actor = $3) \
                 AND ($4::bigint IS NULL \
                      OR occurred_at >= to_timestamp($4::bigint::float8 / 1000.0)) \
                 AND ($5::bigint IS NULL \
                      OR occurred_at < to_timestamp($5::bigint::float8 / 1000.0)) \
                 AND ($6::bigint IS NULL OR id < $6) \
               ORDER BY id DESC LIMIT $7",
        unpublished: "SELECT id, (extract(epoch FROM occurred_at) * 1000)::bigint AS \
                      occurred_at_ms, actor, kind, model_name, alias, from_version, to_version, \
                      reason, origin FROM audit_log \
                      WHERE id > (SELECT audit_id FROM publish_cursor) ORDER BY id LIMIT $1",
        mark_published: "UPDATE publish_cursor SET audit_id = $1 WHERE audit_id < $1",
    };
}

impl SqlAudit<Postgres> {
    /// Creates the schema and applies migrations.
    pub async fn migrate(&self) -> Result<(), AuditError> {
        Ok(self.db.migrate(&MIGRATOR).await?)
    }
}
