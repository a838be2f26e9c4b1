//! Where ingestion keeps bars, corrections and backfill jobs: PostgreSQL in production,
//! SQLite embedded. Both pass one conformance suite (`tests/it/store`). The Rust around the
//! SQL is shared: rows are read into the records of [`rows`] and mapped to the domain's
//! types once; only the statements differ per dialect.

mod postgres;
pub use self::postgres::valid_schema;
mod rows;
mod shared;
mod sqlite;

use std::collections::HashSet;

use async_trait::async_trait;
use stockcast_market::sources::BackfillSpec;
use stockcast_market::{Bar, Interval};

pub use self::postgres::PostgresStore;
pub use self::shared::{Dialect, JobStatements, SqlStore, Statements};
pub use self::sqlite::SqliteStore;
pub use crate::coverage::Coverage;
pub use crate::ingest::{Counts, Outcome, StoredBar};
pub use crate::jobs::{JobFilter, JobRecord, JobState, JobUpdate};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable or timed out: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was violated.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Stored data cannot be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database: {0}")]
    Database(String),
}

impl From<stockcast_sql::SetupError> for StoreError {
    fn from(error: stockcast_sql::SetupError) -> Self {
        match error {
            stockcast_sql::SetupError::Sql(e) => e.into(),
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use stockcast_sql::SqlErrorKind;
        let message = match &error {
            sqlx::Error::Database(db) => db.message().to_owned(),
            other => other.to_string(),
        };
        match stockcast_sql::classify(&error) {
            SqlErrorKind::Unavailable => StoreError::Unavailable(message),
            SqlErrorKind::AlreadyExists => StoreError::AlreadyExists(message),
            SqlErrorKind::Corrupt => StoreError::Corrupt(error.to_string()),
            SqlErrorKind::Refused => StoreError::Database(error.to_string()),
        }
    }
}

/// Opens the store `settings.url` names, migrated; a PostgreSQL server that is not reachable
/// yet is waited for until the start-up attempts run out or `shutdown` fires.
pub async fn open(
    settings: &stockcast_sql::DatabaseSettings,
    shutdown: &stockcast_runtime::Shutdown,
) -> Result<std::sync::Arc<dyn BarStore>, stockcast_runtime::StartError> {
    let migrations = stockcast_sql::Migrations {
        postgres: &postgres::MIGRATOR,
        sqlite: &sqlite::MIGRATOR,
    };
    Ok(
        match stockcast_sql::open("database", settings, migrations, shutdown).await? {
            stockcast_sql::Database::Postgres(db) => std::sync::Arc::new(PostgresStore::from(db)),
            stockcast_sql::Database::Sqlite(db) => std::sync::Arc::new(SqliteStore::from(db)),
        },
    )
}

/// Ingestion's storage.
#[async_trait]
pub trait BarStore: Send + Sync + std::fmt::Debug {
    /// Opens a transaction for a batch of bars (and the chunk they complete).
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stored bars of `symbol`/`interval` with `start <= ts < end`, oldest first.
    async fn bars(
        &self,
        symbol: &str,
        interval: Interval,
        start: i64,
        end: i64,
    ) -> Result<Vec<StoredBar>, StoreError>;

    /// Coverage of every (symbol, interval) matching the filters, ordered by symbol then
    /// interval, starting after `after` (paging), at most `limit`.
    async fn coverage(
        &self,
        interval: Option<Interval>,
        symbol_prefix: &str,
        after: Option<(String, Interval)>,
        limit: i64,
    ) -> Result<Vec<Coverage>, StoreError>;

    /// Open times of every stored bar of `symbol`/`interval`, ascending.
    async fn timestamps(&self, symbol: &str, interval: Interval) -> Result<Vec<i64>, StoreError>;

    /// Creates a pending job; with a `request_id` already used, returns that job instead.
    async fn create_job(
        &self,
        request_id: Option<&str>,
        spec: &BackfillSpec,
    ) -> Result<JobRecord, StoreError>;

    /// One job.
    async fn job(&self, id: uuid::Uuid) -> Result<Option<JobRecord>, StoreError>;

    /// Jobs, newest first.
    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;

    /// Keys of the chunks of `id` already done.
    async fn done_chunks(&self, id: uuid::Uuid) -> Result<HashSet<String>, StoreError>;

    /// Applies `update` to job `id`; whether it applied (the job exists and, with
    /// `update.only_from`, was in that state).
    async fn update_job(&self, id: uuid::Uuid, update: &JobUpdate) -> Result<bool, StoreError>;
}

/// A transaction over a store.
#[async_trait]
pub trait StoreTx: Send {
    /// Upserts `bars` from `source`; one outcome per bar, in order. Bars repeated within
    /// `bars` are applied in order.
    async fn upsert(&mut self, bars: &[Bar], source: &str) -> Result<Vec<Outcome>, StoreError>;

    /// Records chunk `key` of job `job` as done with `counts`, adding them to the job.
    async fn chunk_done(
        &mut self,
        job: uuid::Uuid,
        key: &str,
        counts: &Counts,
    ) -> Result<(), StoreError>;

    /// Commits; dropping the transaction instead rolls it back.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// Splits `bars` into rounds in which every (symbol, interval, ts) occurs once, keeping the
/// input order of repeats; returns for each round the input indices it holds.
pub(crate) fn rounds(bars: &[Bar]) -> Vec<Vec<usize>> {
    let mut seen: std::collections::HashMap<(&str, Interval, i64), usize> =
        std::collections::HashMap::with_capacity(bars.len());
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (index, bar) in bars.iter().enumerate() {
        let round = seen
            .entry((bar.symbol.as_str(), bar.interval, bar.ts))
            .and_modify(|r| *r += 1)
            .or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(index);
    }
    rounds
}
