//! The offline store on SQL: [`open`] by URL, and what its PostgreSQL
//! ([`super::postgres::PostgresOffline`]) and SQLite ([`super::sqlite::SqliteOffline`])
//! implementations share: the row records and their mapping ([`records`]) and one
//! implementation of [`OfflineStore`] ([`SqlOffline`]) over either dialect, so that per
//! dialect only the statements, how a list is bound, and the write path (built differently
//! on each) differ.
//!
//! `storage.url` picks the dialect: `sqlite::memory:` or `sqlite://file.db` for the embedded
//! store, `postgres://…` for PostgreSQL in the service's own schema.
//!
//! Where [`OfflineStore`]'s docs leave a choice, both dialects (and the conformance suite in
//! `tests/it/offline/cases/`) agree on:
//! - a key repeated within one [`super::WriteBatch`] keeps its last value;
//! - a [`super::ChunkDone`] of a job that does not exist fails the whole write; a chunk
//!   written again (a retried transaction) is recorded and counted once;
//! - `update_job` of a job that does not exist is an error;
//! - a label horizon of 0 is the return of C[0] over itself, 0;
//! - symbols (in `symbols` and `span`) are ordered by their bytes, whatever the database's
//!   collation;
//! - a view version below 1 is refused.

pub(crate) mod records;
pub(crate) mod shared;

pub use self::shared::SqlOffline;

use std::sync::Arc;

use stockcast_runtime::{Shutdown, StartError};
pub use stockcast_sql::{Backend, DatabaseSettings, valid_schema};

use super::postgres::{self, PostgresOffline};
use super::sqlite::{self, SqliteOffline};
use super::{OfflineStore, StoreError};

/// Opens the offline store that `settings.url` names and brings its tables up to date; a
/// PostgreSQL server that is not reachable yet is waited for until the start-up attempts
/// run out or `shutdown` fires (see [`stockcast_sql::open`]).
pub async fn open(
    settings: &DatabaseSettings,
    shutdown: &Shutdown,
) -> Result<Arc<dyn OfflineStore>, StartError> {
    let migrations = stockcast_sql::Migrations {
        postgres: &postgres::MIGRATOR,
        sqlite: &sqlite::MIGRATOR,
    };
    Ok(
        match stockcast_sql::open("offline-store", settings, migrations, shutdown).await? {
            stockcast_sql::Database::Postgres(db) => Arc::new(PostgresOffline::from(db)),
            stockcast_sql::Database::Sqlite(db) => Arc::new(SqliteOffline::from(db)),
        },
    )
}

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
    fn span_plan_skips_symbols_before_the_cursor() {
        let symbols = ["MSFT", "AAPL", "NVDA", "AAPL"].map(str::to_owned);
        assert_eq!(
            span_plan(&symbols, 100, Some(("MSFT", 500))),
            vec![("MSFT".to_owned(), 501), ("NVDA".to_owned(), 100)]
        );
        assert_eq!(span_plan(&symbols, 100, None).len(), 3);
    }
}
