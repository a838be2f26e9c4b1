//! CSV file source: bars from files as Yahoo Finance, Stooq, Investing or pandas `to_csv`
//! export them.
//!
//! The header names the columns: `Date,Open,High,Low,Close[,Adj Close],Volume`, in any
//! order, case-insensitive, with surrounding blanks and quotes ignored. `Datetime`,
//! `Timestamp` or `Time` may name the date column, or `Date` plus `Time` split it. Without any
//! of them, an unnamed first column is the timestamp (pandas `DataFrame.to_csv()` of a frame
//! indexed by date writes `,Open,High,…`); with one, an unnamed column is a row number and is
//! ignored like unknown columns. A `Symbol` or `Ticker` column gives each row its symbol. `Adj Close` is ignored because stockcast stores the prices
//! that traded; adjustments for splits and dividends are derived from them, never stored in
//! their place.
//!
//! Dates are `YYYY-MM-DD` (00:00 UTC of that date) or `YYYY-MM-DD HH:MM[:SS]` (or with `T`),
//! with an optional `Z` or `±HH:MM` offset; without one they are in
//! [`CsvParams::time_zone`] (UTC when absent). For daily bars a datetime at midnight is read
//! as its date, whatever its offset.
//!
//! A backfill plans one pass over the file that cuts it into byte ranges of about
//! [`DEFAULT_CHUNK_BYTES`] at line ends, counting lines so that every chunk knows the number
//! of its first line; each fetch re-reads the header and reads only its range.

mod header;
mod parse;
mod time;

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use memchr::{memchr, memchr_iter};
use serde::{Deserialize, Serialize};

pub use header::{CsvContext, CsvError};
pub use parse::{CSV_PAYLOAD_TYPE, parse_csv};

use super::{BackfillSpec, Chunk, ChunkPosition, Source, SourceError, SourceParams, SourceRecord};

/// Chunk size when [`CsvParams::chunk_bytes`] is not set: 4 MiB, some 70,000 daily rows.
pub const DEFAULT_CHUNK_BYTES: u64 = 4 << 20;

/// A first line longer than this is not a CSV header.
const MAX_HEADER_BYTES: usize = 64 << 10;

/// Parameters of a CSV backfill.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvParams {
    /// The file.
    pub path: PathBuf,
    /// Symbol of every row, for files without a `Symbol` column; with one, only rows of this
    /// symbol are loaded.
    pub symbol: Option<String>,
    /// IANA time zone of timestamps without an offset; UTC when absent.
    pub time_zone: Option<String>,
    /// Target chunk size in bytes (a chunk ends at the first line end past it);
    /// [`DEFAULT_CHUNK_BYTES`] when absent. A parameter of the job rather than of the
    /// service because chunk keys depend on it and a resumed job must plan the same chunks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_bytes: Option<u64>,
}

/// The CSV file source.
#[derive(Debug, Clone, Default)]
pub struct CsvSource {
    /// When set, files must resolve to a path inside this directory.
    root: Option<PathBuf>,
}

impl CsvSource {
    /// A source that reads any path the process can read (CLI and demo use).
    pub fn new() -> Self {
        Self::default()
    }

    /// A source that reads only files inside `root`; relative paths are taken from `root`.
    /// A service must use this: rows that cannot be read are copied to the dead-letter topic,
    /// so an unrestricted path would let any client publish any readable file.
    pub fn within(root: impl Into<PathBuf>) -> Self {
        Self {
            root: Some(root.into()),
        }
    }

    fn resolve(&self, path: &Path) -> Result<PathBuf, SourceError> {
        let Some(root) = &self.root else {
            return Ok(path.to_owned());
        };
        let canonical = |p: &Path| {
            p.canonicalize()
                .map_err(|e| fatal(path, format!("cannot be opened: {e}")))
        };
        let root = root.canonicalize().map_err(|e| {
            fatal(
                path,
                format!("the CSV directory {} cannot be opened: {e}", root.display()),
            )
        })?;
        let full = canonical(&root.join(path))?;
        if !full.starts_with(&root) {
            return Err(fatal(
                path,
                format!("is outside the CSV directory {}", root.display()),
            ));
        }
        Ok(full)
    }
}

