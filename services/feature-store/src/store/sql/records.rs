//! The rows the offline store's statements answer, as `sqlx::FromRow` records decoded the
//! same way from PostgreSQL and SQLite, and their one mapping to the store's types.
//!
//! Both dialects answer times as seconds since the epoch (PostgreSQL's statements convert
//! with `extract(epoch …)`), a job id as its hyphenated text and a job's symbols as a JSON
//! array. The one column stored differently is a feature vector, decoded by [`Vector`].

use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Postgres, Sqlite, Type};
use stockcast_market::{Bar, Interval};
use uuid::Uuid;

use crate::store::{
    HistoricalRow, JobRecord, JobState, OnlineVector, RegisteredView, StateSnapshot, StoreError,
    Ts, ViewId,
};

/// A feature vector column: `float8[]` on PostgreSQL, a BLOB of little-endian `f64` on
/// SQLite (SQLite stores a NaN REAL as NULL; a BLOB keeps every bit).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Vector(pub Vec<f64>);

impl Type<Postgres> for Vector {
    fn type_info() -> PgTypeInfo {
        <Vec<f64> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Vec<f64> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Vector {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(<Vec<f64> as Decode<'r, Postgres>>::decode(value)?))
    }
}

impl Type<Sqlite> for Vector {
    fn type_info() -> SqliteTypeInfo {
        <Vec<u8> as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <Vec<u8> as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Vector {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let bytes = <&[u8] as Decode<'r, Sqlite>>::decode(value)?;
        Ok(Self(decode_vector(bytes)?))
    }
}

/// Little-endian bytes of a vector (the SQLite encoding).
pub(crate) fn encode_vector(values: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The vector of little-endian bytes.
pub(crate) fn decode_vector(bytes: &[u8]) -> Result<Vec<f64>, StoreError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(StoreError::Corrupt(format!(
            "feature vector of {} bytes is not a whole number of f64",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// A view version as recorded: `definition`, `registered_at`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ViewRecord {
    pub definition: String,
    pub registered_at: i64,
}

impl ViewRecord {
    /// What [`crate::store::OfflineStore::register_view`] answers; `new` when this call
    /// recorded it.
    pub fn registered(self, new: bool) -> RegisteredView {
        RegisteredView {
            definition: self.definition,
            registered_at: self.registered_at,
            new,
        }
    }
}

/// A stored bar without its key's symbol and interval: `ts`, `open` … `volume`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BarRecord {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

impl BarRecord {
    /// The bar of `symbol` at `interval`.
    pub fn bar(self, symbol: String, interval: Interval) -> Bar {
        Bar {
            symbol,
            interval,
            ts: self.ts,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
        }
    }
}

/// A stored bar with its symbol and revision.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RevisedBarRecord {
    pub symbol: String,
    pub revision: i32,
    #[sqlx(flatten)]
    pub bar: BarRecord,
}

impl RevisedBarRecord {
    /// The bar at `interval` and its revision.
    pub fn revised(self, interval: Interval) -> (Bar, i32) {
        (self.bar.bar(self.symbol, interval), self.revision)
    }
}

/// A state snapshot: `symbol`, `last_bar_ts`, `bars_seen`, `state`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StateRecord {
    pub symbol: String,
    pub last_bar_ts: i64,
    pub bars_seen: i64,
    pub state: Vec<u8>,
}

impl From<StateRecord> for StateSnapshot {
    fn from(r: StateRecord) -> Self {
        StateSnapshot {
            symbol: r.symbol,
            last_bar_ts: r.last_bar_ts,
            bars_seen: r.bars_seen,
            state: r.state,
        }
    }
}

/// The vector and label closes found for one as-of time: `event_time` and `vector` of the
/// latest row at or before it (both NULL when there is none), `c0` and `ch` (see
/// [`label`]).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct HistoricalRecord {
    pub event_time: Option<i64>,
    pub vector: Option<Vector>,
    pub c0: Option<f64>,
    pub ch: Option<f64>,
}

impl HistoricalRecord {
    /// The answered row of `symbol` as of `as_of`, with the label of `horizon` bars.
    pub fn row(self, symbol: String, as_of: Ts, horizon: Option<u32>) -> HistoricalRow {
        let vector = match (self.event_time, self.vector) {
            (Some(event_time), Some(Vector(values))) => Some(OnlineVector { event_time, values }),
            _ => None,
        };
        HistoricalRow {
            symbol,
            as_of,
            vector,
            label: label(horizon, self.c0, self.ch),
        }
    }
}

/// The forward log return ln(C[h]/C[0]) of a label, from the closes the query found.
/// A horizon of 0 is the bar itself (a return of 0).
pub(crate) fn label(horizon: Option<u32>, c0: Option<f64>, ch: Option<f64>) -> Option<f64> {
    let horizon = horizon?;
    let c0 = c0?;
    if horizon == 0 {
        return Some(0.0);
    }
    Some((ch? / c0).ln())
}

/// A materialization job row; see [`JobRecord`] for the fields.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub job_id: String,
    pub request_id: Option<String>,
    pub view: String,
    pub version: i32,
    /// A JSON array of strings.
    pub symbols: String,
    pub from_ts: i64,
    pub until_ts: i64,
    pub chunk_seconds: i64,
    pub state: String,
    pub chunks_done: i64,
    pub chunks_total: i64,
    pub bars_read: i64,
    pub vectors_written: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
    pub error: Option<String>,
}

impl TryFrom<JobRow> for JobRecord {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        Ok(JobRecord {
            id: Uuid::parse_str(&r.job_id)
                .map_err(|e| StoreError::Corrupt(format!("job id {:?}: {e}", r.job_id)))?,
            request_id: r.request_id,
            view: ViewId::new(r.view, r.version),
            symbols: serde_json::from_str(&r.symbols)
                .map_err(|e| StoreError::Corrupt(format!("job symbols {:?}: {e}", r.symbols)))?,
            from: r.from_ts,
            until: r.until_ts,
            chunk_seconds: r.chunk_seconds,
            state: JobState::parse(&r.state)?,
            chunks_done: r.chunks_done,
            chunks_total: r.chunks_total,
            bars_read: r.bars_read,
            vectors_written: r.vectors_written,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: r.updated_at,
            error: r.error,
        })
    }
}

/// A completed chunk: `chunk`, `state`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChunkRecord {
    pub chunk: i64,
    pub state: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_bit_exactly() {
        let odd_nan = f64::from_bits(0x7ff8_0000_dead_beef);
        let values = [1.5, f64::NAN, -0.0, odd_nan, f64::INFINITY];
        let back = decode_vector(&encode_vector(&values)).unwrap_or_default();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
        assert!(decode_vector(&[0u8; 7]).is_err());
    }

    #[test]
    fn labels() {
        assert_eq!(label(None, Some(1.0), Some(2.0)), None);
        assert_eq!(label(Some(1), None, Some(2.0)), None);
        assert_eq!(label(Some(1), Some(1.0), None), None);
        assert_eq!(label(Some(0), Some(1.0), None), Some(0.0));
        assert_eq!(label(Some(2), Some(1.0), Some(2.0)), Some(2f64.ln()));
    }
}
