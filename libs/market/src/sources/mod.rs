//! Where bars come from, behind one trait.
//!
//! A backfill asks a [`Source`] to [`plan`](Source::plan) its work as [`Chunk`]s — units small
//! enough to redo, named deterministically so that a restarted job can skip the chunks it has
//! done — and then to [`fetch`](Source::fetch) each chunk. A fetched chunk is a list of
//! [`SourceRecord`]s: bars (still to be validated) or unreadable input kept byte for byte for
//! the dead-letter topic.

pub mod alpha_vantage;
pub mod csv;
pub mod synthetic;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Bar, Interval, Rejection};

/// What a backfill asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillSpec {
    /// Symbols to load; a CSV file with a `Symbol` column may leave this empty.
    pub symbols: Vec<String>,
    /// Bar length.
    pub interval: Interval,
    /// First bar open time to load, seconds since epoch UTC, inclusive.
    pub start: i64,
    /// End of the range, seconds since epoch UTC, exclusive.
    pub end: i64,
    /// Source-specific parameters.
    pub params: SourceParams,
}

/// Which source, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum SourceParams {
    /// Alpha Vantage REST API.
    AlphaVantage(alpha_vantage::AlphaVantageParams),
    /// A CSV file.
    Csv(csv::CsvParams),
    /// The synthetic generator.
    Synthetic(synthetic::SyntheticParams),
}

impl SourceParams {
    /// Source name used in events, metrics and job records: `alpha_vantage`, `csv`, `synthetic`.
    pub fn source_name(&self) -> &'static str {
        match self {
            SourceParams::AlphaVantage(_) => "alpha_vantage",
            SourceParams::Csv(_) => "csv",
            SourceParams::Synthetic(_) => "synthetic",
        }
    }
}

/// One unit of a backfill's work. `key` is unique within a plan and stable across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chunk {
    /// Stable identity within the plan, e.g. `AAPL/2024-03` or `bytes/0-1048576`.
    pub key: String,
    /// The symbol the chunk loads, when it loads one symbol.
    pub symbol: Option<String>,
    /// Source-specific position (a month, a byte range, a time range), as the source wrote it.
    pub position: ChunkPosition,
}

/// Where a chunk starts and ends, in the source's own terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkPosition {
    /// A whole request of the source (e.g. a daily series).
    Whole,
    /// A calendar month `YYYY-MM` (Alpha Vantage intraday history).
    Month(String),
    /// A byte range of a file, `[start, end)`, starting at a line start.
    Bytes {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// A time range of bar open times, seconds since epoch UTC, `[start, end)`.
    Time {
        /// First open time.
        start: i64,
        /// End, exclusive.
        end: i64,
    },
}

/// A record as a source produced it.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceRecord {
    /// A bar made by the source itself (the generator); it still has to pass validation.
    Bar(Bar),
    /// A bar read from input (a CSV line, a JSON entry), with that input kept so that a bar
    /// failing validation is dead-lettered as it was read; it still has to pass validation.
    Row(Row),
    /// Input that could not be read as a bar, kept for the dead-letter topic.
    Unreadable(Unreadable),
}

/// A bar read from input, with the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The bar.
    pub bar: Bar,
    /// Position in the input: 1-based CSV line number, or the entry's index.
    pub index: i64,
    /// The original bytes (the CSV line, the JSON entry).
    pub payload: Vec<u8>,
    /// Media type of the payload: `text/csv`, `application/json`.
    pub payload_type: &'static str,
}

impl SourceRecord {
    /// The bar, if the record holds one.
    pub fn bar(&self) -> Option<&Bar> {
        match self {
            SourceRecord::Bar(bar) => Some(bar),
            SourceRecord::Row(row) => Some(&row.bar),
            SourceRecord::Unreadable(_) => None,
        }
    }

    /// The bar, if the record holds one.
    pub fn into_bar(self) -> Option<Bar> {
        match self {
            SourceRecord::Bar(bar) => Some(bar),
            SourceRecord::Row(row) => Some(row.bar),
            SourceRecord::Unreadable(_) => None,
        }
    }
}

/// Input that could not be read as a bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// The original bytes (a CSV line, a JSON entry).
    pub payload: Vec<u8>,
    /// Media type of the payload: `text/csv`, `application/json`.
    pub payload_type: &'static str,
    /// Position in the input: 1-based CSV line number, or the entry's index; -1 if none.
    pub index: i64,
    /// The symbol, when it could be read.
    pub symbol: String,
    /// What is wrong.
    pub rejection: Rejection,
}

/// Why a source could not deliver a chunk.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// Worth retrying later (rate limit, timeout, 5xx, connection refused).
    #[error("{reason} (retry after {retry_after:?})")]
    Retryable {
        /// What happened.
        reason: String,
        /// Earliest sensible retry.
        retry_after: Duration,
    },
    /// Retrying will not help (unknown symbol, bad API key, missing file, malformed response).
    #[error("{0}")]
    Fatal(String),
}

/// A source of bars.
#[async_trait]
pub trait Source: Send + Sync + std::fmt::Debug {
    /// The units of work for `spec`, in the order to do them. Deterministic for a given spec
    /// and input, so a restarted job can match chunks it has done by key.
    async fn plan(&self, spec: &BackfillSpec) -> Result<Vec<Chunk>, SourceError>;

    /// The records of one chunk, only those whose open time is within the spec's range.
    async fn fetch(
        &self,
        spec: &BackfillSpec,
        chunk: &Chunk,
    ) -> Result<Vec<SourceRecord>, SourceError>;
}
