//! Rows as both dialects return them, and their one mapping to the domain's records. Each
//! dialect's statements select these columns under these names (times as epoch seconds, ids
//! as text), so that reading a row is the same Rust for PostgreSQL and SQLite.

use sqlx::types::Json;
use stockcast_market::sources::BackfillSpec;
use stockcast_market::{Bar, Interval};
use uuid::Uuid;

use super::{Counts, Coverage, JobRecord, JobState, StoreError, StoredBar};

/// A row of `backfill_jobs`. The spec is read as any JSON and checked in the mapping, so
/// that a row one version wrote and the next cannot read fails alone, not the whole query.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct JobRow {
    job_id: String,
    request_id: Option<String>,
    spec: Json<serde_json::Value>,
    state: String,
    chunks_total: i64,
    chunks_done: i64,
    bars_accepted: i64,
    bars_rejected: i64,
    bars_duplicate: i64,
    bars_corrected: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
    resumes: i32,
    error: String,
}

impl TryFrom<JobRow> for JobRecord {
    type Error = StoreError;

    fn try_from(row: JobRow) -> Result<Self, StoreError> {
        let id = &row.job_id;
        let spec: BackfillSpec = serde_json::from_value(row.spec.0)
            .map_err(|e| StoreError::Corrupt(format!("job {id} spec: {e}")))?;
        Ok(JobRecord {
            id: Uuid::parse_str(id)
                .map_err(|e| StoreError::Corrupt(format!("job id {id:?}: {e}")))?,
            request_id: row.request_id,
            spec,
            state: JobState::parse(&row.state).map_err(StoreError::Corrupt)?,
            chunks_total: row.chunks_total,
            chunks_done: row.chunks_done,
            counts: Counts {
                accepted: row.bars_accepted,
                rejected: row.bars_rejected,
                duplicate: row.bars_duplicate,
                corrected: row.bars_corrected,
            },
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            updated_at: row.updated_at,
            resumes: row.resumes,
            error: row.error,
        })
    }
}

/// One job read by id: a row that does not read back is corrupt.
pub(super) fn job(row: Option<JobRow>) -> Result<Option<JobRecord>, StoreError> {
    row.map(JobRecord::try_from).transpose()
}

/// The jobs of `rows` that read back; a row that does not (written by an older version, or
/// damaged) is logged and skipped, so that one bad row cannot break listing or start-up.
/// Reading it by id still reports it as corrupt.
pub(super) fn readable_jobs(rows: Vec<JobRow>) -> Vec<JobRecord> {
    rows.into_iter()
        .filter_map(|row| match JobRecord::try_from(row) {
            Ok(job) => Some(job),
            Err(error) => {
                tracing::error!(%error, "backfill job row cannot be read; skipped");
                None
            }
        })
        .collect()
}

/// A stored bar of a known symbol and interval.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct BarRow {
    ts: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    source: String,
    revision: i32,
}

impl BarRow {
    /// The stored bar, as a bar of `symbol` and `interval`.
    pub(super) fn into_stored(self, symbol: &str, interval: Interval) -> StoredBar {
        StoredBar {
            bar: Bar {
                symbol: symbol.to_owned(),
                interval,
                ts: self.ts,
                open: self.open,
                high: self.high,
                low: self.low,
                close: self.close,
                volume: self.volume,
            },
            source: self.source,
            revision: self.revision,
        }
    }
}

/// The coverage of one (symbol, interval).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct CoverageRow {
    symbol: String,
    interval: String,
    first_ts: i64,
    last_ts: i64,
    bar_count: i64,
}

impl TryFrom<CoverageRow> for Coverage {
    type Error = StoreError;

    fn try_from(row: CoverageRow) -> Result<Self, StoreError> {
        Ok(Coverage {
            interval: interval(&row.interval)?,
            symbol: row.symbol,
            first_ts: row.first_ts,
            last_ts: row.last_ts,
            bar_count: row.bar_count,
        })
    }
}

/// A stored interval name.
pub(super) fn interval(name: &str) -> Result<Interval, StoreError> {
    name.parse()
        .map_err(|e| StoreError::Corrupt(format!("interval: {e}")))
}
