//! The PostgreSQL store: the service's own schema, batched upserts in one statement per batch.

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};
use std::collections::HashMap;
use stockcast_market::Bar;
use uuid::Uuid;

use super::shared::{Dialect, JobStatements, SqlStore, Statements};
use super::{Counts, Outcome, StoreError, StoreTx, rounds};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Ingestion's tables in one PostgreSQL schema.
pub type PostgresStore = SqlStore<Postgres>;

pub use stockcast_sql::valid_schema;

impl SqlStore<Postgres> {
    /// Creates the schema and applies migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Ok(self.db().migrate(&MIGRATOR).await?)
    }
}

impl Dialect for Postgres {
    const STATEMENTS: &'static Statements = &Statements {
        jobs: JOBS,
        bars: "SELECT extract(epoch FROM ts)::bigint AS ts, open, high, low, close, volume, \
               source, revision FROM bars \
               WHERE symbol = $1 AND interval = $2 \
                 AND ts >= to_timestamp($3) AND ts < to_timestamp($4) \
               ORDER BY ts",
        coverage: "SELECT symbol, interval, extract(epoch FROM min(ts))::bigint AS first_ts, \
                   extract(epoch FROM max(ts))::bigint AS last_ts, count(*) AS bar_count \
                   FROM bars \
                   WHERE ($1::text IS NULL OR interval = $1) AND starts_with(symbol, $2) \
                     AND (symbol, interval) > ($3, $4) \
                   GROUP BY symbol, interval ORDER BY symbol, interval LIMIT $5",
        timestamps: "SELECT extract(epoch FROM ts)::bigint FROM bars \
                     WHERE symbol = $1 AND interval = $2 ORDER BY ts",
    };

    async fn begin(pool: &PgPool) -> Result<Box<dyn StoreTx>, StoreError> {
        Ok(Box::new(PostgresTx {
            tx: pool.begin().await?,
        }))
    }
}

/// The common case: every bar is new. Conflicts make it fall back to [`UPSERT`].
const INSERT_NEW: &str = r#"
INSERT INTO bars (symbol, interval, ts, open, high, low, close, volume, source)
SELECT symbol, interval, to_timestamp(ts), open, high, low, close, volume, $9
FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::float8[],
            $6::float8[], $7::float8[], $8::float8[])
    AS t(symbol, interval, ts, open, high, low, close, volume)
ON CONFLICT (symbol, interval, ts) DO NOTHING
"#;

/// Any mix of new bars, duplicates and corrections, with the values corrections replace.
const UPSERT: &str = r#"
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::float8[],
                         $6::float8[], $7::float8[], $8::float8[])
        AS t(symbol, interval, ts, open, high, low, close, volume)
),
old AS (
    SELECT b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume
    FROM bars b
    JOIN input i ON b.symbol = i.symbol AND b.interval = i.interval AND b.ts = to_timestamp(i.ts)
),
up AS (
    INSERT INTO bars AS b (symbol, interval, ts, open, high, low, close, volume, source)
    SELECT symbol, interval, to_timestamp(ts), open, high, low, close, volume, $9 FROM input
    ON CONFLICT (symbol, interval, ts) DO UPDATE
        SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
            close = EXCLUDED.close, volume = EXCLUDED.volume, source = EXCLUDED.source,
            revision = b.revision + 1, ingested_at = now()
        WHERE (b.open, b.high, b.low, b.close, b.volume)
              IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume)
    RETURNING b.symbol, b.interval, b.ts, b.revision, b.open, b.high, b.low, b.close, b.volume
),
corrected AS (
    INSERT INTO corrections (symbol, interval, ts, revision, old_open, old_high, old_low,
                             old_close, old_volume, new_open, new_high, new_low, new_close,
                             new_volume, source)
    SELECT up.symbol, up.interval, up.ts, up.revision, old.open, old.high, old.low, old.close,
           old.volume, up.open, up.high, up.low, up.close, up.volume, $9
    FROM up JOIN old USING (symbol, interval, ts)
)
SELECT up.symbol, up.interval, extract(epoch FROM up.ts)::bigint AS ts, up.revision,
       old.open AS old_open, old.high AS old_high, old.low AS old_low, old.close AS old_close,
       old.volume AS old_volume
FROM up LEFT JOIN old USING (symbol, interval, ts)
"#;

/// Columns of a job row as [`JobRow`] reads them: the id as text, times as epoch seconds (a
/// macro, so queries stay `&'static str`).
macro_rules! job_columns {
    () => {
        "job_id::text AS job_id, request_id, spec, state, chunks_total, chunks_done, \
         bars_accepted, bars_rejected, bars_duplicate, bars_corrected, \
         extract(epoch FROM created_at)::bigint AS created_at, \
         extract(epoch FROM started_at)::bigint AS started_at, \
         extract(epoch FROM finished_at)::bigint AS finished_at, \
         extract(epoch FROM updated_at)::bigint AS updated_at, resumes, error"
    };
}

