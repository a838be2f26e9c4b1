//! The embedded offline store: SQLite in memory or in one file, the same tables and the same
//! semantics as PostgreSQL.
//!
//! Times are seconds since the epoch; a feature vector is a BLOB of little-endian `f64`
//! (SQLite stores a NaN REAL as NULL, a BLOB keeps every bit). Point-in-time reads are one
//! statement per call: the entity rows go in as one JSON array and each finds its vector and
//! label through primary-key lookups. The Rust around the reads and the jobs is shared with
//! PostgreSQL ([`SqlOffline`]); this file holds SQLite's text of those statements, how it
//! binds lists (as JSON) and its write path.

use sqlx::sqlite::{SqlitePool, SqliteQueryResult};
use sqlx::{Sqlite, Transaction};

use stockcast_sql::SchemaPool;

use super::sql::DatabaseSettings;
use super::sql::records::encode_vector;
use super::sql::shared::{Bound, Dialect, SqlOffline, Statements};
use super::sql::sqlx_error;
use super::{ChunkDone, StoreError, Ts, WriteBatch};

/// The feature store's SQLite migrations.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const BACKEND: &str = "sqlite";

fn lite(error: sqlx::Error) -> StoreError {
    sqlx_error(BACKEND, error)
}

fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Failed {
        backend: BACKEND,
        reason: format!("encoding query parameters: {e}"),
    })
}

impl Dialect for Sqlite {
    const BACKEND: &'static str = BACKEND;
    const STATEMENTS: Statements = STATEMENTS;

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn bind_keys(query: Bound<Self>, keys: &[(&str, Ts)]) -> Result<Bound<Self>, StoreError> {
        Ok(query.bind(json(&keys)?))
    }

    fn bind_symbols(query: Bound<Self>, symbols: &[String]) -> Result<Bound<Self>, StoreError> {
        Ok(query.bind(json(&symbols)?))
    }

    fn bind_rows(query: Bound<Self>, rows: &[(String, Ts)]) -> Result<Bound<Self>, StoreError> {
        Ok(query.bind(json(&rows)?))
    }

    async fn write(pool: &SqlitePool, batch: &WriteBatch) -> Result<(), StoreError> {
        write_batch(pool, batch).await
    }
}

/// The offline store on SQLite.
pub type SqliteOffline = SqlOffline<Sqlite>;

impl SqlOffline<Sqlite> {
    /// Opens (creating if missing) the database at `settings.url` (`sqlite::memory:` or
    /// `sqlite://path/to/file.db`) and applies migrations.
    pub async fn open(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let pool = stockcast_sql::sqlite_pool(settings).await.map_err(lite)?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Failed {
            backend: BACKEND,
            reason: format!("migrations: {e}"),
        })?;
        Ok(Self::from(SchemaPool::new(pool, "")))
    }
}

// ---------------------------------------------------------------------------------------
// statements

const UPSERT_BAR: &str = "\
INSERT INTO bars (symbol, interval, ts, open, high, low, close, volume, revision) \
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
ON CONFLICT (symbol, interval, ts) DO UPDATE \
    SET open = excluded.open, high = excluded.high, low = excluded.low, \
        close = excluded.close, volume = excluded.volume, revision = excluded.revision \
    WHERE bars.revision <= excluded.revision";

const UPSERT_ROW: &str = "\
INSERT INTO feature_rows (view, version, symbol, event_time, vals) VALUES (?1, ?2, ?3, ?4, ?5) \
ON CONFLICT (view, version, symbol, event_time) DO UPDATE SET vals = excluded.vals";

const KEEP_ROW: &str = "\
INSERT INTO feature_rows (view, version, symbol, event_time, vals) VALUES (?1, ?2, ?3, ?4, ?5) \
ON CONFLICT (view, version, symbol, event_time) DO NOTHING";

const UPSERT_STATE: &str = "\
INSERT INTO view_states (view, version, symbol, last_bar_ts, bars_seen, state) \
VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
ON CONFLICT (view, version, symbol) DO UPDATE \
    SET last_bar_ts = excluded.last_bar_ts, bars_seen = excluded.bars_seen, \
        state = excluded.state, updated_at = unixepoch() \
    WHERE (view_states.last_bar_ts, view_states.bars_seen) <= (excluded.last_bar_ts, excluded.bars_seen)";

