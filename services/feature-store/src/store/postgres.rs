//! The production offline store: PostgreSQL, in the service's own schema.
//!
//! Writes are one transaction of a few set-based statements: each table's rows go as column
//! arrays through `UNNEST` (feature vectors as one flat `float8[]` sliced per row), upserted
//! with `ON CONFLICT DO UPDATE`. Point-in-time reads are one statement per call: the entity
//! rows go in as arrays, and each row finds its vector and label through primary-key index
//! lookups (`LATERAL … ORDER BY … LIMIT 1`), so a query costs a few index probes per row
//! whatever the table size.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row, Transaction};
use stockcast_market::{Bar, Interval};
use uuid::Uuid;

use super::offline::{DatabaseSettings, last_per_key, span_plan, sqlx_error};
use super::{
    FeatureRow, HistoricalRow, JobRecord, JobState, OfflineStore, OnlineVector, PointInTimeQuery,
    RegisteredView, SpanQuery, StateSnapshot, StoreError, Ts, ViewId, WriteBatch,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const BACKEND: &str = "postgres";

/// Most rows one statement carries; a bigger batch takes several (same transaction).
const ROWS_PER_STATEMENT: usize = 50_000;
/// Most feature values one statement carries (64 MiB of `float8`).
const VALUES_PER_STATEMENT: usize = 8 << 20;

fn pg(error: sqlx::Error) -> StoreError {
    sqlx_error(BACKEND, error)
}

/// Seconds clamped into the range PostgreSQL timestamps hold (no stored time lies outside).
fn setup(error: stockcast_sql::SetupError) -> StoreError {
    match error {
        stockcast_sql::SetupError::Sql(e) => pg(e),
        other => StoreError::Failed {
            backend: BACKEND,
            reason: other.to_string(),
        },
    }
}

fn clamp_ts(ts: Ts) -> Ts {
    ts.clamp(-200_000_000_000, 9_000_000_000_000)
}

/// The offline store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresOffline {
    pool: PgPool,
    schema: String,
}

impl PostgresOffline {
    /// A pool that connects lazily to `settings.url`, every connection on `settings.schema`.
    /// Does no I/O: call [`PostgresOffline::migrate`] before use.
    pub fn connect_lazy(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let pool = stockcast_sql::schema_pool(
            settings.url.expose(),
            &settings.schema,
            settings.max_connections,
            Duration::from_millis(settings.acquire_timeout_ms),
        )
        .map_err(setup)?;
        Ok(Self {
            pool,
            schema: settings.schema.clone(),
        })
    }

    /// Connects, creates the schema if missing and applies migrations.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(settings)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Creates the schema if missing and applies migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        stockcast_sql::migrate(&self.pool, &self.schema, &MIGRATOR)
            .await
            .map_err(setup)
    }

    /// Drops the schema with everything in it (tests and benchmarks).
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        stockcast_sql::drop_schema(&self.pool, &self.schema)
            .await
            .map_err(setup)
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

// ---------------------------------------------------------------------------------------
// statements

macro_rules! bars_from_arrays {
    () => {
        r#"
INSERT INTO bars AS b (symbol, interval, ts, open, high, low, close, volume, revision)
SELECT symbol, interval, to_timestamp(ts), open, high, low, close, volume, revision
FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::float8[],
            $6::float8[], $7::float8[], $8::float8[], $9::int4[])
    AS t(symbol, interval, ts, open, high, low, close, volume, revision)"#
    };
}

/// New bars (the common case); [`UPSERT_BARS`] when some are stored already.
const INSERT_BARS: &str = bars_from_arrays!();

const UPSERT_BARS: &str = concat!(
    bars_from_arrays!(),
    r#"
ON CONFLICT (symbol, interval, ts) DO UPDATE
    SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
        close = EXCLUDED.close, volume = EXCLUDED.volume, revision = EXCLUDED.revision
    WHERE b.revision <= EXCLUDED.revision
"#
);

