//! The append-only audit log of alias changes, and the aliases as last recorded: PostgreSQL
//! (the service's own schema) in production, SQLite embedded. Both pass one conformance
//! suite (`tests/support/audit_cases.rs`). The Rust is written once ([`SqlAudit`]); each
//! dialect supplies its SQL text.

mod postgres;
mod sql;
mod sqlite;

use std::collections::BTreeMap;

use async_trait::async_trait;

pub use self::postgres::{PostgresAudit, valid_schema};
pub use self::sql::{AuditDialect, AuditStatements, SqlAudit};
pub use self::sqlite::SqliteAudit;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// An alias was created or moved.
    AliasSet,
    /// An alias was deleted.
    AliasDeleted,
}

impl ChangeKind {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::AliasSet => "alias_set",
            ChangeKind::AliasDeleted => "alias_deleted",
        }
    }

    fn parse(name: &str) -> Result<Self, AuditError> {
        match name {
            "alias_set" => Ok(ChangeKind::AliasSet),
            "alias_deleted" => Ok(ChangeKind::AliasDeleted),
            other => Err(AuditError::Corrupt(format!("change kind {other:?}"))),
        }
    }
}

/// How the proxy learned of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Made through the proxy's API.
    Api,
    /// Detected by polling the registry.
    Poll,
    /// Reported by an MLflow registry webhook (and read back from the registry).
    Webhook,
}

impl Origin {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Api => "api",
            Origin::Poll => "poll",
            Origin::Webhook => "webhook",
        }
    }

    fn parse(name: &str) -> Result<Self, AuditError> {
        match name {
            "api" => Ok(Origin::Api),
            "poll" => Ok(Origin::Poll),
            "webhook" => Ok(Origin::Webhook),
            other => Err(AuditError::Corrupt(format!("origin {other:?}"))),
        }
    }
}

/// An alias change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// When it happened or was detected, milliseconds since epoch, UTC.
    pub occurred_at_ms: i64,
    /// Who: an identity, or `mlflow` for detected changes.
    pub actor: String,
    /// Set or deleted.
    pub kind: ChangeKind,
    /// Model name.
    pub model: String,
    /// Alias.
    pub alias: String,
    /// Version before; 0 if the alias did not exist.
    pub from_version: i64,
    /// Version after; 0 if deleted.
    pub to_version: i64,
    /// Why; empty for detected changes.
    pub reason: String,
    /// How the proxy learned of it.
    pub origin: Origin,
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing with time.
    pub id: i64,
    /// The change.
    pub change: Change,
}

/// Which entries to list (filters combine with AND), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this model.
    pub model: Option<String>,
    /// Only this alias.
    pub alias: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only entries at or after, milliseconds since epoch.
    pub start_ms: Option<i64>,
    /// Only entries before, milliseconds since epoch.
    pub end_ms: Option<i64>,
    /// Only entries with a smaller id (paging).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// Aliases as last recorded: (model, alias) → version.
pub type KnownAliases = BTreeMap<(String, String), i64>;

/// Why an audit-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database is unreachable or timed out.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Stored data cannot be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database: {0}")]
    Database(String),
}

impl From<stockcast_sql::SetupError> for AuditError {
    fn from(error: stockcast_sql::SetupError) -> Self {
        match error {
            stockcast_sql::SetupError::Sql(e) => e.into(),
            other => AuditError::Database(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for AuditError {
    fn from(error: sqlx::Error) -> Self {
        use stockcast_sql::SqlErrorKind;
        match stockcast_sql::classify(&error) {
            SqlErrorKind::Unavailable => AuditError::Unavailable(error.to_string()),
            SqlErrorKind::Corrupt => AuditError::Corrupt(error.to_string()),
            SqlErrorKind::AlreadyExists | SqlErrorKind::Refused => {
                AuditError::Database(error.to_string())
            }
        }
    }
}

/// Opens the audit store `settings.url` names, migrated; a PostgreSQL server that is not
/// reachable yet is waited for until the start-up attempts run out or `shutdown` fires.
pub async fn open(
    settings: &stockcast_sql::DatabaseSettings,
    shutdown: &stockcast_runtime::Shutdown,
) -> Result<std::sync::Arc<dyn AuditStore>, stockcast_runtime::StartError> {
    let migrations = stockcast_sql::Migrations {
        postgres: &postgres::MIGRATOR,
        sqlite: &sqlite::MIGRATOR,
    };
    Ok(
        match stockcast_sql::open("database", settings, migrations, shutdown).await? {
            stockcast_sql::Database::Postgres(db) => std::sync::Arc::new(PostgresAudit::from(db)),
            stockcast_sql::Database::Sqlite(db) => std::sync::Arc::new(SqliteAudit::from(db)),
        },
    )
}

/// The audit store.
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), AuditError>;

    /// Appends `change` and updates the known aliases, in one transaction.
    async fn record(&self, change: &Change) -> Result<AuditEntry, AuditError>;

    /// Entries matching `filter`, newest first.
    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError>;

    /// The aliases as last recorded.
    async fn known_aliases(&self) -> Result<KnownAliases, AuditError>;

    /// Entries not yet published as model events, oldest first, at most `limit`.
    async fn unpublished(&self, limit: i64) -> Result<Vec<AuditEntry>, AuditError>;

    /// Records that every entry up to `id` has been published.
    async fn mark_published(&self, id: i64) -> Result<(), AuditError>;
}