/// Columns of a job row (a macro, so queries stay `&'static str`).
macro_rules! job_columns {
    () => {
        "job_id, request_id, view, version, symbols, from_ts, until_ts, chunk_seconds, state, \
         chunks_done, chunks_total, bars_read, vectors_written, created_at, started_at, \
         finished_at, updated_at, error"
    };
}

const STATEMENTS: Statements = Statements {
    view: "SELECT definition, registered_at FROM views WHERE view = ?1 AND version = ?2",
    bars: "SELECT ts, open, high, low, close, volume FROM bars \
           WHERE symbol = ?1 AND interval = ?2 AND ts >= ?3 AND ts < ?4 ORDER BY ts LIMIT ?5",
    bars_at: "WITH k AS (SELECT json_extract(value, '$[0]') AS symbol, \
                                json_extract(value, '$[1]') AS ts FROM json_each(?2)) \
              SELECT b.symbol, b.ts, b.open, b.high, b.low, b.close, b.volume, b.revision \
              FROM k JOIN bars b ON b.symbol = k.symbol AND b.interval = ?1 AND b.ts = k.ts",
    states: "SELECT symbol, last_bar_ts, bars_seen, state FROM view_states \
             WHERE view = ?1 AND version = ?2 AND symbol IN (SELECT value FROM json_each(?3))",
    // Entity rows `?7` = `[[symbol, as_of], …]`; labels as in PostgreSQL: `?1` interval name,
    // `?2` its seconds, `?3` whether a label is wanted, `?4` = h − 1.
    point_in_time: r#"
WITH q AS (
    SELECT CAST(key AS INTEGER) AS ord, json_extract(value, '$[0]') AS symbol,
           json_extract(value, '$[1]') AS at
    FROM json_each(?7)
),
p AS (
    SELECT q.ord, q.symbol,
           (SELECT r.event_time FROM feature_rows r
            WHERE r.view = ?5 AND r.version = ?6 AND r.symbol = q.symbol AND r.event_time <= q.at
            ORDER BY r.event_time DESC LIMIT 1) AS event_time,
           (SELECT b.ts FROM bars b
            WHERE ?3 AND b.symbol = q.symbol AND b.interval = ?1 AND b.ts <= q.at - ?2
            ORDER BY b.ts DESC LIMIT 1) AS c0_ts
    FROM q
)
SELECT p.ord, p.event_time, r.vals AS vector, c0.close AS c0,
       (SELECT b.close FROM bars b
        WHERE b.symbol = p.symbol AND b.interval = ?1 AND b.ts > p.c0_ts
        ORDER BY b.ts LIMIT 1 OFFSET ?4) AS ch
FROM p
LEFT JOIN feature_rows r
    ON r.view = ?5 AND r.version = ?6 AND r.symbol = p.symbol AND r.event_time = p.event_time
LEFT JOIN bars c0 ON c0.symbol = p.symbol AND c0.interval = ?1 AND c0.ts = p.c0_ts
ORDER BY p.ord
"#,
    // The rows of one symbol `?7` with `?8 <= event_time < ?9`, at most `?10`, with labels.
    span: r#"
SELECT p.event_time, p.vals AS vector, c0.close AS c0,
       (SELECT b.close FROM bars b
        WHERE b.symbol = ?7 AND b.interval = ?1 AND b.ts > p.c0_ts
        ORDER BY b.ts LIMIT 1 OFFSET ?4) AS ch
FROM (
    SELECT r.event_time, r.vals,
           (SELECT b.ts FROM bars b
            WHERE ?3 AND b.symbol = ?7 AND b.interval = ?1 AND b.ts <= r.event_time - ?2
            ORDER BY b.ts DESC LIMIT 1) AS c0_ts
    FROM feature_rows r
    WHERE r.view = ?5 AND r.version = ?6 AND r.symbol = ?7
      AND r.event_time >= ?8 AND r.event_time < ?9
    ORDER BY r.event_time LIMIT ?10
) p
LEFT JOIN bars c0 ON c0.symbol = ?7 AND c0.interval = ?1 AND c0.ts = p.c0_ts
ORDER BY p.event_time
"#,
    insert_job: concat!(
        "INSERT INTO materialization_jobs (",
        job_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
         ON CONFLICT (request_id) DO NOTHING RETURNING ",
        job_columns!()
    ),
    job_by_request: concat!(
        "SELECT ",
        job_columns!(),
        " FROM materialization_jobs WHERE request_id = ?1"
    ),
    job: concat!(
        "SELECT ",
        job_columns!(),
        " FROM materialization_jobs WHERE job_id = ?1"
    ),
    update_job: "UPDATE materialization_jobs SET state = ?2, started_at = ?3, finished_at = ?4, \
                    updated_at = ?5, error = ?6 WHERE job_id = ?1",
    unfinished_jobs: concat!(
        "SELECT ",
        job_columns!(),
        " FROM materialization_jobs WHERE state IN ('pending', 'running') \
          ORDER BY created_at, job_id"
    ),
    done_chunks: "SELECT chunk, state FROM materialization_chunks WHERE job_id = ?1 ORDER BY chunk",
};