/// Row i's vector is `$5[$6[i]:$7[i]]` of one flat array (no per-row array to encode).
macro_rules! rows_from_arrays {
    () => {
        r#"
INSERT INTO feature_rows AS f (view, version, symbol, event_time, values)
SELECT $1, $2, u.symbol, to_timestamp(u.event_time), ($5::float8[])[u.lo:u.hi]
FROM UNNEST($3::text[], $4::bigint[], $6::int4[], $7::int4[]) AS u(symbol, event_time, lo, hi)"#
    };
}

/// New rows (the common case); [`UPSERT_ROWS`] when some are stored already.
const INSERT_ROWS: &str = rows_from_arrays!();

/// Fills in missing rows only (materialization), keeping stored ones.
const KEEP_ROWS: &str = concat!(
    rows_from_arrays!(),
    "\nON CONFLICT (view, version, symbol, event_time) DO NOTHING"
);

const UPSERT_ROWS: &str = concat!(
    rows_from_arrays!(),
    "\nON CONFLICT (view, version, symbol, event_time) DO UPDATE SET values = EXCLUDED.values"
);

const UPSERT_STATES: &str = r#"
INSERT INTO view_states AS s (view, version, symbol, last_bar_ts, bars_seen, state)
SELECT $1, $2, u.symbol, to_timestamp(u.last_bar_ts), u.bars_seen, u.state
FROM UNNEST($3::text[], $4::bigint[], $5::bigint[], $6::bytea[])
    AS u(symbol, last_bar_ts, bars_seen, state)
ON CONFLICT (view, version, symbol) DO UPDATE
    SET last_bar_ts = EXCLUDED.last_bar_ts, bars_seen = EXCLUDED.bars_seen,
        state = EXCLUDED.state, updated_at = now()
    -- A snapshot never moves backwards (a consumer that lost its partition finishing late).
    WHERE (s.last_bar_ts, s.bars_seen) <= (EXCLUDED.last_bar_ts, EXCLUDED.bars_seen)
"#;

/// Records a chunk once; only its first recording advances the job's counters.
const CHUNK_DONE: &str = r#"
WITH recorded AS (
    INSERT INTO materialization_chunks (job_id, chunk, state, bars_read, vectors_written)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (job_id, chunk) DO NOTHING
    RETURNING bars_read, vectors_written
)
UPDATE materialization_jobs AS j
SET chunks_done = j.chunks_done + 1,
    bars_read = j.bars_read + recorded.bars_read,
    vectors_written = j.vectors_written + recorded.vectors_written,
    updated_at = now()
FROM recorded
WHERE j.job_id = $1
"#;

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

const POINT_IN_TIME: &str = concat!(
    r#"
SELECT q.ord, extract(epoch FROM f.event_time)::bigint AS event_time, f.values,
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
);

/// One page: per symbol (in `$7` order) its rows from `$8[i]` up to `$9`, cut at `$10`;
/// labels are looked up for the page's rows only.
const SPAN: &str = concat!(
    r#"
SELECT q.symbol, extract(epoch FROM q.at)::bigint AS event_time, q.values,
       c0.close AS c0, ch.close AS ch
FROM (
    SELECT s.ord, s.symbol, r.event_time AS at, r.values
    FROM unnest($7::text[], $8::bigint[]) WITH ORDINALITY AS s(symbol, lo, ord)
    CROSS JOIN LATERAL (
        SELECT r.event_time, r.values FROM feature_rows r
        WHERE r.view = $5 AND r.version = $6 AND r.symbol = s.symbol
          AND r.event_time >= to_timestamp(s.lo) AND r.event_time < to_timestamp($9)
        ORDER BY r.event_time LIMIT $10
    ) r
    ORDER BY s.ord, r.event_time
    LIMIT $10
) q
"#,
    label_joins!(),
    "ORDER BY q.ord, q.at"
);

/// Columns of a job row, times as epoch seconds (a macro, so queries stay `&'static str`).
macro_rules! job_columns {
    () => {
        "job_id, request_id, view, version, symbols, \
         extract(epoch FROM from_ts)::bigint AS from_ts, \
         extract(epoch FROM until_ts)::bigint AS until_ts, chunk_seconds, state, \
         chunks_done, chunks_total, bars_read, vectors_written, \
         extract(epoch FROM created_at)::bigint AS created_at, \
         extract(epoch FROM started_at)::bigint AS started_at, \
         extract(epoch FROM finished_at)::bigint AS finished_at, \
         extract(epoch FROM updated_at)::bigint AS updated_at, error"
    };
}

