//! The feature store's two storage traits and their shared types.
//!
//! - [`OnlineStore`]: the latest vector per (view, version, symbol), for serving. Redis in
//!   production ([`redis::RedisOnline`]), a map in memory for the embedded default
//!   ([`memory::MemoryOnline`]).
//! - [`OfflineStore`]: the bars the service has consumed, every feature row, the per-symbol
//!   stream state and materialization jobs, with point-in-time retrieval. PostgreSQL in
//!   production ([`postgres::PostgresOffline`]), SQLite for the embedded default
//!   ([`sqlite::SqliteOffline`]), opened by URL with [`sql::open`]; the two share their
//!   row mapping and the Rust around their statements ([`sql`]).
//!
//! Times are seconds since the epoch, UTC ([`Ts`]). A feature vector's event time is the
//! close time of the last bar it includes (open time + interval). An absent value (inside
//! an indicator's warm-up) is NaN.

pub mod memory;
pub mod postgres;
pub mod redis;
pub mod sql;
pub mod sqlite;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use stockcast_market::{Bar, Interval};
use uuid::Uuid;

pub use crate::view::{Ts, ViewId};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or timed out; retrying later may work.
    #[error("{backend} unavailable: {reason}")]
    Unavailable {
        /// `redis`, `postgres`, `sqlite`, `memory`.
        backend: &'static str,
        /// What failed.
        reason: String,
    },
    /// The backend refused the operation.
    #[error("{backend}: {reason}")]
    Failed {
        /// `redis`, `postgres`, `sqlite`, `memory`.
        backend: &'static str,
        /// What failed.
        reason: String,
    },
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

// ---------------------------------------------------------------------------------------
// online

/// One vector to write to the online store.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineWrite {
    /// The view version.
    pub view: ViewId,
    /// Instrument ticker.
    pub symbol: String,
    /// Event time of the vector.
    pub event_time: Ts,
    /// Values in the view's feature order; NaN = absent.
    pub values: Vec<f64>,
    /// How long the store keeps the key after this write.
    pub ttl: Duration,
}

/// A vector read from the online store.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineVector {
    /// Event time of the vector.
    pub event_time: Ts,
    /// Values in the view's feature order; NaN = absent.
    pub values: Vec<f64>,
}

/// The latest feature vector per (view, version, symbol).
#[async_trait]
pub trait OnlineStore: Send + Sync + fmt::Debug {
    /// Checks that the store answers, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Writes each vector unless the store already holds a *newer* event time for its key;
    /// an equal event time is replaced (a recomputed vector). The comparison happens
    /// atomically inside the store, so concurrent writers cannot move a key backwards. Sets
    /// each key's expiry to its `ttl`. Returns, per write, whether it was applied.
    async fn write(&self, writes: &[OnlineWrite]) -> Result<Vec<bool>, StoreError>;

    /// The current vector of each symbol of `view`, in `symbols` order (`None` when there is
    /// none or it expired), in one round trip.
    async fn read(
        &self,
        view: &ViewId,
        symbols: &[String],
    ) -> Result<Vec<Option<OnlineVector>>, StoreError>;
}

// ---------------------------------------------------------------------------------------
// offline

/// One feature row: the vector of one symbol at one event time.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    /// Instrument ticker.
    pub symbol: String,
    /// Event time of the vector.
    pub event_time: Ts,
    /// Values in the view's feature order; NaN = absent.
    pub values: Vec<f64>,
}

/// The stream state of one symbol for one view version: enough to continue computing
/// features from the next bar without replaying history.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSnapshot {
    /// Instrument ticker.
    pub symbol: String,
    /// Open time of the last bar folded into `state`.
    pub last_bar_ts: Ts,
    /// Bars folded into `state` so far.
    pub bars_seen: i64,
    /// The serialized indicator state (opaque to the store).
    pub state: Vec<u8>,
}

/// What one transaction writes for one view version.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewWrite {
    /// The view version.
    pub view: ViewId,
    /// Rows upserted on (view, version, symbol, event_time).
    pub rows: Vec<FeatureRow>,
    /// Snapshots upserted on (view, version, symbol).
    pub states: Vec<StateSnapshot>,
    /// Keep rows already stored instead of replacing them: materialization fills in what is
    /// missing and never overwrites a row the stream wrote (or rewrote after a late bar)
    /// while a chunk was being computed.
    pub keep_existing: bool,
}

