//! Opening the offline store from settings, and what its two SQL backends share.
//!
//! `storage.url` picks the backend: `sqlite::memory:` or `sqlite://file.db` for the embedded
//! [`SqliteOffline`], `postgres://…` for [`PostgresOffline`] in the service's own schema.
//!
//! Where [`OfflineStore`]'s docs leave a choice, both backends (and the conformance suite in
//! `tests/support/offline_cases.rs`) agree on:
//! - a key repeated within one [`super::WriteBatch`] keeps its last value;
//! - a [`super::ChunkDone`] of a job that does not exist fails the whole write; a chunk
//!   written again (a retried transaction) is recorded and counted once;
//! - `update_job` of a job that does not exist is an error;
//! - a label horizon of 0 is the return of C[0] over itself, 0;
//! - symbols (in `symbols` and `span`) are ordered by their bytes, whatever the database's
//!   collation;
//! - a view version below 1 is refused.

use std::sync::Arc;

use super::postgres::PostgresOffline;
use super::sqlite::SqliteOffline;
use super::{OfflineStore, StoreError};

pub use stockcast_sql::{Backend, DatabaseSettings};

/// Opens the offline store that `settings.url` names and brings its tables up to date.
pub async fn open(settings: &DatabaseSettings) -> Result<Arc<dyn OfflineStore>, StoreError> {
    let url = settings.url.expose();
    match Backend::of(url) {
        Some(Backend::Sqlite) => Ok(Arc::new(SqliteOffline::open(settings).await?)),
        Some(Backend::Postgres) => Ok(Arc::new(PostgresOffline::connect(settings).await?)),
        None => Err(StoreError::Failed {
            backend: "offline",
            reason: "storage url must start with sqlite:, postgres:// or postgresql://".to_owned(),
        }),
    }
}

pub use stockcast_sql::valid_schema;

/// A database error as a store error, classified by [`stockcast_sql::classify`].
pub(crate) fn sqlx_error(backend: &'static str, error: sqlx::Error) -> StoreError {
    use stockcast_sql::SqlErrorKind;
    match stockcast_sql::classify(&error) {
        SqlErrorKind::Unavailable => StoreError::Unavailable {
            backend,
            reason: match &error {
                sqlx::Error::Database(db) => db.message().to_owned(),
                other => other.to_string(),
            },
        },
        SqlErrorKind::Corrupt => StoreError::Corrupt(format!("{backend}: {error}")),
        SqlErrorKind::AlreadyExists | SqlErrorKind::Refused => StoreError::Failed {
            backend,
            reason: error.to_string(),
        },
    }
}

/// Keeps the last occurrence of each key, in first-occurrence order: a batch that repeats a
/// key means its last value (one statement cannot update a row twice).
pub(crate) fn last_per_key<'a, T, K, F>(items: &'a [T], key: F) -> Vec<&'a T>
where
    K: std::hash::Hash + Eq,
    F: Fn(&'a T) -> K,
{
    let mut index: std::collections::HashMap<K, usize> =
        std::collections::HashMap::with_capacity(items.len());
    let mut out: Vec<&T> = Vec::with_capacity(items.len());
    for item in items {
        match index.entry(key(item)) {
            std::collections::hash_map::Entry::Occupied(slot) => out[*slot.get()] = item,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(out.len());
                out.push(item);
            }
        }
    }
    out
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

/// The symbols of a span page in answer order (byte order, deduplicated), each with the
/// first event time to read: `from`, or just after the cursor for the cursor's symbol.
/// Symbols before the cursor are left out.
pub(crate) fn span_plan(
    symbols: &[String],
    from: i64,
    after: Option<(&str, i64)>,
) -> Vec<(String, i64)> {
    let mut sorted: Vec<&String> = symbols.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
        .into_iter()
        .filter_map(|symbol| match after {
            Some((cursor, _)) if symbol.as_str() < cursor => None,
            Some((cursor, ts)) if symbol.as_str() == cursor => {
                Some((symbol.clone(), from.max(ts.saturating_add(1))))
            }
            _ => Some((symbol.clone(), from)),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_occurrence_wins_in_first_order() {
        let items = [("a", 1), ("b", 2), ("a", 3)];
        let kept = last_per_key(&items, |i| i.0);
        assert_eq!(kept, vec![&("a", 3), &("b", 2)]);
    }

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
    fn span_plan_skips_symbols_before_the_cursor() {
        let symbols = ["MSFT", "AAPL", "NVDA", "AAPL"].map(str::to_owned);
        assert_eq!(
            span_plan(&symbols, 100, Some(("MSFT", 500))),
            vec![("MSFT".to_owned(), 501), ("NVDA".to_owned(), 100)]
        );
        assert_eq!(span_plan(&symbols, 100, None).len(), 3);
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
