//! The offline store on SQL, written once for both dialects: [`SqlOffline`] implements
//! [`OfflineStore`] over a pool of any [`Dialect`]. A dialect supplies its [`Statements`]
//! (the SQL text), how it passes a list of keys, and its write path; the binding, the
//! reading of [`super::records`] and the checks are the same.

use std::collections::HashSet;
use std::future::Future;

use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};
use stockcast_market::{Bar, Interval};
use stockcast_sql::SchemaPool;
use uuid::Uuid;

use super::records::{
    BarRecord, ChunkRecord, HistoricalRecord, JobRow, RevisedBarRecord, StateRecord, ViewRecord,
};
use super::{span_plan, sqlx_error};
use crate::store::{
    HistoricalRow, JobRecord, OfflineStore, PointInTimeQuery, RegisteredView, SpanQuery,
    StateSnapshot, StoreError, Ts, ViewId, WriteBatch,
};

/// A database the offline store runs on.
pub trait Dialect: Database {
    /// `postgres` or `sqlite`, in errors.
    const BACKEND: &'static str;
    /// Its statements.
    const STATEMENTS: Statements;

    /// A time as this dialect stores it (PostgreSQL cuts it to its timestamp range).
    fn time(ts: Ts) -> Ts {
        ts
    }

    /// Rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Binds the keys of [`Statements::bars_at`] (deduplicated) after the interval.
    fn bind_keys(query: Bound<Self>, keys: &[(&str, Ts)]) -> Result<Bound<Self>, StoreError>;

    /// Binds the symbols of [`Statements::states`] after the view.
    fn bind_symbols(query: Bound<Self>, symbols: &[String]) -> Result<Bound<Self>, StoreError>;

    /// Binds the entity rows of [`Statements::point_in_time`] after the label parameters and
    /// the view.
    fn bind_rows(query: Bound<Self>, rows: &[(String, Ts)]) -> Result<Bound<Self>, StoreError>;

    /// Applies `batch` in one transaction: all of it or none of it.
    fn write(
        pool: &Pool<Self>,
        batch: &WriteBatch,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One dialect's text of the statements the shared Rust runs, where the dialects differ
/// (times, ids and lists are stored differently). `$n` (or `?n`) are the parameters; the
/// columns answered are those of the record named.
#[derive(Debug, Clone, Copy)]
pub struct Statements {
    /// `view, version` → [`ViewRecord`].
    pub view: &'static str,
    /// `symbol, interval, from, until, limit` → [`BarRecord`]s by time.
    pub bars: &'static str,
    /// `interval, keys…` (bound by the dialect) → [`RevisedBarRecord`]s.
    pub bars_at: &'static str,
    /// `view, version, symbols` (bound by the dialect) → [`StateRecord`]s.
    pub states: &'static str,
    /// The label parameters (`interval`, its seconds, whether wanted, horizon − 1), `view,
    /// version`, then the entity rows (bound by the dialect) → one [`HistoricalRecord`] per
    /// entity row, in their order.
    pub point_in_time: &'static str,
    /// The label parameters, `view, version, symbol, from, until, limit` → the symbol's
    /// [`HistoricalRecord`]s by event time.
    pub span: &'static str,
    /// The 18 columns of a job, in [`JobRow`] order → the stored [`JobRow`], or nothing when
    /// the request id is taken.
    pub insert_job: &'static str,
    /// `request_id` → [`JobRow`].
    pub job_by_request: &'static str,
    /// `job_id` → [`JobRow`].
    pub job: &'static str,
    /// `job_id, state, started_at, finished_at, updated_at, error`.
    pub update_job: &'static str,
    /// → [`JobRow`]s of pending and running jobs, oldest first.
    pub unfinished_jobs: &'static str,
    /// `job_id` → [`ChunkRecord`]s by chunk.
    pub done_chunks: &'static str,
}

/// Records a view version unless it is recorded: `view, version, definition`.
const INSERT_VIEW: &str = "INSERT INTO views (view, version, definition) VALUES ($1, $2, $3) \
     ON CONFLICT (view, version) DO NOTHING";

/// Every symbol with a bar at the interval `$1`: a loose index scan, one probe per distinct
/// symbol rather than one read per bar.
const SYMBOLS: &str = r#"
WITH RECURSIVE s(symbol) AS (
    SELECT (SELECT symbol FROM bars ORDER BY symbol LIMIT 1)
    UNION ALL
    SELECT (SELECT b.symbol FROM bars b WHERE b.symbol > s.symbol ORDER BY b.symbol LIMIT 1)
    FROM s WHERE s.symbol IS NOT NULL
)
SELECT s.symbol FROM s
WHERE s.symbol IS NOT NULL
  AND EXISTS (SELECT 1 FROM bars b WHERE b.symbol = s.symbol AND b.interval = $1)
"#;

/// The offline store on a pool of `DB` ([`crate::store::postgres::PostgresOffline`],
/// [`crate::store::sqlite::SqliteOffline`]).
#[derive(Debug)]
pub struct SqlOffline<DB: Database> {
    pub(crate) db: SchemaPool<DB>,
}

impl<DB: Database> From<SchemaPool<DB>> for SqlOffline<DB> {
    /// A store on `db`, already migrated (see [`super::open`]).
    fn from(db: SchemaPool<DB>) -> Self {
        Self { db }
    }
}

impl<DB: Database> SqlOffline<DB> {
    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

impl<DB: Database> Clone for SqlOffline<DB> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
        }
    }
}