// ---------------------------------------------------------------------------------------
// writes

async fn chunk_done(
    tx: &mut Transaction<'static, Sqlite>,
    chunk: &ChunkDone,
) -> Result<(), StoreError> {
    let job_id = chunk.job_id.to_string();
    let recorded = sqlx::query(
        "INSERT INTO materialization_chunks (job_id, chunk, state, bars_read, vectors_written) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (job_id, chunk) DO NOTHING",
    )
    .bind(&job_id)
    .bind(chunk.chunk)
    .bind(chunk.state.as_slice())
    .bind(chunk.bars_read)
    .bind(chunk.vectors_written)
    .execute(&mut **tx)
    .await
    .map_err(lite)?
    .rows_affected();
    // Only the chunk's first recording advances the job's counters.
    if recorded == 1 {
        sqlx::query(
            "UPDATE materialization_jobs SET chunks_done = chunks_done + 1, \
                bars_read = bars_read + ?2, vectors_written = vectors_written + ?3, \
                updated_at = unixepoch() \
             WHERE job_id = ?1",
        )
        .bind(&job_id)
        .bind(chunk.bars_read)
        .bind(chunk.vectors_written)
        .execute(&mut **tx)
        .await
        .map_err(lite)?;
    }
    Ok(())
}

/// Applies `batch` in one transaction, row by row in batch order, so a repeated key keeps
/// its last value.
async fn write_batch(pool: &SqlitePool, batch: &WriteBatch) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(lite)?;
    for (i, bar) in batch.bars.iter().enumerate() {
        sqlx::query(UPSERT_BAR)
            .bind(bar.symbol.as_str())
            .bind(bar.interval.as_str())
            .bind(bar.ts)
            .bind(bar.open)
            .bind(bar.high)
            .bind(bar.low)
            .bind(bar.close)
            .bind(bar.volume)
            .bind(batch.revision(i))
            .execute(&mut *tx)
            .await
            .map_err(lite)?;
    }
    for view in &batch.views {
        let statement = if view.keep_existing {
            KEEP_ROW
        } else {
            UPSERT_ROW
        };
        for row in &view.rows {
            sqlx::query(statement)
                .bind(view.view.name.as_str())
                .bind(view.view.version)
                .bind(row.symbol.as_str())
                .bind(row.event_time)
                .bind(encode_vector(&row.values))
                .execute(&mut *tx)
                .await
                .map_err(lite)?;
        }
        for state in &view.states {
            sqlx::query(UPSERT_STATE)
                .bind(view.view.name.as_str())
                .bind(view.view.version)
                .bind(state.symbol.as_str())
                .bind(state.last_bar_ts)
                .bind(state.bars_seen)
                .bind(state.state.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(lite)?;
        }
    }
    if let Some(chunk) = &batch.chunk {
        chunk_done(&mut tx, chunk).await?;
    }
    tx.commit().await.map_err(lite)
}