/// The job statements in PostgreSQL's dialect (ids arrive as text).
const JOBS: JobStatements = JobStatements {
    create: concat!(
        "INSERT INTO backfill_jobs (job_id, request_id, spec, state) \
         VALUES ($1::uuid, $2, $3, 'pending') ON CONFLICT (request_id) DO NOTHING RETURNING ",
        job_columns!()
    ),
    by_request: concat!(
        "SELECT ",
        job_columns!(),
        " FROM backfill_jobs WHERE request_id = $1"
    ),
    by_id: concat!(
        "SELECT ",
        job_columns!(),
        " FROM backfill_jobs WHERE job_id = $1::uuid"
    ),
    list: concat!(
        "SELECT ",
        job_columns!(),
        " FROM backfill_jobs \
         WHERE ($1::text IS NULL OR state = $1) \
           AND ($2::text IS NULL OR spec->'symbols' ? $2) \
           AND ($3::uuid IS NULL OR job_id < $3::uuid) \
         ORDER BY job_id DESC LIMIT $4"
    ),
    done_chunks: "SELECT chunk_key FROM backfill_chunks WHERE job_id = $1::uuid",
    update: "UPDATE backfill_jobs SET \
                state = COALESCE($2, state), \
                chunks_total = COALESCE($3, chunks_total), \
                started_at = CASE WHEN $4 THEN COALESCE(started_at, now()) ELSE started_at END, \
                finished_at = CASE WHEN $5 THEN now() ELSE finished_at END, \
                resumes = resumes + CASE WHEN $6 THEN 1 ELSE 0 END, \
                error = COALESCE($7, error), \
                updated_at = now() \
             WHERE job_id = $1::uuid AND ($8::text IS NULL OR state = $8) RETURNING job_id::text",
};

/// One round of bars as column arrays, the shape `UNNEST` takes.
struct Columns<'a> {
    symbols: Vec<&'a str>,
    intervals: Vec<&'static str>,
    ts: Vec<i64>,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
}

impl<'a> Columns<'a> {
    fn of(bars: &'a [Bar], round: &[usize]) -> Self {
        let column = |f: fn(&Bar) -> f64| round.iter().map(|&i| f(&bars[i])).collect();
        Self {
            symbols: round.iter().map(|&i| bars[i].symbol.as_str()).collect(),
            intervals: round.iter().map(|&i| bars[i].interval.as_str()).collect(),
            ts: round.iter().map(|&i| bars[i].ts).collect(),
            open: column(|b| b.open),
            high: column(|b| b.high),
            low: column(|b| b.low),
            close: column(|b| b.close),
            volume: column(|b| b.volume),
        }
    }

    /// `statement` with the columns as `$1..$8` and `source` as `$9`.
    fn bind<'q>(
        &'q self,
        statement: &'static str,
        source: &'q str,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(statement)
            .bind(&self.symbols)
            .bind(&self.intervals)
            .bind(&self.ts)
            .bind(&self.open)
            .bind(&self.high)
            .bind(&self.low)
            .bind(&self.close)
            .bind(&self.volume)
            .bind(source)
    }
}

struct PostgresTx {
    tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl StoreTx for PostgresTx {
    async fn upsert(&mut self, bars: &[Bar], source: &str) -> Result<Vec<Outcome>, StoreError> {
        let mut outcomes = vec![Outcome::Unchanged; bars.len()];
        for round in rounds(bars) {
            let n = round.len();
            let columns = Columns::of(bars, &round);
            // Fast path under a savepoint: a plain insert; if any bar already existed, undo
            // it and take the upsert that tells duplicates from corrections.
            sqlx::query("SAVEPOINT upsert_batch")
                .execute(&mut *self.tx)
                .await?;
            let inserted = columns
                .bind(INSERT_NEW, source)
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
            if inserted == n as u64 {
                for &i in &round {
                    outcomes[i] = Outcome::Inserted;
                }
                continue;
            }
            sqlx::query("ROLLBACK TO SAVEPOINT upsert_batch")
                .execute(&mut *self.tx)
                .await?;
            let rows = columns
                .bind(UPSERT, source)
                .fetch_all(&mut *self.tx)
                .await?;
            let index_of: HashMap<(&str, &str, i64), usize> = round
                .iter()
                .map(|&i| {
                    let bar = &bars[i];
                    ((bar.symbol.as_str(), bar.interval.as_str(), bar.ts), i)
                })
                .collect();
            for row in rows {
                let symbol: String = row.try_get("symbol")?;
                let interval: String = row.try_get("interval")?;
                let at: i64 = row.try_get("ts")?;
                let Some(&i) = index_of.get(&(symbol.as_str(), interval.as_str(), at)) else {
                    return Err(StoreError::Corrupt(format!(
                        "upsert returned {symbol}/{interval}/{at}, which was not in the batch"
                    )));
                };
                let old_open: Option<f64> = row.try_get("old_open")?;
                outcomes[i] = match old_open {
                    None => Outcome::Inserted,
                    Some(open) => Outcome::Corrected {
                        previous: Bar {
                            open,
                            high: row
                                .try_get::<Option<f64>, _>("old_high")?
                                .unwrap_or_default(),
                            low: row
                                .try_get::<Option<f64>, _>("old_low")?
                                .unwrap_or_default(),
                            close: row
                                .try_get::<Option<f64>, _>("old_close")?
                                .unwrap_or_default(),
                            volume: row
                                .try_get::<Option<f64>, _>("old_volume")?
                                .unwrap_or_default(),
                            ..bars[i].clone()
                        },
                        revision: row.try_get("revision")?,
                    },
                };
            }
        }
        Ok(outcomes)
    }

    async fn chunk_done(
        &mut self,
        job: Uuid,
        key: &str,
        counts: &Counts,
    ) -> Result<(), StoreError> {
        let recorded = sqlx::query(
            "INSERT INTO backfill_chunks (job_id, chunk_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(job)
        .bind(key)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if recorded == 1 {
            sqlx::query(
                "UPDATE backfill_jobs SET chunks_done = chunks_done + 1, \
                    bars_accepted = bars_accepted + $2, bars_rejected = bars_rejected + $3, \
                    bars_duplicate = bars_duplicate + $4, bars_corrected = bars_corrected + $5, \
                    updated_at = now() WHERE job_id = $1",
            )
            .bind(job)
            .bind(counts.accepted)
            .bind(counts.rejected)
            .bind(counts.duplicate)
            .bind(counts.corrected)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}
