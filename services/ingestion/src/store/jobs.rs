//! The backfill jobs CRUD, written once for both dialects: each dialect supplies its
//! statements ([`JobStatements`]), with the same parameters in the same order (ids and
//! names as text, the spec as JSON) and the columns [`JobRow`] reads.

use std::collections::HashSet;

use sqlx::types::Json;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};
use stockcast_market::sources::BackfillSpec;
use uuid::Uuid;

use super::rows::{self, JobRow};
use super::{JobFilter, JobRecord, JobState, JobUpdate, StoreError};

/// One dialect's job statements.
#[derive(Debug)]
pub(super) struct JobStatements {
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

/// The jobs of one database.
#[derive(Debug, Clone)]
pub(super) struct Jobs<DB: Database> {
    pool: Pool<DB>,
    sql: &'static JobStatements,
}

impl<DB> Jobs<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> Json<BackfillSpec>: Encode<'q, DB> + Type<DB>,
    JobRow: for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    /// The jobs of `pool`, with `sql`.
    pub(super) fn new(pool: Pool<DB>, sql: &'static JobStatements) -> Self {
        Self { pool, sql }
    }

    pub(super) async fn create(
        &self,
        request_id: Option<&str>,
        spec: &BackfillSpec,
    ) -> Result<JobRecord, StoreError> {
        let request_id = request_id.map(str::to_owned);
        let inserted: Option<JobRow> = sqlx::query_as(self.sql.create)
            .bind(Uuid::now_v7().to_string())
            .bind(request_id.clone())
            .bind(Json(spec.clone()))
            .fetch_optional(&self.pool)
            .await?;
        let row = match inserted {
            Some(row) => row,
            None => {
                sqlx::query_as(self.sql.by_request)
                    .bind(request_id)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        row.try_into()
    }

    pub(super) async fn get(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
        rows::job(
            sqlx::query_as(self.sql.by_id)
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub(super) async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let found = sqlx::query_as(self.sql.list)
            .bind(filter.state.map(|s| s.as_str().to_owned()))
            .bind(filter.symbol.clone())
            .bind(filter.before.map(|id| id.to_string()))
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows::readable_jobs(found))
    }

    pub(super) async fn done_chunks(&self, id: Uuid) -> Result<HashSet<String>, StoreError> {
        let keys: Vec<(String,)> = sqlx::query_as(self.sql.done_chunks)
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(keys.into_iter().map(|(key,)| key).collect())
    }

    pub(super) async fn update(&self, id: Uuid, update: &JobUpdate) -> Result<bool, StoreError> {
        let name = |state: Option<JobState>| state.map(|s| s.as_str().to_owned());
        let changed: Option<(String,)> = sqlx::query_as(self.sql.update)
            .bind(id.to_string())
            .bind(name(update.state))
            .bind(update.chunks_total)
            .bind(update.started)
            .bind(update.finished)
            .bind(update.resumed)
            .bind(update.error.clone())
            .bind(name(update.only_from))
            .fetch_optional(&self.pool)
            .await?;
        Ok(changed.is_some())
    }
}