fn fatal(path: &Path, what: impl std::fmt::Display) -> SourceError {
    SourceError::Fatal(format!("csv file {}: {what}", path.display()))
}

fn csv_params(spec: &BackfillSpec) -> Result<&CsvParams, SourceError> {
    match &spec.params {
        SourceParams::Csv(params) => Ok(params),
        other => Err(SourceError::Fatal(format!(
            "the csv source was given {} parameters",
            other.source_name()
        ))),
    }
}

/// Runs file work off the async workers: a chunk parse takes tens of milliseconds.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SourceError::Fatal(format!("csv task failed: {e}")))?
}

#[async_trait]
impl Source for CsvSource {
    async fn plan(&self, spec: &BackfillSpec) -> Result<Vec<Chunk>, SourceError> {
        let params = csv_params(spec)?.clone();
        let (source, spec) = (self.clone(), spec.clone());
        blocking(move || {
            let path = source.resolve(&params.path)?;
            plan_file(&path, &params, &spec)
        })
        .await
    }

    async fn fetch(
        &self,
        spec: &BackfillSpec,
        chunk: &Chunk,
    ) -> Result<Vec<SourceRecord>, SourceError> {
        let params = csv_params(spec)?.clone();
        let ChunkPosition::Bytes { start, end } = chunk.position else {
            return Err(fatal(
                &params.path,
                format!("chunk {:?} is not a byte range", chunk.key),
            ));
        };
        let first_line = match parse_key(&chunk.key) {
            Some((s, e, line)) if (s, e) == (start, end) => line,
            _ => {
                return Err(fatal(
                    &params.path,
                    format!(
                        "chunk key {:?} does not match bytes {start}-{end}",
                        chunk.key
                    ),
                ));
            }
        };
        let (source, spec) = (self.clone(), spec.clone());
        blocking(move || {
            let path = source.resolve(&params.path)?;
            fetch_file(&path, &params, &spec, start, end, first_line)
        })
        .await
    }
}

/// `bytes/<start>-<end>/line/<first line>`: the byte range, and the number of its first line
/// so that a fetch need not count the lines before it.
fn chunk_key(start: u64, end: u64, first_line: u64) -> String {
    format!("bytes/{start}-{end}/line/{first_line}")
}

/// The range and first line of a key; a key without `/line/` (written by hand) is accepted
/// and its line counted at fetch.
fn parse_key(key: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = key.strip_prefix("bytes/")?;
    let (range, line) = match rest.split_once("/line/") {
        Some((range, line)) => (range, Some(line.parse().ok()?)),
        None => (rest, None),
    };
    let (start, end) = range.split_once('-')?;
    Some((start.parse().ok()?, end.parse().ok()?, line))
}

fn open(path: &Path) -> Result<File, SourceError> {
    File::open(path).map_err(|e| fatal(path, format!("cannot be opened: {e}")))
}

/// Reads `buf.len()` bytes or up to the end of the file; returns how many.
fn read_full(file: &mut File, buf: &mut [u8], path: &Path) -> Result<usize, SourceError> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(fatal(path, format!("cannot be read: {e}"))),
        }
    }
    Ok(filled)
}

/// The first line including its line end, and the context it gives.
fn read_header(
    file: &mut File,
    path: &Path,
    params: &CsvParams,
    spec: &BackfillSpec,
) -> Result<(u64, CsvContext), SourceError> {
    let mut header = Vec::new();
    let mut block = [0u8; 8 << 10];
    loop {
        let n = read_full(file, &mut block, path)?;
        if let Some(i) = memchr(b'\n', &block[..n]) {
            header.extend_from_slice(&block[..=i]);
            break;
        }
        header.extend_from_slice(&block[..n]);
        if header.len() > MAX_HEADER_BYTES {
            return Err(fatal(path, CsvError::HeaderTooLong(MAX_HEADER_BYTES)));
        }
        if n < block.len() {
            break;
        }
    }
    if header.is_empty() {
        return Err(fatal(path, CsvError::Empty));
    }
    let context = CsvContext::new(&header, params, spec).map_err(|e| fatal(path, e))?;
    Ok((header.len() as u64, context))
}

