//! The production offline store: PostgreSQL, in the service's own schema.
//!
//! Writes are one transaction of a few set-based statements ([`write`]). Point-in-time
//! reads are one statement per call: the entity rows go in as arrays, and each row finds
//! its vector and label through primary-key index lookups (`LATERAL … ORDER BY … LIMIT 1`),
//! so a query costs a few index probes per row whatever the table size. The Rust around
//! the reads and the jobs is shared with SQLite ([`SqlOffline`]); this file holds
//! PostgreSQL's text of those statements and how it binds lists (as arrays).

mod write;

use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgQueryResult};

use super::sql::DatabaseSettings;
use super::sql::shared::{Bound, Dialect, SqlOffline, Statements};
use super::sql::sqlx_error;
use super::{StoreError, Ts, WriteBatch};

/// The feature store's PostgreSQL migrations.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const BACKEND: &str = "postgres";

fn pg(error: sqlx::Error) -> StoreError {
    sqlx_error(BACKEND, error)
}

fn setup(error: stockcast_sql::SetupError) -> StoreError {
    match error {
        stockcast_sql::SetupError::Sql(e) => pg(e),
        other => StoreError::Failed {
            backend: BACKEND,
            reason: other.to_string(),
        },
    }
}

/// Seconds clamped into the range PostgreSQL timestamps hold (no stored time lies outside).
fn clamp_ts(ts: Ts) -> Ts {
    ts.clamp(-200_000_000_000, 9_000_000_000_000)
}

impl Dialect for Postgres {
    const BACKEND: &'static str = BACKEND;
    const STATEMENTS: Statements = STATEMENTS;

    fn time(ts: Ts) -> Ts {
        clamp_ts(ts)
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn bind_keys(query: Bound<Self>, keys: &[(&str, Ts)]) -> Result<Bound<Self>, StoreError> {
        let (symbols, times): (Vec<&str>, Vec<Ts>) =
            keys.iter().map(|(s, t)| (*s, clamp_ts(*t))).unzip();
        Ok(query.bind(symbols).bind(times))
    }

    fn bind_symbols(query: Bound<Self>, symbols: &[String]) -> Result<Bound<Self>, StoreError> {
        Ok(query.bind(symbols))
    }

    fn bind_rows(query: Bound<Self>, rows: &[(String, Ts)]) -> Result<Bound<Self>, StoreError> {
        let symbols: Vec<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
        let as_of: Vec<Ts> = rows.iter().map(|(_, t)| clamp_ts(*t)).collect();
        Ok(query.bind(symbols).bind(as_of))
    }

    async fn write(pool: &PgPool, batch: &WriteBatch) -> Result<(), StoreError> {
        write::write(pool, batch).await
    }
}

/// The offline store on PostgreSQL.
pub type PostgresOffline = SqlOffline<Postgres>;

impl SqlOffline<Postgres> {
    /// A pool that connects lazily to `settings.url`, every connection on `settings.schema`.
    /// Does no I/O: call [`PostgresOffline::migrate`] before use.
    pub fn connect_lazy(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let db = stockcast_sql::SchemaPool::connect_lazy(
            settings.url.expose(),
            &settings.schema,
            settings.max_connections,
            Duration::from_millis(settings.acquire_timeout_ms),
        )
        .map_err(setup)?;
        Ok(Self { db })
    }

    /// Connects, creates the schema if missing and applies migrations.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(settings)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Creates the schema if missing and applies migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate(&MIGRATOR).await.map_err(setup)
    }

    /// Drops the schema with everything in it (tests and benchmarks).
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        self.db.drop_schema().await.map_err(setup)
    }
}

// ---------------------------------------------------------------------------------------
// statements

/// The label of entity rows `q(symbol, at)`: C[0] is the last bar closed by `at`, C[h] the
/// h-th bar after it (`$4` = h − 1). `$1` interval name, `$2` its seconds, `$3` whether a
/// label is wanted.
macro_rules! label_joins {
    () => {
        r#"
LEFT JOIN LATERAL (
    SELECT b.ts, b.close FROM bars b
    WHERE $3 AND b.symbol = q.symbol AND b.interval = $1
      AND b.ts <= q.at - $2::float8 * interval '1 second'
    ORDER BY b.ts DESC LIMIT 1
) c0 ON true
LEFT JOIN LATERAL (
    SELECT b.close FROM bars b
    WHERE b.symbol = q.symbol AND b.interval = $1 AND b.ts > c0.ts
    ORDER BY b.ts OFFSET $4 LIMIT 1
) ch ON true
"#
    };
}