fn job_from_row(row: &PgRow) -> Result<JobRecord, StoreError> {
    let state: String = row.try_get("state").map_err(pg)?;
    Ok(JobRecord {
        id: row.try_get("job_id").map_err(pg)?,
        request_id: row.try_get("request_id").map_err(pg)?,
        view: ViewId::new(
            row.try_get::<String, _>("view").map_err(pg)?,
            row.try_get("version").map_err(pg)?,
        ),
        symbols: row.try_get("symbols").map_err(pg)?,
        from: row.try_get("from_ts").map_err(pg)?,
        until: row.try_get("until_ts").map_err(pg)?,
        chunk_seconds: row.try_get("chunk_seconds").map_err(pg)?,
        state: JobState::parse(&state)?,
        chunks_done: row.try_get("chunks_done").map_err(pg)?,
        chunks_total: row.try_get("chunks_total").map_err(pg)?,
        bars_read: row.try_get("bars_read").map_err(pg)?,
        vectors_written: row.try_get("vectors_written").map_err(pg)?,
        created_at: row.try_get("created_at").map_err(pg)?,
        started_at: row.try_get("started_at").map_err(pg)?,
        finished_at: row.try_get("finished_at").map_err(pg)?,
        updated_at: row.try_get("updated_at").map_err(pg)?,
        error: row.try_get("error").map_err(pg)?,
    })
}

fn bar_from_row(row: &PgRow, symbol: String, interval: Interval) -> Result<Bar, StoreError> {
    Ok(Bar {
        symbol,
        interval,
        ts: row.try_get("ts").map_err(pg)?,
        open: row.try_get("open").map_err(pg)?,
        high: row.try_get("high").map_err(pg)?,
        low: row.try_get("low").map_err(pg)?,
        close: row.try_get("close").map_err(pg)?,
        volume: row.try_get("volume").map_err(pg)?,
    })
}

/// `statement` with the label parameters `$1..$4` of [`label_joins!`] and the view as
/// `$5, $6`.
fn labelled<'q>(
    statement: &'static str,
    interval: Interval,
    horizon: Option<u32>,
    view: &'q ViewId,
) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(statement)
        .bind(interval.as_str())
        .bind(interval.seconds() as f64)
        .bind(horizon.is_some())
        .bind(i64::from(horizon.unwrap_or(1).saturating_sub(1)))
        .bind(view.name.as_str())
        .bind(view.version)
}

fn historical_row(
    symbol: String,
    as_of: Ts,
    row: &PgRow,
    horizon: Option<u32>,
) -> Result<HistoricalRow, StoreError> {
    let event_time: Option<i64> = row.try_get("event_time").map_err(pg)?;
    let values: Option<Vec<f64>> = row.try_get("values").map_err(pg)?;
    let vector = match (event_time, values) {
        (Some(event_time), Some(values)) => Some(OnlineVector { event_time, values }),
        _ => None,
    };
    Ok(HistoricalRow {
        symbol,
        as_of,
        vector,
        label: super::offline::label(
            horizon,
            row.try_get("c0").map_err(pg)?,
            row.try_get("ch").map_err(pg)?,
        ),
    })
}

// ---------------------------------------------------------------------------------------
// writes

/// Runs the plain insert `bind(insert)` under a savepoint; if some key is stored already
/// (a unique violation), undoes it and runs the upsert `bind(upsert)` instead. A plain
/// insert costs about half an upsert per row (no speculative insertion, a third fewer WAL
/// records), and new keys are the common case: the stream appends, materialization fills
/// new versions.
async fn insert_or_upsert<'q, F>(
    tx: &mut Transaction<'static, Postgres>,
    bind: F,
    insert: &'static str,
    upsert: &'static str,
) -> Result<(), StoreError>
where
    F: Fn(&'static str) -> Query<'q, Postgres, PgArguments>,
{
    sqlx::query("SAVEPOINT fresh_keys")
        .execute(&mut **tx)
        .await
        .map_err(pg)?;
    match bind(insert).execute(&mut **tx).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {
            sqlx::query("ROLLBACK TO SAVEPOINT fresh_keys")
                .execute(&mut **tx)
                .await
                .map_err(pg)?;
            bind(upsert).execute(&mut **tx).await.map_err(pg)?;
            Ok(())
        }
        Err(error) => Err(pg(error)),
    }
}

