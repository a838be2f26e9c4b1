//! The write path of the PostgreSQL offline store: one transaction of a few set-based
//! statements. Each table's rows go as column arrays through `UNNEST` (feature vectors as
//! one flat `float8[]` sliced per row), inserted plainly when the keys are new and upserted
//! with `ON CONFLICT DO UPDATE` when some are stored already.

use sqlx::postgres::{PgArguments, PgPool};
use sqlx::query::Query;
use sqlx::{Postgres, Transaction};
use stockcast_market::Bar;

use super::{BACKEND, clamp_ts, pg};
use crate::store::sql::last_per_key;
use crate::store::{FeatureRow, StateSnapshot, StoreError, ViewId, WriteBatch};

/// Most rows one statement carries; a bigger batch takes several (same transaction).
const ROWS_PER_STATEMENT: usize = 50_000;
/// Most feature values one statement carries (64 MiB of `float8`).
const VALUES_PER_STATEMENT: usize = 8 << 20;

/// Applies `batch` in one transaction.
pub(super) async fn write(pool: &PgPool, batch: &WriteBatch) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(pg)?;
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
