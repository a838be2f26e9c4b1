//! The embedded offline store: SQLite in memory or in one file, the same tables and the same
//! semantics as PostgreSQL.
//!
//! Times are seconds since the epoch; a feature vector is a BLOB of little-endian `f64`
//! (SQLite stores a NaN REAL as NULL, a BLOB keeps every bit). Point-in-time reads are one
//! statement per call: the entity rows go in as one JSON array and each finds its vector and
//! label through primary-key lookups.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};
use stockcast_market::{Bar, Interval};
use uuid::Uuid;

use super::offline::{
    DatabaseSettings, decode_vector, encode_vector, label, span_plan, sqlx_error,
};
use super::{
    HistoricalRow, JobRecord, JobState, OfflineStore, OnlineVector, PointInTimeQuery,
    RegisteredView, SpanQuery, StateSnapshot, StoreError, Ts, ViewId, WriteBatch,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

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

/// The offline store on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteOffline {
    pool: SqlitePool,
}

impl SqliteOffline {
    /// Opens (creating if missing) the database at `settings.url` (`sqlite::memory:` or
    /// `sqlite://path/to/file.db`) and applies migrations.
    pub async fn open(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let pool = stockcast_sql::sqlite_pool(settings).await.map_err(lite)?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Failed {
            backend: BACKEND,
            reason: format!("migrations: {e}"),
        })?;
        Ok(Self { pool })
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
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

/// Entity rows `?7` = `[[symbol, as_of], …]`; labels as in PostgreSQL: `?1` interval name,
/// `?2` its seconds, `?3` whether a label is wanted, `?4` = h − 1.
const POINT_IN_TIME: &str = r#"
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
SELECT p.ord, p.event_time, r.vals, c0.close AS c0,
       (SELECT b.close FROM bars b
        WHERE b.symbol = p.symbol AND b.interval = ?1 AND b.ts > p.c0_ts
        ORDER BY b.ts LIMIT 1 OFFSET ?4) AS ch
FROM p
LEFT JOIN feature_rows r
    ON r.view = ?5 AND r.version = ?6 AND r.symbol = p.symbol AND r.event_time = p.event_time
LEFT JOIN bars c0 ON c0.symbol = p.symbol AND c0.interval = ?1 AND c0.ts = p.c0_ts
ORDER BY p.ord
"#;

/// The rows of one symbol `?7` with `?8 <= event_time < ?9`, at most `?10`, with labels.
const SPAN_SYMBOL: &str = r#"
SELECT p.event_time, p.vals, c0.close AS c0,
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
"#;

const JOB_COLUMNS: &str = "job_id, request_id, view, version, symbols, from_ts, until_ts, \
    chunk_seconds, state, chunks_done, chunks_total, bars_read, vectors_written, created_at, \
    started_at, finished_at, updated_at, error";

fn job_from_row(row: &SqliteRow) -> Result<JobRecord, StoreError> {
    let id: String = row.try_get("job_id").map_err(lite)?;
    let symbols: String = row.try_get("symbols").map_err(lite)?;
    let state: String = row.try_get("state").map_err(lite)?;
    Ok(JobRecord {
        id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("job id {id:?}: {e}")))?,
        request_id: row.try_get("request_id").map_err(lite)?,
        view: ViewId::new(
            row.try_get::<String, _>("view").map_err(lite)?,
            row.try_get("version").map_err(lite)?,
        ),
        symbols: serde_json::from_str(&symbols)
            .map_err(|e| StoreError::Corrupt(format!("job symbols {symbols:?}: {e}")))?,
        from: row.try_get("from_ts").map_err(lite)?,
        until: row.try_get("until_ts").map_err(lite)?,
        chunk_seconds: row.try_get("chunk_seconds").map_err(lite)?,
        state: JobState::parse(&state)?,
        chunks_done: row.try_get("chunks_done").map_err(lite)?,
        chunks_total: row.try_get("chunks_total").map_err(lite)?,
        bars_read: row.try_get("bars_read").map_err(lite)?,
        vectors_written: row.try_get("vectors_written").map_err(lite)?,
        created_at: row.try_get("created_at").map_err(lite)?,
        started_at: row.try_get("started_at").map_err(lite)?,
        finished_at: row.try_get("finished_at").map_err(lite)?,
        updated_at: row.try_get("updated_at").map_err(lite)?,
        error: row.try_get("error").map_err(lite)?,
    })
}

fn bar_from_row(row: &SqliteRow, symbol: String, interval: Interval) -> Result<Bar, StoreError> {
    Ok(Bar {
        symbol,
        interval,
        ts: row.try_get("ts").map_err(lite)?,
        open: row.try_get("open").map_err(lite)?,
        high: row.try_get("high").map_err(lite)?,
        low: row.try_get("low").map_err(lite)?,
        close: row.try_get("close").map_err(lite)?,
        volume: row.try_get("volume").map_err(lite)?,
    })
}