/// One statement's share of bars, as the arrays [`UPSERT_BARS`] takes.
struct BarColumns<'a> {
    symbols: Vec<&'a str>,
    intervals: Vec<&'static str>,
    ts: Vec<i64>,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
    revisions: Vec<i32>,
}

impl<'a> BarColumns<'a> {
    fn of(bars: &[&'a (&'a Bar, i32)]) -> Self {
        let column = |f: fn(&Bar) -> f64| bars.iter().map(|(b, _)| f(b)).collect::<Vec<f64>>();
        Self {
            symbols: bars.iter().map(|(b, _)| b.symbol.as_str()).collect(),
            intervals: bars.iter().map(|(b, _)| b.interval.as_str()).collect(),
            ts: bars.iter().map(|(b, _)| clamp_ts(b.ts)).collect(),
            open: column(|b| b.open),
            high: column(|b| b.high),
            low: column(|b| b.low),
            close: column(|b| b.close),
            volume: column(|b| b.volume),
            revisions: bars.iter().map(|(_, r)| *r).collect(),
        }
    }

    fn bind(&self, statement: &'static str) -> Query<'_, Postgres, PgArguments> {
        sqlx::query(statement)
            .bind(&self.symbols)
            .bind(&self.intervals)
            .bind(&self.ts)
            .bind(&self.open)
            .bind(&self.high)
            .bind(&self.low)
            .bind(&self.close)
            .bind(&self.volume)
            .bind(&self.revisions)
    }
}

async fn upsert_bars(
    tx: &mut Transaction<'static, Postgres>,
    batch: &WriteBatch,
) -> Result<(), StoreError> {
    let revised: Vec<(&Bar, i32)> = batch
        .bars
        .iter()
        .enumerate()
        .map(|(i, b)| (b, batch.revision(i)))
        .collect();
    let bars = last_per_key(&revised, |(b, _)| (b.symbol.as_str(), b.interval, b.ts));
    for part in bars.chunks(ROWS_PER_STATEMENT) {
        let columns = BarColumns::of(part);
        insert_or_upsert(tx, |sql| columns.bind(sql), INSERT_BARS, UPSERT_BARS).await?;
    }
    Ok(())
}

/// One statement's share of feature rows, as the arrays [`UPSERT_ROWS`] takes.
#[derive(Default)]
struct RowColumns<'a> {
    symbols: Vec<&'a str>,
    event_times: Vec<i64>,
    values: Vec<f64>,
    lo: Vec<i32>,
    hi: Vec<i32>,
}

impl<'a> RowColumns<'a> {
    fn push(&mut self, row: &'a FeatureRow) -> Result<(), StoreError> {
        let too_long = || StoreError::Failed {
            backend: BACKEND,
            reason: "too many feature values in one statement".to_owned(),
        };
        let lo = i32::try_from(self.values.len() + 1).map_err(|_| too_long())?;
        self.values.extend_from_slice(&row.values);
        let hi = i32::try_from(self.values.len()).map_err(|_| too_long())?;
        self.symbols.push(&row.symbol);
        self.event_times.push(clamp_ts(row.event_time));
        self.lo.push(lo);
        self.hi.push(hi);
        Ok(())
    }

    fn full(&self) -> bool {
        self.symbols.len() >= ROWS_PER_STATEMENT || self.values.len() >= VALUES_PER_STATEMENT
    }

    fn bind<'q>(
        &'q self,
        view: &'q ViewId,
        statement: &'static str,
    ) -> Query<'q, Postgres, PgArguments> {
        sqlx::query(statement)
            .bind(view.name.as_str())
            .bind(view.version)
            .bind(&self.symbols)
            .bind(&self.event_times)
            .bind(&self.values)
            .bind(&self.lo)
            .bind(&self.hi)
    }

    async fn flush(
        &mut self,
        tx: &mut Transaction<'static, Postgres>,
        view: &ViewId,
        keep_existing: bool,
    ) -> Result<(), StoreError> {
        if self.symbols.is_empty() {
            return Ok(());
        }
        let columns = std::mem::take(self);
        let conflicting = if keep_existing {
            KEEP_ROWS
        } else {
            UPSERT_ROWS
        };
        insert_or_upsert(tx, |sql| columns.bind(view, sql), INSERT_ROWS, conflicting).await
    }
}

