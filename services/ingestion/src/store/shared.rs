//! The store on SQL, written once for both dialects: [`SqlStore`] implements [`BarStore`]
//! over a pool of any [`Dialect`]. A dialect supplies its [`Statements`] (the SQL text) and
//! its write path ([`StoreTx`], where the dialects truly differ); the binding and the reading
//! of [`super::rows`] are the same. Job statements take the same parameters in the same
//! order in both dialects (ids and names as text, the spec as JSON).

use std::collections::HashSet;
use std::future::Future;

use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};
use stockcast_market::Interval;
use stockcast_market::sources::BackfillSpec;
use stockcast_sql::SchemaPool;
use uuid::Uuid;

use super::rows::{self, BarRow, CoverageRow, JobRow};
use super::{
    BarStore, Coverage, JobFilter, JobRecord, JobState, JobUpdate, StoreError, StoreTx, StoredBar,
};

/// A database ingestion's store runs on.
pub trait Dialect: Database {
    /// Its statements.
    const STATEMENTS: &'static Statements;

    /// Begins a transaction for the write path.
    fn begin(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Box<dyn StoreTx>, StoreError>> + Send;
}

/// One dialect's text of the statements the shared Rust runs (times are stored differently,
/// and are answered as epoch seconds). `$n` (or `?n`) are the parameters; the columns
/// answered are those of the record named.
#[derive(Debug)]
pub struct Statements {
    /// The jobs CRUD.
    pub jobs: JobStatements,
    /// `symbol, interval, start, end` (epoch seconds, end exclusive) → [`BarRow`]s by time.
    pub bars: &'static str,
    /// `interval` (may be NULL), `symbol prefix`, after `symbol, interval` (empty for the
    /// first page), `limit` → [`CoverageRow`]s by symbol and interval.
    pub coverage: &'static str,
    /// `symbol, interval` → the bars' times (epoch seconds) in order.
    pub timestamps: &'static str,
}

/// One dialect's job statements.
#[derive(Debug)]
pub struct JobStatements {
    /// Inserts a pending job (`$1` id, `$2` request id, `$3` spec) unless its request id is
    /// taken; returns the row it inserted.
    pub create: &'static str,
    /// The job of request id `$1`.
    pub by_request: &'static str,
    /// The job `$1`.
    pub by_id: &'static str,
    /// Jobs newest first: `$1` state, `$2` symbol, `$3` before this id (each may be NULL),
    /// `$4` limit.
    pub list: &'static str,
    /// Chunk keys done of job `$1`.
    pub done_chunks: &'static str,
    /// Applies a [`JobUpdate`] to job `$1`: `$2` state, `$3` chunks total, `$4` started,
    /// `$5` finished, `$6` resumed, `$7` error, `$8` only from this state; returns the id of
    /// the job it changed.
    pub update: &'static str,
}

/// Ingestion's tables in one database: PostgreSQL ([`super::PostgresStore`], in the service's
/// schema) or SQLite ([`super::SqliteStore`]).
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    pub(super) db: SchemaPool<DB>,
}

impl<DB: Database> SqlStore<DB> {
    /// The pool and its schema (PostgreSQL: [`SchemaPool::drop_schema`] in tests).
    pub fn db(&self) -> &SchemaPool<DB> {
        &self.db
    }
}

/// A store on a pool already migrated (see `open`), e.g. one of
/// [`SchemaPool::connect_lazy`] (then migrate it).
impl<DB: Database> From<SchemaPool<DB>> for SqlStore<DB> {
    fn from(db: SchemaPool<DB>) -> Self {
        Self { db }
    }
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
        }
    }
}

#[async_trait]
impl<DB> BarStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> Json<BackfillSpec>: Encode<'q, DB> + Type<DB>,
    JobRow: for<'r> FromRow<'r, DB::Row>,
    BarRow: for<'r> FromRow<'r, DB::Row>,
    CoverageRow: for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        DB::begin(self.db.pool()).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.db.pool()).await?;
        Ok(())
    }

    async fn bars(
        &self,
        symbol: &str,
        interval: Interval,
        start: i64,
        end: i64,
    ) -> Result<Vec<StoredBar>, StoreError> {
        let rows: Vec<BarRow> = sqlx::query_as(DB::STATEMENTS.bars)
            .bind(symbol)
            .bind(interval.as_str())
            .bind(start)
            .bind(end)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| row.into_stored(symbol, interval))
            .collect())
    }

    async fn coverage(
        &self,
        interval: Option<Interval>,
        symbol_prefix: &str,
        after: Option<(String, Interval)>,
        limit: i64,
    ) -> Result<Vec<Coverage>, StoreError> {
        let (after_symbol, after_interval) = after
            .map(|(s, i)| (s, i.as_str().to_owned()))
            .unwrap_or_default();
        let rows: Vec<CoverageRow> = sqlx::query_as(DB::STATEMENTS.coverage)
            .bind(interval.map(Interval::as_str))
            .bind(symbol_prefix)
            .bind(after_symbol)
            .bind(after_interval)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter().map(Coverage::try_from).collect()
    }

    async fn timestamps(&self, symbol: &str, interval: Interval) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64,)> = sqlx::query_as(DB::STATEMENTS.timestamps)
            .bind(symbol)
            .bind(interval.as_str())
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.into_iter().map(|(ts,)| ts).collect())
    }

    async fn create_job(
        &self,
        request_id: Option<&str>,
        spec: &BackfillSpec,
    ) -> Result<JobRecord, StoreError> {
        let request_id = request_id.map(str::to_owned);
        let inserted: Option<JobRow> = sqlx::query_as(DB::STATEMENTS.jobs.create)
            .bind(Uuid::now_v7().to_string())
            .bind(request_id.clone())
            .bind(Json(spec.clone()))
            .fetch_optional(self.db.pool())
            .await?;
        let row = match inserted {
            Some(row) => row,
            None => {
                sqlx::query_as(DB::STATEMENTS.jobs.by_request)
                    .bind(request_id)
                    .fetch_one(self.db.pool())
                    .await?
            }
        };
        row.try_into()
    }

    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
        rows::job(
            sqlx::query_as(DB::STATEMENTS.jobs.by_id)
                .bind(id.to_string())
                .fetch_optional(self.db.pool())
                .await?,
        )
    }

    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let found = sqlx::query_as(DB::STATEMENTS.jobs.list)
            .bind(filter.state.map(|s| s.as_str().to_owned()))
            .bind(filter.symbol.clone())
            .bind(filter.before.map(|id| id.to_string()))
            .bind(filter.limit)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows::readable_jobs(found))
    }

    async fn done_chunks(&self, id: Uuid) -> Result<HashSet<String>, StoreError> {
        let keys: Vec<(String,)> = sqlx::query_as(DB::STATEMENTS.jobs.done_chunks)
            .bind(id.to_string())
            .fetch_all(self.db.pool())
            .await?;
        Ok(keys.into_iter().map(|(key,)| key).collect())
    }

    async fn update_job(&self, id: Uuid, update: &JobUpdate) -> Result<bool, StoreError> {
        let name = |state: Option<JobState>| state.map(|s| s.as_str().to_owned());
        let changed: Option<(String,)> = sqlx::query_as(DB::STATEMENTS.jobs.update)
            .bind(id.to_string())
            .bind(name(update.state))
            .bind(update.chunks_total)
            .bind(update.started)
            .bind(update.finished)
            .bind(update.resumed)
            .bind(update.error.clone())
            .bind(name(update.only_from))
            .fetch_optional(self.db.pool())
            .await?;
        Ok(changed.is_some())
    }
}