/// A historical row from the `event_time`, `vals`, `c0` and `ch` columns.
fn historical_row(
    symbol: String,
    as_of: Ts,
    row: &SqliteRow,
    horizon: Option<u32>,
) -> Result<HistoricalRow, StoreError> {
    let event_time: Option<i64> = row.try_get("event_time").map_err(lite)?;
    let values: Option<Vec<u8>> = row.try_get("vals").map_err(lite)?;
    let vector = match (event_time, values) {
        (Some(event_time), Some(bytes)) => Some(OnlineVector {
            event_time,
            values: decode_vector(&bytes)?,
        }),
        _ => None,
    };
    Ok(HistoricalRow {
        symbol,
        as_of,
        vector,
        label: label(
            horizon,
            row.try_get("c0").map_err(lite)?,
            row.try_get("ch").map_err(lite)?,
        ),
    })
}

/// `statement` with the label parameters `?1..?4` and the view as `?5, ?6`.
fn labelled<'q>(
    statement: &'static str,
    interval: Interval,
    horizon: Option<u32>,
    view: &'q ViewId,
) -> Query<'q, Sqlite, SqliteArguments> {
    sqlx::query(statement)
        .bind(interval.as_str())
        .bind(interval.seconds())
        .bind(horizon.is_some())
        .bind(i64::from(horizon.unwrap_or(1).saturating_sub(1)))
        .bind(view.name.as_str())
        .bind(view.version)
}