fn plan_file(
    path: &Path,
    params: &CsvParams,
    spec: &BackfillSpec,
) -> Result<Vec<Chunk>, SourceError> {
    let mut file = open(path)?;
    let (header_end, context) = read_header(&mut file, path, params, spec)?;
    let symbol = context.fixed_symbol().map(str::to_owned);
    let chunk_bytes = params.chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES).max(1);
    file.seek(SeekFrom::Start(header_end))
        .map_err(|e| fatal(path, format!("cannot be read: {e}")))?;

    let mut chunks = Vec::new();
    let mut push = |start: u64, end: u64, first_line: u64| {
        chunks.push(Chunk {
            key: chunk_key(start, end, first_line),
            symbol: symbol.clone(),
            position: ChunkPosition::Bytes { start, end },
        });
    };
    let mut buf = vec![0u8; 1 << 20];
    let (mut pos, mut line) = (header_end, 2u64);
    let (mut chunk_start, mut chunk_line) = (header_end, 2u64);
    loop {
        let n = read_full(&mut file, &mut buf, path)?;
        if n == 0 {
            break;
        }
        for i in memchr_iter(b'\n', &buf[..n]) {
            let after = pos + i as u64 + 1;
            line += 1;
            if after - chunk_start >= chunk_bytes {
                push(chunk_start, after, chunk_line);
                (chunk_start, chunk_line) = (after, line);
            }
        }
        pos += n as u64;
    }
    if chunk_start < pos {
        push(chunk_start, pos, chunk_line);
    }
    Ok(chunks)
}

fn fetch_file(
    path: &Path,
    params: &CsvParams,
    spec: &BackfillSpec,
    start: u64,
    end: u64,
    first_line: Option<u64>,
) -> Result<Vec<SourceRecord>, SourceError> {
    let mut file = open(path)?;
    let (header_end, context) = read_header(&mut file, path, params, spec)?;
    if start < header_end || end < start {
        return Err(fatal(
            path,
            format!("bytes {start}-{end} are not rows after the {header_end}-byte header"),
        ));
    }
    let first_line = match first_line {
        Some(line) => line,
        None => count_lines_before(&mut file, start, path)? + 1,
    };
    // One byte before the range must be a line end; if not, the file changed since the plan.
    let len = usize::try_from(end - start + 1)
        .map_err(|_| fatal(path, format!("bytes {start}-{end} do not fit in memory")))?;
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(start - 1))
        .map_err(|e| fatal(path, format!("cannot be read: {e}")))?;
    let n = read_full(&mut file, &mut buf, path)?;
    if n < len {
        return Err(fatal(
            path,
            format!("changed since the backfill was planned: it ends before byte {end}"),
        ));
    }
    if buf[0] != b'\n' {
        return Err(fatal(
            path,
            format!("changed since the backfill was planned: no line starts at byte {start}"),
        ));
    }
    Ok(parse_csv(&buf[1..], first_line, &context))
}

fn count_lines_before(file: &mut File, end: u64, path: &Path) -> Result<u64, SourceError> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| fatal(path, format!("cannot be read: {e}")))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut pos, mut lines) = (0u64, 0u64);
    while pos < end {
        let want = usize::try_from(end - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = read_full(file, &mut buf[..want], path)?;
        if n == 0 {
            break;
        }
        lines += memchr_iter(b'\n', &buf[..n]).count() as u64;
        pos += n as u64;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        assert_eq!(
            parse_key(&chunk_key(10, 4_194_400, 7)),
            Some((10, 4_194_400, Some(7)))
        );
        assert_eq!(parse_key("bytes/10-20"), Some((10, 20, None)));
        assert_eq!(parse_key("bytes/10-x"), None);
        assert_eq!(parse_key("AAPL/1-2"), None);
    }
}