/// A view version as recorded in the offline store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredView {
    /// The canonical definition recorded the first time the version was served.
    pub definition: String,
    /// When that was.
    pub registered_at: Ts,
    /// Whether this call recorded it.
    pub new: bool,
}

/// A materialization chunk completed by a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkDone {
    /// The job.
    pub job_id: Uuid,
    /// Index of the chunk within the job (0-based).
    pub chunk: i64,
    /// The symbol's indicator state after the chunk, to resume the next chunk from.
    pub state: Vec<u8>,
    /// Bars read by the chunk (added to the job's counter).
    pub bars_read: i64,
    /// Vectors written by the chunk (added to the job's counter).
    pub vectors_written: i64,
}

/// Everything one transaction of the offline store applies, all or nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// Bars upserted on (symbol, interval, ts); a stored bar is never replaced by one with a
    /// lower revision.
    pub bars: Vec<Bar>,
    /// The revision of `bars[i]` (ingestion's: 0 = first version, n = n-th correction);
    /// missing entries are 0.
    pub revisions: Vec<i32>,
    /// Feature rows and state snapshots per view version.
    pub views: Vec<ViewWrite>,
    /// A materialization chunk to mark done (with its counters added to the job).
    pub chunk: Option<ChunkDone>,
}

impl WriteBatch {
    /// The revision of `bars[i]`.
    pub fn revision(&self, i: usize) -> i32 {
        self.revisions.get(i).copied().unwrap_or(0)
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
            && self
                .views
                .iter()
                .all(|v| v.rows.is_empty() && v.states.is_empty())
            && self.chunk.is_none()
    }
}

/// A point-in-time query of explicit entity rows.
#[derive(Debug, Clone, Copy)]
pub struct PointInTimeQuery<'a> {
    /// The view version.
    pub view: &'a ViewId,
    /// The view's bar interval (for labels).
    pub interval: Interval,
    /// (symbol, as-of time) rows, answered in this order.
    pub rows: &'a [(String, Ts)],
    /// Label horizon in bars, if a label is wanted.
    pub label_horizon: Option<u32>,
}

/// A query of every stored row of some symbols in a range of event times, in pages.
#[derive(Debug, Clone, Copy)]
pub struct SpanQuery<'a> {
    /// The view version.
    pub view: &'a ViewId,
    /// The view's bar interval (for labels).
    pub interval: Interval,
    /// Symbols, in any order; rows come ordered by symbol then event time.
    pub symbols: &'a [String],
    /// Event times `from <= t < until`.
    pub from: Ts,
    /// See `from`.
    pub until: Ts,
    /// Keyset cursor: only rows after this (symbol, event time).
    pub after: Option<(&'a str, Ts)>,
    /// Page size.
    pub limit: usize,
    /// Label horizon in bars, if a label is wanted.
    pub label_horizon: Option<u32>,
}

/// One answered row of a historical query.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoricalRow {
    /// Instrument ticker.
    pub symbol: String,
    /// The as-of time (the entity row's timestamp, or the event time for a span query).
    pub as_of: Ts,
    /// The latest vector with event time ≤ `as_of`, if any (max age is judged by the caller).
    pub vector: Option<OnlineVector>,
    /// Forward log return ln(C[h]/C[0]): C[0] is the close of the last stored bar whose close
    /// time (ts + interval) is ≤ `as_of`, C[h] the close of the h-th stored bar after that
    /// bar. `None` when not asked, when there is no C[0], or fewer than h bars follow it.
    pub label: Option<f64>,
}

/// A materialization job's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Accepted, not started.
    Pending,
    /// Running, or interrupted and waiting to resume from its chunks.
    Running,
    /// Every chunk is durable.
    Succeeded,
    /// Stopped on an error that retrying will not fix.
    Failed,
}

impl JobState {
    /// Lower-case name, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            other => return Err(StoreError::Corrupt(format!("job state {other:?}"))),
        })
    }
}