/// `statement` with the label parameters and the view bound.
fn labelled<DB>(
    statement: &'static str,
    interval: Interval,
    horizon: Option<u32>,
    view: &ViewId,
) -> Bound<DB>
where
    DB: Dialect,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
{
    sqlx::query::<DB>(statement)
        .bind(interval.as_str().to_owned())
        .bind(interval.seconds())
        .bind(horizon.is_some())
        .bind(i64::from(horizon.unwrap_or(1).saturating_sub(1)))
        .bind(view.name.clone())
        .bind(view.version)
}

/// A statement with some of its parameters bound.
pub type Bound<DB> = Query<'static, DB, <DB as Database>::Arguments>;

fn error<DB: Dialect>(e: sqlx::Error) -> StoreError {
    sqlx_error(DB::BACKEND, e)
}

#[async_trait]
impl<DB> OfflineStore for SqlOffline<DB>
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'r> ViewRecord: FromRow<'r, DB::Row>,
    for<'r> BarRecord: FromRow<'r, DB::Row>,
    for<'r> RevisedBarRecord: FromRow<'r, DB::Row>,
    for<'r> StateRecord: FromRow<'r, DB::Row>,
    for<'r> HistoricalRecord: FromRow<'r, DB::Row>,
    for<'r> JobRow: FromRow<'r, DB::Row>,
    for<'r> ChunkRecord: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
{
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query::<DB>("SELECT 1")
            .execute(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        Ok(())
    }

    async fn register_view(
        &self,
        view: &ViewId,
        definition: &str,
    ) -> Result<RegisteredView, StoreError> {
        let inserted = sqlx::query::<DB>(INSERT_VIEW)
            .bind(view.name.clone())
            .bind(view.version)
            .bind(definition.to_owned())
            .execute(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        // A new statement, so a definition committed concurrently is seen.
        let recorded: ViewRecord = sqlx::query_as(DB::STATEMENTS.view)
            .bind(view.name.clone())
            .bind(view.version)
            .fetch_one(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        Ok(recorded.registered(DB::rows_affected(&inserted) == 1))
    }

    async fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        DB::write(self.db.pool(), batch).await
    }

    async fn bars(
        &self,
        symbol: &str,
        interval: Interval,
        from: Ts,
        until: Ts,
        limit: usize,
    ) -> Result<Vec<Bar>, StoreError> {
        let records: Vec<BarRecord> = sqlx::query_as(DB::STATEMENTS.bars)
            .bind(symbol.to_owned())
            .bind(interval.as_str().to_owned())
            .bind(DB::time(from))
            .bind(DB::time(until))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        Ok(records
            .into_iter()
            .map(|r| r.bar(symbol.to_owned(), interval))
            .collect())
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
        let query = sqlx::query::<DB>(DB::STATEMENTS.bars_at).bind(interval.as_str().to_owned());
        let rows = DB::bind_keys(query, &keys)?
            .fetch_all(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        rows.iter()
            .map(|row| RevisedBarRecord::from_row(row).map(|r| r.revised(interval)))
            .collect::<Result<_, _>>()
            .map_err(error::<DB>)
    }

    async fn symbols(&self, interval: Interval) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(SYMBOLS)
            .bind(interval.as_str().to_owned())
            .fetch_all(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        let mut symbols: Vec<String> = rows.into_iter().map(|(symbol,)| symbol).collect();
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
        let query = sqlx::query::<DB>(DB::STATEMENTS.states)
            .bind(view.name.clone())
            .bind(view.version);
        let rows = DB::bind_symbols(query, symbols)?
            .fetch_all(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        rows.iter()
            .map(|row| StateRecord::from_row(row).map(StateSnapshot::from))
            .collect::<Result<_, _>>()
            .map_err(error::<DB>)
    }

    async fn point_in_time(
        &self,
        query: PointInTimeQuery<'_>,
    ) -> Result<Vec<HistoricalRow>, StoreError> {
        if query.rows.is_empty() {
            return Ok(Vec::new());
        }
        let statement = labelled::<DB>(
            DB::STATEMENTS.point_in_time,
            query.interval,
            query.label_horizon,
            query.view,
        );
        let rows = DB::bind_rows(statement, query.rows)?
            .fetch_all(self.db.pool())
            .await
            .map_err(error::<DB>)?;
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
                HistoricalRecord::from_row(row)
                    .map(|r| r.row(symbol.clone(), *as_of, query.label_horizon))
                    .map_err(error::<DB>)
            })
            .collect()
    }

    async fn span(&self, query: SpanQuery<'_>) -> Result<Vec<HistoricalRow>, StoreError> {
        let mut out = Vec::with_capacity(query.limit.min(100_000));
        // One statement per symbol, in answer order, until the page is full: a statement
        // over every remaining symbol would read up to `limit` rows of each before sorting
        // the page, so paging a span of many symbols would cost symbols × limit per page.
        for (symbol, lo) in span_plan(query.symbols, query.from, query.after) {
            let left = query.limit.saturating_sub(out.len());
            if left == 0 {
                break;
            }
            if lo >= query.until {
                continue;
            }
            let records: Vec<HistoricalRecord> = labelled::<DB>(
                DB::STATEMENTS.span,
                query.interval,
                query.label_horizon,
                query.view,
            )
            .bind(symbol.clone())
            .bind(DB::time(lo))
            .bind(DB::time(query.until))
            .bind(i64::try_from(left).unwrap_or(i64::MAX))
            .try_map(|row| HistoricalRecord::from_row(&row))
            .fetch_all(self.db.pool())
            .await
            .map_err(error::<DB>)?;
            for record in records {
                let event_time = record.event_time.unwrap_or_default();
                out.push(record.row(symbol.clone(), event_time, query.label_horizon));
            }
        }
        Ok(out)
    }

    async fn create_job(&self, job: &JobRecord) -> Result<JobRecord, StoreError> {
        let symbols = serde_json::to_string(&job.symbols).map_err(|e| StoreError::Failed {
            backend: DB::BACKEND,
            reason: format!("encoding job symbols: {e}"),
        })?;
        let inserted: Option<JobRow> = sqlx::query_as(DB::STATEMENTS.insert_job)
            .bind(job.id.to_string())
            .bind(job.request_id.clone())
            .bind(job.view.name.clone())
            .bind(job.view.version)
            .bind(symbols)
            .bind(DB::time(job.from))
            .bind(DB::time(job.until))
            .bind(job.chunk_seconds)
            .bind(job.state.as_str().to_owned())
            .bind(job.chunks_done)
            .bind(job.chunks_total)
            .bind(job.bars_read)
            .bind(job.vectors_written)
            .bind(DB::time(job.created_at))
            .bind(job.started_at.map(DB::time))
            .bind(job.finished_at.map(DB::time))
            .bind(DB::time(job.updated_at))
            .bind(job.error.clone())
            .fetch_optional(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        let row = match inserted {
            Some(row) => row,
            // The request id was used: a new statement sees that job even if it was
            // committed concurrently.
            None => sqlx::query_as(DB::STATEMENTS.job_by_request)
                .bind(job.request_id.clone())
                .fetch_one(self.db.pool())
                .await
                .map_err(error::<DB>)?,
        };
        row.try_into()
    }

    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(DB::STATEMENTS.job)
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        row.map(JobRecord::try_from).transpose()
    }

    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let updated = sqlx::query::<DB>(DB::STATEMENTS.update_job)
            .bind(job.id.to_string())
            .bind(job.state.as_str().to_owned())
            .bind(job.started_at.map(DB::time))
            .bind(job.finished_at.map(DB::time))
            .bind(DB::time(job.updated_at))
            .bind(job.error.clone())
            .execute(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        if DB::rows_affected(&updated) == 0 {
            return Err(StoreError::Failed {
                backend: DB::BACKEND,
                reason: format!("materialization job {} does not exist", job.id),
            });
        }
        Ok(())
    }

    async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let rows: Vec<JobRow> = sqlx::query_as(DB::STATEMENTS.unfinished_jobs)
            .fetch_all(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        rows.into_iter().map(JobRecord::try_from).collect()
    }

    async fn done_chunks(&self, id: Uuid) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let rows: Vec<ChunkRecord> = sqlx::query_as(DB::STATEMENTS.done_chunks)
            .bind(id.to_string())
            .fetch_all(self.db.pool())
            .await
            .map_err(error::<DB>)?;
        Ok(rows.into_iter().map(|r| (r.chunk, r.state)).collect())
    }
}