/// Columns of a job row, times as epoch seconds, the id as text and the symbols as a JSON
/// array (a macro, so queries stay `&'static str`).
macro_rules! job_columns {
    () => {
        "job_id::text AS job_id, request_id, view, version, \
         array_to_json(symbols)::text AS symbols, \
         extract(epoch FROM from_ts)::bigint AS from_ts, \
         extract(epoch FROM until_ts)::bigint AS until_ts, chunk_seconds, state, \
         chunks_done, chunks_total, bars_read, vectors_written, \
         extract(epoch FROM created_at)::bigint AS created_at, \
         extract(epoch FROM started_at)::bigint AS started_at, \
         extract(epoch FROM finished_at)::bigint AS finished_at, \
         extract(epoch FROM updated_at)::bigint AS updated_at, error"
    };
}

const STATEMENTS: Statements = Statements {
    view: "SELECT definition, extract(epoch FROM registered_at)::int8 AS registered_at \
           FROM views WHERE view = $1 AND version = $2",
    bars: "SELECT extract(epoch FROM ts)::bigint AS ts, open, high, low, close, volume \
           FROM bars WHERE symbol = $1 AND interval = $2 \
             AND ts >= to_timestamp($3) AND ts < to_timestamp($4) \
           ORDER BY ts LIMIT $5",
    bars_at: "SELECT b.symbol, extract(epoch FROM b.ts)::bigint AS ts, \
                     b.open, b.high, b.low, b.close, b.volume, b.revision \
              FROM unnest($2::text[], $3::bigint[]) AS k(symbol, ts) \
              JOIN bars b ON b.symbol = k.symbol AND b.interval = $1 \
                         AND b.ts = to_timestamp(k.ts)",
    states: "SELECT symbol, extract(epoch FROM last_bar_ts)::bigint AS last_bar_ts, \
                    bars_seen, state \
             FROM view_states WHERE view = $1 AND version = $2 AND symbol = ANY($3)",
    point_in_time: concat!(
        r#"
SELECT q.ord, extract(epoch FROM f.event_time)::bigint AS event_time, f.values AS vector,
       c0.close AS c0, ch.close AS ch
FROM (
    SELECT u.symbol, to_timestamp(u.as_of) AS at, u.ord
    FROM unnest($7::text[], $8::bigint[]) WITH ORDINALITY AS u(symbol, as_of, ord)
) q
LEFT JOIN LATERAL (
    SELECT r.event_time, r.values FROM feature_rows r
    WHERE r.view = $5 AND r.version = $6 AND r.symbol = q.symbol AND r.event_time <= q.at
    ORDER BY r.event_time DESC LIMIT 1
) f ON true
"#,
        label_joins!(),
        "ORDER BY q.ord"
    ),
    // The rows of symbol `$7` from `$8` up to `$9`, at most `$10`; labels are looked up for
    // those rows only.
    span: concat!(
        r#"
SELECT extract(epoch FROM q.at)::bigint AS event_time, q.values AS vector,
       c0.close AS c0, ch.close AS ch
FROM (
    SELECT r.symbol, r.event_time AS at, r.values FROM feature_rows r
    WHERE r.view = $5 AND r.version = $6 AND r.symbol = $7
      AND r.event_time >= to_timestamp($8) AND r.event_time < to_timestamp($9)
    ORDER BY r.event_time LIMIT $10
) q
"#,
        label_joins!(),
        "ORDER BY q.at"
    ),
    insert_job: concat!(
        "INSERT INTO materialization_jobs (job_id, request_id, view, version, symbols, \
            from_ts, until_ts, chunk_seconds, state, chunks_done, chunks_total, bars_read, \
            vectors_written, created_at, started_at, finished_at, updated_at, error) \
         VALUES ($1::uuid, $2, $3, $4, ARRAY(SELECT json_array_elements_text($5::json)), \
            to_timestamp($6), to_timestamp($7), $8, $9, $10, $11, $12, $13, \
            to_timestamp($14), to_timestamp($15), to_timestamp($16), to_timestamp($17), $18) \
         ON CONFLICT (request_id) DO NOTHING RETURNING ",
        job_columns!()
    ),
    job_by_request: concat!(
        "SELECT ",
        job_columns!(),
        " FROM materialization_jobs WHERE request_id = $1"
    ),
    job: concat!(
        "SELECT ",
        job_columns!(),
        " FROM materialization_jobs WHERE job_id = $1::uuid"
    ),
    update_job: "UPDATE materialization_jobs SET state = $2, started_at = to_timestamp($3), \
                    finished_at = to_timestamp($4), updated_at = to_timestamp($5), error = $6 \
                 WHERE job_id = $1::uuid",
    unfinished_jobs: concat!(
        "SELECT ",
        job_columns!(),
        " FROM materialization_jobs WHERE state IN ('pending', 'running') \
          ORDER BY created_at, job_id"
    ),
    done_chunks: "SELECT chunk, state FROM materialization_chunks \
                  WHERE job_id = $1::uuid ORDER BY chunk",
};