async fn upsert_rows(
    tx: &mut Transaction<'static, Postgres>,
    view: &ViewId,
    rows: &[FeatureRow],
    keep_existing: bool,
) -> Result<(), StoreError> {
    let rows = last_per_key(rows, |r| (r.symbol.as_str(), r.event_time));
    let mut columns = RowColumns::default();
    for row in rows {
        columns.push(row)?;
        if columns.full() {
            columns.flush(tx, view, keep_existing).await?;
        }
    }
    columns.flush(tx, view, keep_existing).await
}

async fn upsert_states(
    tx: &mut Transaction<'static, Postgres>,
    view: &ViewId,
    states: &[StateSnapshot],
) -> Result<(), StoreError> {
    let states = last_per_key(states, |s| s.symbol.as_str());
    for part in states.chunks(ROWS_PER_STATEMENT) {
        sqlx::query(UPSERT_STATES)
            .bind(view.name.as_str())
            .bind(view.version)
            .bind(part.iter().map(|s| s.symbol.as_str()).collect::<Vec<_>>())
            .bind(
                part.iter()
                    .map(|s| clamp_ts(s.last_bar_ts))
                    .collect::<Vec<_>>(),
            )
            .bind(part.iter().map(|s| s.bars_seen).collect::<Vec<_>>())
            .bind(part.iter().map(|s| s.state.as_slice()).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await
            .map_err(pg)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// the trait

#[async_trait]
impl OfflineStore for PostgresOffline {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn register_view(
        &self,
        view: &ViewId,
        definition: &str,
    ) -> Result<RegisteredView, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO views (view, version, definition) VALUES ($1, $2, $3) \
             ON CONFLICT (view, version) DO NOTHING",
        )
        .bind(view.name.as_str())
        .bind(view.version)
        .bind(definition)
        .execute(&self.pool)
        .await
        .map_err(pg)?
        .rows_affected();
        // A new statement, so a definition committed concurrently is seen.
        let (definition, registered_at): (String, i64) = sqlx::query_as(
            "SELECT definition, extract(epoch FROM registered_at)::int8 FROM views WHERE view = $1 AND version = $2",
        )
        .bind(view.name.as_str())
        .bind(view.version)
        .fetch_one(&self.pool)
        .await
        .map_err(pg)?;
        Ok(RegisteredView {
            definition,
            registered_at,
            new: inserted == 1,
        })
    }

    async fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(pg)?;
        if !batch.bars.is_empty() {
            upsert_bars(&mut tx, batch).await?;
        }
        for view in &batch.views {
            if !view.rows.is_empty() {
                upsert_rows(&mut tx, &view.view, &view.rows, view.keep_existing).await?;
            }
            if !view.states.is_empty() {
                upsert_states(&mut tx, &view.view, &view.states).await?;
            }
        }
        if let Some(chunk) = &batch.chunk {
            sqlx::query(CHUNK_DONE)
                .bind(chunk.job_id)
                .bind(chunk.chunk)
                .bind(chunk.state.as_slice())
                .bind(chunk.bars_read)
                .bind(chunk.vectors_written)
                .execute(&mut *tx)
                .await
                .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn bars(
        &self,
        symbol: &str,
        interval: Interval,
        from: Ts,
        until: Ts,
        limit: usize,
    ) -> Result<Vec<Bar>, StoreError> {
        let rows = sqlx::query(
            "SELECT extract(epoch FROM ts)::bigint AS ts, open, high, low, close, volume \
             FROM bars WHERE symbol = $1 AND interval = $2 \
               AND ts >= to_timestamp($3) AND ts < to_timestamp($4) \
             ORDER BY ts LIMIT $5",
        )
        .bind(symbol)
        .bind(interval.as_str())
        .bind(clamp_ts(from))
        .bind(clamp_ts(until))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.iter()
            .map(|row| bar_from_row(row, symbol.to_owned(), interval))
            .collect()
    }

    async fn bars_at(
        &self,
        interval: Interval,
        keys: &[(String, Ts)],
    ) -> Result<Vec<(Bar, i32)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: HashSet<(&str, Ts)> = keys.iter().map(|(s, t)| (s.as_str(), *t)).collect();
        let (symbols, times): (Vec<&str>, Vec<Ts>) =
            keys.into_iter().map(|(s, t)| (s, clamp_ts(t))).unzip();
        let rows = sqlx::query(
            "SELECT b.symbol, extract(epoch FROM b.ts)::bigint AS ts, \
                    b.open, b.high, b.low, b.close, b.volume, b.revision \
             FROM unnest($2::text[], $3::bigint[]) AS k(symbol, ts) \
             JOIN bars b ON b.symbol = k.symbol AND b.interval = $1 \
                        AND b.ts = to_timestamp(k.ts)",
        )
        .bind(interval.as_str())
        .bind(symbols)
        .bind(times)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.iter()
            .map(|row| {
                let symbol: String = row.try_get("symbol").map_err(pg)?;
                let revision: i32 = row.try_get("revision").map_err(pg)?;
                Ok((bar_from_row(row, symbol, interval)?, revision))
            })
            .collect()
    }

    async fn symbols(&self, interval: Interval) -> Result<Vec<String>, StoreError> {
        // A loose index scan: one probe per distinct symbol, not one read per bar.
        let mut symbols: Vec<String> = sqlx::query_scalar(
            r#"
WITH RECURSIVE s AS (
    (SELECT symbol FROM bars ORDER BY symbol LIMIT 1)
    UNION ALL
    SELECT (SELECT b.symbol FROM bars b WHERE b.symbol > s.symbol ORDER BY b.symbol LIMIT 1)
    FROM s WHERE s.symbol IS NOT NULL
)
SELECT s.symbol FROM s
WHERE s.symbol IS NOT NULL
  AND EXISTS (SELECT 1 FROM bars b WHERE b.symbol = s.symbol AND b.interval = $1)
"#,
        )
        .bind(interval.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        // Byte order, whatever the database's collation.
        symbols.sort_unstable();
        Ok(symbols)
    }

    async fn states(
        &self,
        view: &ViewId,
        symbols: &[String],
    ) -> Result<Vec<StateSnapshot>, StoreError> {
        if symbols.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT symbol, extract(epoch FROM last_bar_ts)::bigint AS last_bar_ts, bars_seen, state \
             FROM view_states WHERE view = $1 AND version = $2 AND symbol = ANY($3)",
        )
        .bind(view.name.as_str())
        .bind(view.version)
        .bind(symbols)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.iter()
            .map(|row| {
                Ok(StateSnapshot {
                    symbol: row.try_get("symbol")?,
                    last_bar_ts: row.try_get("last_bar_ts")?,
                    bars_seen: row.try_get("bars_seen")?,
                    state: row.try_get("state")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(pg)
    }

    async fn point_in_time(
        &self,
        query: PointInTimeQuery<'_>,
    ) -> Result<Vec<HistoricalRow>, StoreError> {
        if query.rows.is_empty() {
            return Ok(Vec::new());
        }
        let symbols: Vec<&str> = query.rows.iter().map(|(s, _)| s.as_str()).collect();
        let as_of: Vec<Ts> = query.rows.iter().map(|(_, t)| clamp_ts(*t)).collect();
        let rows = labelled(
            POINT_IN_TIME,
            query.interval,
            query.label_horizon,
            query.view,
        )
        .bind(symbols)
        .bind(as_of)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        if rows.len() != query.rows.len() {
            return Err(StoreError::Corrupt(format!(
                "point-in-time query answered {} rows for {}",
                rows.len(),
                query.rows.len()
            )));
        }
        query
            .rows
            .iter()
            .zip(&rows)
            .map(|((symbol, as_of), row)| {
                historical_row(symbol.clone(), *as_of, row, query.label_horizon)
            })
            .collect()
    }

    async fn span(&self, query: SpanQuery<'_>) -> Result<Vec<HistoricalRow>, StoreError> {
        let plan = span_plan(query.symbols, query.from, query.after);
        if plan.is_empty() || query.limit == 0 || query.from >= query.until {
            return Ok(Vec::new());
        }
        // One symbol per statement, until the page is full: a statement over every remaining
        // symbol would read up to `limit` rows of each before the page's sort, so paging a
        // span of many symbols would cost symbols × limit per page.
        let mut out = Vec::with_capacity(query.limit.min(100_000));
        for (symbol, lo) in plan {
            let left = query.limit - out.len();
            if left == 0 {
                break;
            }
            let rows = labelled(SPAN, query.interval, query.label_horizon, query.view)
                .bind(vec![symbol])
                .bind(vec![clamp_ts(lo)])
                .bind(clamp_ts(query.until))
                .bind(i64::try_from(left).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(pg)?;
            for row in &rows {
                let symbol: String = row.try_get("symbol").map_err(pg)?;
                let event_time: i64 = row.try_get("event_time").map_err(pg)?;
                out.push(historical_row(
                    symbol,
                    event_time,
                    row,
                    query.label_horizon,
                )?);
            }
        }
        Ok(out)
    }

    async fn create_job(&self, job: &JobRecord) -> Result<JobRecord, StoreError> {
        let inserted = sqlx::query(concat!(
            "INSERT INTO materialization_jobs (job_id, request_id, view, version, symbols, \
                from_ts, until_ts, chunk_seconds, state, chunks_done, chunks_total, bars_read, \
                vectors_written, created_at, started_at, finished_at, updated_at, error) \
             VALUES ($1, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7), $8, $9, $10, $11, \
                $12, $13, to_timestamp($14), to_timestamp($15), to_timestamp($16), \
                to_timestamp($17), $18) \
             ON CONFLICT (request_id) DO NOTHING RETURNING ",
            job_columns!()
        ))
        .bind(job.id)
        .bind(job.request_id.as_deref())
        .bind(job.view.name.as_str())
        .bind(job.view.version)
        .bind(&job.symbols)
        .bind(clamp_ts(job.from))
        .bind(clamp_ts(job.until))
        .bind(job.chunk_seconds)
        .bind(job.state.as_str())
        .bind(job.chunks_done)
        .bind(job.chunks_total)
        .bind(job.bars_read)
        .bind(job.vectors_written)
        .bind(clamp_ts(job.created_at))
        .bind(job.started_at.map(clamp_ts))
        .bind(job.finished_at.map(clamp_ts))
        .bind(clamp_ts(job.updated_at))
        .bind(job.error.as_deref())
        .fetch_optional(&self.pool)
        .await
        .map_err(pg)?;
        let row = match inserted {
            Some(row) => row,
            // The request id was used: a new statement sees that job even if it was
            // committed concurrently.
            None => sqlx::query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM materialization_jobs WHERE request_id = $1"
            ))
            .bind(job.request_id.as_deref())
            .fetch_one(&self.pool)
            .await
            .map_err(pg)?,
        };
        job_from_row(&row)
    }

    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM materialization_jobs WHERE job_id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg)?
        .as_ref()
        .map(job_from_row)
        .transpose()
    }

    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE materialization_jobs SET state = $2, started_at = to_timestamp($3), \
                finished_at = to_timestamp($4), updated_at = to_timestamp($5), error = $6 \
             WHERE job_id = $1",
        )
        .bind(job.id)
        .bind(job.state.as_str())
        .bind(job.started_at.map(clamp_ts))
        .bind(job.finished_at.map(clamp_ts))
        .bind(clamp_ts(job.updated_at))
        .bind(job.error.as_deref())
        .execute(&self.pool)
        .await
        .map_err(pg)?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::Failed {
                backend: BACKEND,
                reason: format!("materialization job {} does not exist", job.id),
            });
        }
        Ok(())
    }

    async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM materialization_jobs WHERE state IN ('pending', 'running') \
              ORDER BY created_at, job_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn done_chunks(&self, id: Uuid) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT chunk, state FROM materialization_chunks WHERE job_id = $1 ORDER BY chunk",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.iter()
            .map(|row| Ok((row.try_get("chunk")?, row.try_get("state")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(pg)
    }
}
