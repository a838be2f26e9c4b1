//! The embedded store: one SQLite file (or memory), the same tables as PostgreSQL.

use async_trait::async_trait;
use sqlx::sqlite::SqlitePool;
use sqlx::{Row, Sqlite, Transaction};
use stockcast_market::Bar;
use uuid::Uuid;

use super::shared::{Dialect, JobStatements, SqlStore, Statements};
use super::{Counts, Outcome, StoreError, StoreTx};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Ingestion's tables in SQLite.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating if missing) the database at `url` (`sqlite::memory:` or
    /// `sqlite://path/to/file.db`) and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(stockcast_sql::SchemaPool::open_sqlite(url, &MIGRATOR)
            .await?
            .into())
    }
}

impl Dialect for Sqlite {
    const STATEMENTS: &'static Statements = &Statements {
        jobs: JOBS,
        bars: "SELECT ts, open, high, low, close, volume, source, revision FROM bars \
               WHERE symbol = ? AND interval = ? AND ts >= ? AND ts < ? ORDER BY ts",
        coverage: "SELECT symbol, interval, min(ts) AS first_ts, max(ts) AS last_ts, \
                   count(*) AS bar_count \
                   FROM bars WHERE (?1 IS NULL OR interval = ?1) \
                     AND substr(symbol, 1, length(?2)) = ?2 \
                     AND (symbol > ?3 OR (symbol = ?3 AND interval > ?4)) \
                   GROUP BY symbol, interval ORDER BY symbol, interval LIMIT ?5",
        timestamps: "SELECT ts FROM bars WHERE symbol = ? AND interval = ? ORDER BY ts",
    };

    async fn begin(pool: &SqlitePool) -> Result<Box<dyn StoreTx>, StoreError> {
        Ok(Box::new(SqliteTx {
            tx: pool.begin().await?,
        }))
    }
}

/// The job statements in SQLite's dialect.
const JOBS: JobStatements = JobStatements {
    create: "INSERT INTO backfill_jobs (job_id, request_id, spec, state) \
             VALUES (?1, ?2, ?3, 'pending') ON CONFLICT (request_id) DO NOTHING RETURNING *",
    by_request: "SELECT * FROM backfill_jobs WHERE request_id = ?1",
    by_id: "SELECT * FROM backfill_jobs WHERE job_id = ?1",
    list: "SELECT * FROM backfill_jobs \
           WHERE (?1 IS NULL OR state = ?1) \
             AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(spec, '$.symbols') WHERE value = ?2)) \
             AND (?3 IS NULL OR job_id < ?3) \
           ORDER BY job_id DESC LIMIT ?4",
    done_chunks: "SELECT chunk_key FROM backfill_chunks WHERE job_id = ?1",
    update: "UPDATE backfill_jobs SET \
                state = COALESCE(?2, state), \
                chunks_total = COALESCE(?3, chunks_total), \
                started_at = CASE WHEN ?4 THEN COALESCE(started_at, unixepoch()) ELSE started_at END, \
                finished_at = CASE WHEN ?5 THEN unixepoch() ELSE finished_at END, \
                resumes = resumes + CASE WHEN ?6 THEN 1 ELSE 0 END, \
                error = COALESCE(?7, error), \
                updated_at = unixepoch() \
             WHERE job_id = ?1 AND (?8 IS NULL OR state = ?8) RETURNING job_id",
};

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl StoreTx for SqliteTx {
    async fn upsert(&mut self, bars: &[Bar], source: &str) -> Result<Vec<Outcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(bars.len());
        for bar in bars {
            let existing = sqlx::query(
                "SELECT open, high, low, close, volume, revision FROM bars \
                 WHERE symbol = ? AND interval = ? AND ts = ?",
            )
            .bind(&bar.symbol)
            .bind(bar.interval.as_str())
            .bind(bar.ts)
            .fetch_optional(&mut *self.tx)
            .await?;
            let Some(row) = existing else {
                sqlx::query(
                    "INSERT INTO bars (symbol, interval, ts, open, high, low, close, volume, source) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&bar.symbol)
                .bind(bar.interval.as_str())
                .bind(bar.ts)
                .bind(bar.open)
                .bind(bar.high)
                .bind(bar.low)
                .bind(bar.close)
                .bind(bar.volume)
                .bind(source)
                .execute(&mut *self.tx)
                .await?;
                outcomes.push(Outcome::Inserted);
                continue;
            };
            let previous = Bar {
                open: row.try_get("open")?,
                high: row.try_get("high")?,
                low: row.try_get("low")?,
                close: row.try_get("close")?,
                volume: row.try_get("volume")?,
                ..bar.clone()
            };
            if previous.same_values(bar) {
                outcomes.push(Outcome::Unchanged);
                continue;
            }
            let revision: i32 = row.try_get::<i32, _>("revision")? + 1;
            sqlx::query(
                "UPDATE bars SET open = ?, high = ?, low = ?, close = ?, volume = ?, source = ?, \
                 revision = ?, ingested_at = unixepoch() WHERE symbol = ? AND interval = ? AND ts = ?",
            )
            .bind(bar.open)
            .bind(bar.high)
            .bind(bar.low)
            .bind(bar.close)
            .bind(bar.volume)
            .bind(source)
            .bind(revision)
            .bind(&bar.symbol)
            .bind(bar.interval.as_str())
            .bind(bar.ts)
            .execute(&mut *self.tx)
            .await?;
            sqlx::query(
                "INSERT INTO corrections (symbol, interval, ts, revision, old_open, old_high, old_low, \
                 old_close, old_volume, new_open, new_high, new_low, new_close, new_volume, source) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&bar.symbol)
            .bind(bar.interval.as_str())
            .bind(bar.ts)
            .bind(revision)
            .bind(previous.open)
            .bind(previous.high)
            .bind(previous.low)
            .bind(previous.close)
            .bind(previous.volume)
            .bind(bar.open)
            .bind(bar.high)
            .bind(bar.low)
            .bind(bar.close)
            .bind(bar.volume)
            .bind(source)
            .execute(&mut *self.tx)
            .await?;
            outcomes.push(Outcome::Corrected { previous, revision });
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
            "INSERT INTO backfill_chunks (job_id, chunk_key) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(job.to_string())
        .bind(key)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if recorded == 1 {
            sqlx::query(
                "UPDATE backfill_jobs SET chunks_done = chunks_done + 1, \
                    bars_accepted = bars_accepted + ?, bars_rejected = bars_rejected + ?, \
                    bars_duplicate = bars_duplicate + ?, bars_corrected = bars_corrected + ?, \
                    updated_at = unixepoch() WHERE job_id = ?",
            )
            .bind(counts.accepted)
            .bind(counts.rejected)
            .bind(counts.duplicate)
            .bind(counts.corrected)
            .bind(job.to_string())
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