async fn chunk_done(
    tx: &mut Transaction<'static, Sqlite>,
    chunk: &super::ChunkDone,
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

// ---------------------------------------------------------------------------------------
// the trait

#[async_trait]
impl OfflineStore for SqliteOffline {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(lite)?;
        Ok(())
    }

    async fn register_view(
        &self,
        view: &ViewId,
        definition: &str,
    ) -> Result<RegisteredView, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO views (view, version, definition) VALUES (?1, ?2, ?3) \
             ON CONFLICT (view, version) DO NOTHING",
        )
        .bind(view.name.as_str())
        .bind(view.version)
        .bind(definition)
        .execute(&self.pool)
        .await
        .map_err(lite)?
        .rows_affected();
        // A new statement, so a definition committed concurrently is seen.
        let (definition, registered_at): (String, i64) = sqlx::query_as(
            "SELECT definition, registered_at FROM views WHERE view = ?1 AND version = ?2",
        )
        .bind(view.name.as_str())
        .bind(view.version)
        .fetch_one(&self.pool)
        .await
        .map_err(lite)?;
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
        let mut tx = self.pool.begin().await.map_err(lite)?;
        // Rows apply in batch order, so a repeated key keeps its last value.
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

    async fn bars(
        &self,
        symbol: &str,
        interval: Interval,
        from: Ts,
        until: Ts,
        limit: usize,
    ) -> Result<Vec<Bar>, StoreError> {
        let rows = sqlx::query(
            "SELECT ts, open, high, low, close, volume FROM bars \
             WHERE symbol = ?1 AND interval = ?2 AND ts >= ?3 AND ts < ?4 ORDER BY ts LIMIT ?5",
        )
        .bind(symbol)
        .bind(interval.as_str())
        .bind(from)
        .bind(until)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(lite)?;
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
        let keys: Vec<(&str, Ts)> = keys.into_iter().collect();
        let rows = sqlx::query(
            "WITH k AS (SELECT json_extract(value, '$[0]') AS symbol, \
                               json_extract(value, '$[1]') AS ts FROM json_each(?2)) \
             SELECT b.symbol, b.ts, b.open, b.high, b.low, b.close, b.volume, b.revision \
             FROM k JOIN bars b ON b.symbol = k.symbol AND b.interval = ?1 AND b.ts = k.ts",
        )
        .bind(interval.as_str())
        .bind(json(&keys)?)
        .fetch_all(&self.pool)
        .await
        .map_err(lite)?;
        rows.iter()
            .map(|row| {
                let symbol: String = row.try_get("symbol").map_err(lite)?;
                let revision: i32 = row.try_get("revision").map_err(lite)?;
                Ok((bar_from_row(row, symbol, interval)?, revision))
            })
            .collect()
    }

    async fn symbols(&self, interval: Interval) -> Result<Vec<String>, StoreError> {
        // One index probe per distinct symbol, not one read per bar.
        let symbols: Vec<String> = sqlx::query_scalar(
            r#"
WITH RECURSIVE s(symbol) AS (
    SELECT (SELECT symbol FROM bars ORDER BY symbol LIMIT 1)
    UNION ALL
    SELECT (SELECT b.symbol FROM bars b WHERE b.symbol > s.symbol ORDER BY b.symbol LIMIT 1)
    FROM s WHERE s.symbol IS NOT NULL
)
SELECT s.symbol FROM s
WHERE s.symbol IS NOT NULL
  AND EXISTS (SELECT 1 FROM bars b WHERE b.symbol = s.symbol AND b.interval = ?1)
ORDER BY s.symbol
"#,
        )
        .bind(interval.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(lite)?;
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
            "SELECT symbol, last_bar_ts, bars_seen, state FROM view_states \
             WHERE view = ?1 AND version = ?2 AND symbol IN (SELECT value FROM json_each(?3))",
        )
        .bind(view.name.as_str())
        .bind(view.version)
        .bind(json(&symbols)?)
        .fetch_all(&self.pool)
        .await
        .map_err(lite)?;
        rows.iter()
            .map(|row| {
                Ok(StateSnapshot {
                    symbol: row.try_get("symbol").map_err(lite)?,
                    last_bar_ts: row.try_get("last_bar_ts").map_err(lite)?,
                    bars_seen: row.try_get("bars_seen").map_err(lite)?,
                    state: row.try_get("state").map_err(lite)?,
                })
            })
            .collect()
    }

    async fn point_in_time(
        &self,
        query: PointInTimeQuery<'_>,
    ) -> Result<Vec<HistoricalRow>, StoreError> {
        if query.rows.is_empty() {
            return Ok(Vec::new());
        }
        let rows = labelled(
            POINT_IN_TIME,
            query.interval,
            query.label_horizon,
            query.view,
        )
        .bind(json(&query.rows)?)
        .fetch_all(&self.pool)
        .await
        .map_err(lite)?;
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
        let mut out = Vec::new();
        // One index range per symbol, in answer order, until the page is full: no sort of
        // the whole span.
        for (symbol, lo) in span_plan(query.symbols, query.from, query.after) {
            let remaining = query.limit.saturating_sub(out.len());
            if remaining == 0 || lo >= query.until {
                if remaining == 0 {
                    break;
                }
                continue;
            }
            let rows = labelled(SPAN_SYMBOL, query.interval, query.label_horizon, query.view)
                .bind(symbol.as_str())
                .bind(lo)
                .bind(query.until)
                .bind(i64::try_from(remaining).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(lite)?;
            for row in &rows {
                let event_time: i64 = row.try_get("event_time").map_err(lite)?;
                out.push(historical_row(
                    symbol.clone(),
                    event_time,
                    row,
                    query.label_horizon,
                )?);
            }
        }
        Ok(out)
    }

    async fn create_job(&self, job: &JobRecord) -> Result<JobRecord, StoreError> {
        let insert = format!(
            "INSERT INTO materialization_jobs ({JOB_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
             ON CONFLICT (request_id) DO NOTHING RETURNING {JOB_COLUMNS}"
        );
        let inserted = sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(job.id.to_string())
            .bind(job.request_id.as_deref())
            .bind(job.view.name.as_str())
            .bind(job.view.version)
            .bind(json(&job.symbols)?)
            .bind(job.from)
            .bind(job.until)
            .bind(job.chunk_seconds)
            .bind(job.state.as_str())
            .bind(job.chunks_done)
            .bind(job.chunks_total)
            .bind(job.bars_read)
            .bind(job.vectors_written)
            .bind(job.created_at)
            .bind(job.started_at)
            .bind(job.finished_at)
            .bind(job.updated_at)
            .bind(job.error.as_deref())
            .fetch_optional(&self.pool)
            .await
            .map_err(lite)?;
        let row = match inserted {
            Some(row) => row,
            None => {
                let select =
                    format!("SELECT {JOB_COLUMNS} FROM materialization_jobs WHERE request_id = ?1");
                sqlx::query(sqlx::AssertSqlSafe(select))
                    .bind(job.request_id.as_deref())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(lite)?
            }
        };
        job_from_row(&row)
    }

    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
        let select = format!("SELECT {JOB_COLUMNS} FROM materialization_jobs WHERE job_id = ?1");
        sqlx::query(sqlx::AssertSqlSafe(select))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(lite)?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE materialization_jobs SET state = ?2, started_at = ?3, finished_at = ?4, \
                updated_at = ?5, error = ?6 WHERE job_id = ?1",
        )
        .bind(job.id.to_string())
        .bind(job.state.as_str())
        .bind(job.started_at)
        .bind(job.finished_at)
        .bind(job.updated_at)
        .bind(job.error.as_deref())
        .execute(&self.pool)
        .await
        .map_err(lite)?
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
        let select = format!(
            "SELECT {JOB_COLUMNS} FROM materialization_jobs \
             WHERE state IN ('pending', 'running') ORDER BY created_at, job_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(select))
            .fetch_all(&self.pool)
            .await
            .map_err(lite)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn done_chunks(&self, id: Uuid) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT chunk, state FROM materialization_chunks WHERE job_id = ?1 ORDER BY chunk",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(lite)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("chunk").map_err(lite)?,
                    row.try_get("state").map_err(lite)?,
                ))
            })
            .collect()
    }
}
