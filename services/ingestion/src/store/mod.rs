//! Where ingestion keeps bars, corrections and backfill jobs: PostgreSQL in production,
//! SQLite embedded. Both pass one conformance suite (`tests/store.rs`).

mod postgres;
pub use self::postgres::valid_schema;
mod sqlite;

use std::collections::HashSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use stockcast_market::sources::BackfillSpec;
use stockcast_market::{Bar, Interval};

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

/// What storing one bar did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A bar not seen before.
    Inserted,
    /// The same bar with the same values: nothing changed.
    Unchanged,
    /// The same bar with other values: stored as a new revision, the old values recorded.
    Corrected {
        /// The values it replaced.
        previous: Bar,
        /// The new revision, ≥ 1.
        revision: i32,
    },
}

/// Counts of what a batch or a job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// New bars.
    pub accepted: i64,
    /// Bars refused by validation (and sent to the dead-letter topic).
    pub rejected: i64,
    /// Bars already stored with the same values.
    pub duplicate: i64,
    /// Bars stored as corrections.
    pub corrected: i64,
}

impl Counts {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Counts) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.duplicate += other.duplicate;
        self.corrected += other.corrected;
    }

    /// Counts one outcome.
    pub fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Inserted => self.accepted += 1,
            Outcome::Unchanged => self.duplicate += 1,
            Outcome::Corrected { .. } => self.corrected += 1,
        }
    }
}

/// A stored bar with its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBar {
    /// The bar.
    pub bar: Bar,
    /// Source it came from.
    pub source: String,
    /// 0 for the first version, n after n corrections.
    pub revision: i32,
}

/// Lifecycle of a backfill job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, not started.
    Pending,
    /// Being worked on (or interrupted, to be resumed at start).
    Running,
    /// Every chunk done.
    Succeeded,
    /// Stopped on an error that retrying will not fix.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobState {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Result<Self, StoreError> {
        Ok(match name {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => return Err(StoreError::Corrupt(format!("job state {other:?}"))),
        })
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A backfill job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Job id.
    pub id: uuid::Uuid,
    /// Client idempotency key.
    pub request_id: Option<String>,
    /// What it loads.
    pub spec: BackfillSpec,
    /// Where it is.
    pub state: JobState,
    /// Chunks in the plan (0 until planned).
    pub chunks_total: i64,
    /// Chunks done.
    pub chunks_done: i64,
    /// What its chunks did.
    pub counts: Counts,
    /// Seconds since epoch, UTC.
    pub created_at: i64,
    /// Seconds since epoch, UTC.
    pub started_at: Option<i64>,
    /// Seconds since epoch, UTC.
    pub finished_at: Option<i64>,
    /// Seconds since epoch, UTC.
    pub updated_at: i64,
    /// Times it was resumed after an interruption.
    pub resumes: i32,
    /// Last error, empty if none.
    pub error: String,
}

/// A change to a job's bookkeeping.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobUpdate {
    /// New state.
    pub state: Option<JobState>,
    /// Plan size.
    pub chunks_total: Option<i64>,
    /// Sets `started_at` to now if unset.
    pub started: bool,
    /// Sets `finished_at` to now.
    pub finished: bool,
    /// Adds one to `resumes`.
    pub resumed: bool,
    /// New error text.
    pub error: Option<String>,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs loading this symbol.
    pub symbol: Option<String>,
    /// Jobs created before this job (for paging, newest first; ids are UUIDv7, time-ordered).
    pub before: Option<uuid::Uuid>,
    /// At most this many.
    pub limit: i64,
}

/// First and last bar and count of a (symbol, interval).
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Ticker.
    pub symbol: String,
    /// Bar length.
    pub interval: Interval,
    /// First bar open time, seconds since epoch UTC.
    pub first_ts: i64,
    /// Last bar open time, seconds since epoch UTC.
    pub last_ts: i64,
    /// Bars stored.
    pub bar_count: i64,
}

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
            stockcast_sql::Database::Postgres(pool) => {
                std::sync::Arc::new(PostgresStore::from_pool(pool, &settings.schema))
            }
            stockcast_sql::Database::Sqlite(pool) => {
                std::sync::Arc::new(SqliteStore::from_pool(pool))
            }
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

    /// Applies `update` to job `id`.
    async fn update_job(&self, id: uuid::Uuid, update: &JobUpdate) -> Result<(), StoreError>;
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

/// The jobs of `rows` that read back; a row that does not (written by an older version, or
/// damaged) is logged and skipped, so that one bad row cannot break listing or start-up.
/// Reading it by id still reports it as corrupt.
pub(crate) fn readable_jobs<R>(
    rows: &[R],
    read: impl Fn(&R) -> Result<JobRecord, StoreError>,
) -> Vec<JobRecord> {
    rows.iter()
        .filter_map(|row| match read(row) {
            Ok(job) => Some(job),
            Err(error) => {
                tracing::error!(%error, "backfill job row cannot be read; skipped");
                None
            }
        })
        .collect()
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
