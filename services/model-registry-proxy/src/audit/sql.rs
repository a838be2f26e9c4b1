//! The audit store on SQL, written once for both dialects: [`SqlAudit`] implements
//! [`AuditStore`] over a pool of any [`AuditDialect`], which supplies only the SQL text
//! ([`AuditStatements`]). Times are bound and read as milliseconds since epoch in both.

use async_trait::async_trait;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};
use stockcast_sql::SchemaPool;

use super::{AuditEntry, AuditError, AuditFilter, AuditStore, Change, ChangeKind, KnownAliases};

/// A database the audit store runs on.
pub trait AuditDialect: Database {
    /// Its statements.
    const STATEMENTS: AuditStatements;
}

/// One dialect's text of the audit statements. `$n` (or `?n`) are the parameters; the
/// statements that answer entries answer the columns of [`EntryRow`].
#[derive(Debug, Clone, Copy)]
pub struct AuditStatements {
    /// Appends an entry: `occurred_at_ms, actor, kind, model_name, alias, from_version,
    /// to_version, reason, origin` → the [`EntryRow`] stored.
    pub insert: &'static str,
    /// Sets a known alias: `model_name, alias, version`.
    pub set_alias: &'static str,
    /// Forgets a known alias: `model_name, alias`.
    pub delete_alias: &'static str,
    /// Entries newest first: `model, alias, actor, start_ms, end_ms, before_id` (each may be
    /// NULL), `limit` → [`EntryRow`]s.
    pub list: &'static str,
    /// Entries after the publish cursor, oldest first: `limit` → [`EntryRow`]s.
    pub unpublished: &'static str,
    /// Moves the publish cursor forward to `id`.
    pub mark_published: &'static str,
}

/// An audit entry as both dialects answer it (columns named as in the migrations, the time
/// as `occurred_at_ms`).
#[derive(Debug, FromRow)]
pub struct EntryRow {
    id: i64,
    occurred_at_ms: i64,
    actor: String,
    kind: String,
    model_name: String,
    alias: String,
    from_version: i64,
    to_version: i64,
    reason: String,
    origin: String,
}

impl TryFrom<EntryRow> for AuditEntry {
    type Error = AuditError;

    fn try_from(row: EntryRow) -> Result<Self, AuditError> {
        Ok(AuditEntry {
            id: row.id,
            change: Change {
                occurred_at_ms: row.occurred_at_ms,
                actor: row.actor,
                kind: super::ChangeKind::parse(&row.kind)?,
                model: row.model_name,
                alias: row.alias,
                from_version: row.from_version,
                to_version: row.to_version,
                reason: row.reason,
                origin: super::Origin::parse(&row.origin)?,
            },
        })
    }
}

/// The audit log in one database: PostgreSQL ([`super::PostgresAudit`], in the service's
/// schema) or SQLite ([`super::SqliteAudit`]).
#[derive(Debug)]
pub struct SqlAudit<DB: Database> {
    pub(super) db: SchemaPool<DB>,
}

/// An audit store on a pool already migrated (see `open`), e.g. one of
/// [`SchemaPool::connect_lazy`] (then migrate it).
impl<DB: Database> From<SchemaPool<DB>> for SqlAudit<DB> {
    fn from(db: SchemaPool<DB>) -> Self {
        Self { db }
    }
}

impl<DB: Database> SqlAudit<DB> {
    /// The pool (tests check that rows cannot be changed).
    pub fn pool(&self) -> &Pool<DB> {
        self.db.pool()
    }
}

fn entries(rows: Vec<EntryRow>) -> Result<Vec<AuditEntry>, AuditError> {
    rows.into_iter().map(AuditEntry::try_from).collect()
}

#[async_trait]
impl<DB> AuditStore for SqlAudit<DB>
where
    DB: AuditDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    EntryRow: for<'r> FromRow<'r, DB::Row>,
    (String, String, i64): for<'r> FromRow<'r, DB::Row>,
{
    async fn ping(&self) -> Result<(), AuditError> {
        sqlx::query("SELECT 1").execute(self.db.pool()).await?;
        Ok(())
    }

    async fn record(&self, change: &Change) -> Result<AuditEntry, AuditError> {
        let sql = &DB::STATEMENTS;
        let mut tx = self.db.pool().begin().await?;
        let row: EntryRow = sqlx::query_as(sql.insert)
            .bind(change.occurred_at_ms)
            .bind(change.actor.as_str())
            .bind(change.kind.as_str())
            .bind(change.model.as_str())
            .bind(change.alias.as_str())
            .bind(change.from_version)
            .bind(change.to_version)
            .bind(change.reason.as_str())
            .bind(change.origin.as_str())
            .fetch_one(&mut *tx)
            .await?;
        match change.kind {
            ChangeKind::AliasSet => {
                sqlx::query(sql.set_alias)
                    .bind(change.model.as_str())
                    .bind(change.alias.as_str())
                    .bind(change.to_version)
                    .execute(&mut *tx)
                    .await?;
            }
            ChangeKind::AliasDeleted => {
                sqlx::query(sql.delete_alias)
                    .bind(change.model.as_str())
                    .bind(change.alias.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        row.try_into()
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError> {
        let rows: Vec<EntryRow> = sqlx::query_as(DB::STATEMENTS.list)
            .bind(filter.model.as_deref())
            .bind(filter.alias.as_deref())
            .bind(filter.actor.as_deref())
            .bind(filter.start_ms)
            .bind(filter.end_ms)
            .bind(filter.before_id)
            .bind(filter.limit)
            .fetch_all(self.db.pool())
            .await?;
        entries(rows)
    }

    async fn known_aliases(&self) -> Result<KnownAliases, AuditError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT model_name, alias, version FROM known_aliases")
                .fetch_all(self.db.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|(model, alias, version)| ((model, alias), version))
            .collect())
    }

    async fn unpublished(&self, limit: i64) -> Result<Vec<AuditEntry>, AuditError> {
        let rows: Vec<EntryRow> = sqlx::query_as(DB::STATEMENTS.unpublished)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        entries(rows)
    }

    async fn mark_published(&self, id: i64) -> Result<(), AuditError> {
        sqlx::query(DB::STATEMENTS.mark_published)
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}