/// A materialization job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Job id.
    pub id: Uuid,
    /// Idempotency key given by the client, if any (unique).
    pub request_id: Option<String>,
    /// The view version.
    pub view: ViewId,
    /// Symbols, in chunk order.
    pub symbols: Vec<String>,
    /// Event times `from <= t < until`.
    pub from: Ts,
    /// See `from`.
    pub until: Ts,
    /// Chunk length in seconds of event time (each chunk = one symbol × one slice).
    pub chunk_seconds: i64,
    /// Lifecycle state.
    pub state: JobState,
    /// Chunks completed durably.
    pub chunks_done: i64,
    /// Chunks in the job.
    pub chunks_total: i64,
    /// Bars read so far.
    pub bars_read: i64,
    /// Vectors written so far.
    pub vectors_written: i64,
    /// Creation time.
    pub created_at: Ts,
    /// First start.
    pub started_at: Option<Ts>,
    /// Finish time.
    pub finished_at: Option<Ts>,
    /// Last progress.
    pub updated_at: Ts,
    /// Why it failed, or the last retryable error.
    pub error: Option<String>,
}

/// Bars consumed, feature rows, stream state and materialization jobs.
#[async_trait]
pub trait OfflineStore: Send + Sync + fmt::Debug {
    /// Checks that the store answers, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Records the canonical definition (JSON) of a view version the first time it is
    /// served, and returns what is recorded for it (the first definition, never replaced).
    /// The caller refuses to serve a version whose definition changed.
    async fn register_view(
        &self,
        view: &ViewId,
        definition: &str,
    ) -> Result<RegisteredView, StoreError>;

    /// Applies `batch` in one transaction: all of it or none of it.
    async fn write(&self, batch: &WriteBatch) -> Result<(), StoreError>;

    /// Stored bars of `symbol` at `interval` with `from <= ts < until`, ascending, at most
    /// `limit` (page on by calling again with `from` = last ts + 1).
    async fn bars(
        &self,
        symbol: &str,
        interval: Interval,
        from: Ts,
        until: Ts,
        limit: usize,
    ) -> Result<Vec<Bar>, StoreError>;

    /// The stored bars at exactly the given (symbol, ts) keys at `interval`, with their
    /// revisions; keys without a bar are left out. Order is unspecified.
    async fn bars_at(
        &self,
        interval: Interval,
        keys: &[(String, Ts)],
    ) -> Result<Vec<(Bar, i32)>, StoreError>;

    /// Symbols with at least one stored bar at `interval`, sorted.
    async fn symbols(&self, interval: Interval) -> Result<Vec<String>, StoreError>;

    /// The stored state snapshots of `symbols` for `view` (symbols without one are left
    /// out; order unspecified).
    async fn states(
        &self,
        view: &ViewId,
        symbols: &[String],
    ) -> Result<Vec<StateSnapshot>, StoreError>;

    /// Answers entity rows point-in-time correct, one [`HistoricalRow`] per input row in
    /// input order.
    async fn point_in_time(
        &self,
        query: PointInTimeQuery<'_>,
    ) -> Result<Vec<HistoricalRow>, StoreError>;

    /// One page of stored rows of a span, ordered by symbol then event time; `as_of` of
    /// each row is its event time.
    async fn span(&self, query: SpanQuery<'_>) -> Result<Vec<HistoricalRow>, StoreError>;

    /// Stores a new job, unless one with the same `request_id` exists: then returns that
    /// one and stores nothing.
    async fn create_job(&self, job: &JobRecord) -> Result<JobRecord, StoreError>;

    /// One job.
    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError>;

    /// Sets a job's state, times and error (not its counters, which chunks advance).
    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError>;

    /// Jobs that are pending or running (to resume after a restart), oldest first.
    async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StoreError>;

    /// The completed chunks of a job with the state stored after each, by chunk index.
    async fn done_chunks(&self, id: Uuid) -> Result<Vec<(i64, Vec<u8>)>, StoreError>;
}

/// Calls `f` with every stored bar of `symbol` at `interval` with `from <= ts < until`, in
/// time order, reading `page` bars at a time (memory stays bounded by one page). Returns how
/// many bars were read.
pub async fn for_each_bar(
    offline: &dyn OfflineStore,
    symbol: &str,
    interval: Interval,
    (from, until): (Ts, Ts),
    page: usize,
    mut f: impl FnMut(&Bar),
) -> Result<i64, StoreError> {
    let page = page.max(1);
    let mut cursor = from;
    let mut read = 0;
    loop {
        let bars = offline.bars(symbol, interval, cursor, until, page).await?;
        read += bars.len() as i64;
        bars.iter().for_each(&mut f);
        match bars.last() {
            Some(last) if bars.len() == page => cursor = last.ts + 1,
            _ => return Ok(read),
        }
    }
}
