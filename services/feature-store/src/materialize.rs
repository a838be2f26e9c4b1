//! Materialization: recomputing a view over a range of event times from the stored bars,
//! for a new view version or after a backfill.
//!
//! A job is split into chunks of one symbol × one slice of time. Each chunk reads its bars
//! page by page, computes the rows and writes them in one transaction together with the
//! "chunk done" marker and the indicator state after the chunk, so an interrupted job
//! resumes at its first unfinished chunk with the exact state it needs. Memory stays
//! bounded by one chunk of rows, whatever the range.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::{info, warn};
use uuid::Uuid;

use stockcast_runtime::Shutdown;
use stockcast_runtime::clock::SharedClock;

use crate::error::Error;
use crate::store::{
    ChunkDone, FeatureRow, JobRecord, JobState, OfflineStore, OnlineStore, OnlineWrite, StoreError,
    ViewWrite, WriteBatch, for_each_bar,
};
use crate::view::{Catalog, Ts, View, ViewState};

/// Attempts of a chunk the store refuses (not merely unreachable) before the job fails.
const MAX_REFUSALS: u32 = 5;

/// The `[materialize]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaterializeSettings {
    /// Bars of the view's interval per chunk (one transaction each).
    pub chunk_bars: i64,
    /// Jobs running at once.
    pub concurrency: usize,
    /// Bars per read.
    pub page: usize,
}

impl Default for MaterializeSettings {
    fn default() -> Self {
        Self {
            chunk_bars: 20_000,
            concurrency: 1,
            page: 10_000,
        }
    }
}

/// A request to materialize, in domain terms.
#[derive(Debug, Clone, PartialEq)]
pub struct MaterializeSpec {
    /// View name.
    pub view: String,
    /// Version, 0 = current.
    pub version: i32,
    /// Symbols; empty = every symbol with stored bars at the view's interval.
    pub symbols: Vec<String>,
    /// Event times `from <= t < until`.
    pub from: Ts,
    /// See `from`.
    pub until: Ts,
    /// Idempotency key.
    pub request_id: Option<String>,
}

/// Starts, resumes and reports materialization jobs.
#[derive(Debug, Clone)]
pub struct Materializer {
    catalog: Arc<Catalog>,
    offline: Arc<dyn OfflineStore>,
    online: Arc<dyn OnlineStore>,
    settings: MaterializeSettings,
    slots: Arc<Semaphore>,
    shutdown: Shutdown,
    clock: SharedClock,
    tasks: Arc<tokio::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl Materializer {
    /// A materializer that stops taking chunks when `shutdown` fires; `clock` times the
    /// jobs.
    pub fn new(
        catalog: Arc<Catalog>,
        offline: Arc<dyn OfflineStore>,
        online: Arc<dyn OnlineStore>,
        settings: MaterializeSettings,
        shutdown: Shutdown,
        clock: SharedClock,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Self {
            catalog,
            offline,
            online,
            settings,
            slots,
            shutdown,
            clock,
            tasks: Arc::default(),
        }
    }

    /// Creates a job (or returns the existing one for a repeated request id) and runs it in
    /// the background.
    pub async fn start(&self, spec: MaterializeSpec) -> Result<JobRecord, Error> {
        let view = self
            .catalog
            .get(&spec.view, spec.version)
            .ok_or_else(|| {
                Error::NotFound(if spec.version == 0 {
                    format!("feature view {} is not served", spec.view)
                } else {
                    format!("feature view {}:v{} is not served", spec.view, spec.version)
                })
            })?
            .clone();
        if spec.from >= spec.until {
            return Err(Error::invalid(
                "range",
                format!("start {} is not before end {}", spec.from, spec.until),
            ));
        }
        let symbols = if spec.symbols.is_empty() {
            self.offline.symbols(view.interval).await?
        } else {
            let mut s = spec.symbols.clone();
            s.sort();
            s.dedup();
            s
        };
        let slice = self.settings.chunk_bars.max(1) * view.interval.seconds();
        let slices = (spec.until - spec.from + slice - 1) / slice;
        let now = self.clock.now_seconds();
        let job = JobRecord {
            id: Uuid::now_v7(),
            request_id: spec.request_id.clone().filter(|r| !r.is_empty()),
            view: view.id.clone(),
            chunks_total: slices * symbols.len() as i64,
            symbols,
            from: spec.from,
            until: spec.until,
            chunk_seconds: slice,
            state: JobState::Pending,
            chunks_done: 0,
            bars_read: 0,
            vectors_written: 0,
            created_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
            error: None,
        };
        let stored = self.offline.create_job(&job).await?;
        if stored.id == job.id {
            self.spawn(stored.clone()).await;
        }
        Ok(stored)
    }

    /// Resumes every pending or running job (after a restart); returns how many.
    pub async fn resume_all(&self) -> Result<usize, StoreError> {
        let jobs = self.offline.unfinished_jobs().await?;
        let n = jobs.len();
        for job in jobs {
            self.spawn(job).await;
        }
        Ok(n)
    }

    /// One job.
    pub async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
        self.offline.job(id).await
    }

    /// Waits for running jobs to stop after their current chunk (call after shutdown).
    pub async fn join(&self) {
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
    }

    async fn spawn(&self, job: JobRecord) {
        let this = self.clone();
        self.tasks.lock().await.spawn(async move {
            let Ok(_slot) = this.slots.clone().acquire_owned().await else {
                return;
            };
            this.run(job).await;
        });
    }

    async fn run(&self, mut job: JobRecord) {
        let Some(view) = self.catalog.get(&job.view.name, job.view.version).cloned() else {
            job.state = JobState::Failed;
            job.error = Some(format!("feature view {} is no longer served", job.view));
            job.finished_at = Some(self.clock.now_seconds());
            if let Err(e) = self.offline.update_job(&job).await {
                warn!(job = %job.id, error = %e, "cannot record a failed job");
            }
            return;
        };
        let backoff = stockcast_runtime::Backoff::STARTUP;
        let mut attempt = 0;
        let mut refused = 0;
        loop {
            if self.shutdown.is_triggered() {
                return;
            }
            match self.run_chunks(&view, &mut job).await {
                Ok(true) => {
                    job.state = JobState::Succeeded;
                    job.finished_at = Some(self.clock.now_seconds());
                    job.updated_at = self.clock.now_seconds();
                    job.error = None;
                    if let Err(e) = self.offline.update_job(&job).await {
                        warn!(job = %job.id, error = %e, "cannot record a finished job; it will be resumed and found done");
                    }
                    info!(job = %job.id, view = %job.view, "materialization finished");
                    return;
                }
                Ok(false) => return, // shutting down; resumes at the next start
                Err(e) => {
                    job.error = Some(e.to_string());
                    // An unreachable store is waited for; an error the store keeps giving
                    // (a refused write, corrupt data) fails the job after a few attempts.
                    if !matches!(e, StoreError::Unavailable { .. }) {
                        refused += 1;
                        if refused >= MAX_REFUSALS {
                            job.state = JobState::Failed;
                            job.finished_at = Some(self.clock.now_seconds());
                            warn!(job = %job.id, error = %e, "materialization failed");
                            if let Err(e) = self.offline.update_job(&job).await {
                                warn!(job = %job.id, error = %e, "cannot record a failed job");
                            }
                            return;
                        }
                    }
                    warn!(job = %job.id, error = %e, "materialization chunk failed; retrying");
                    let _ = self.offline.update_job(&job).await;
                    let wait = backoff.delay(attempt);
                    attempt += 1;
                    if !stockcast_runtime::retry::sleep_unless(&self.shutdown, wait).await {
                        return;
                    }
                }
            }
        }
    }

    /// Runs the job's unfinished chunks; `Ok(false)` when interrupted by shutdown.
    async fn run_chunks(&self, view: &View, job: &mut JobRecord) -> Result<bool, StoreError> {
        if job.state == JobState::Pending {
            job.state = JobState::Running;
            job.started_at = Some(self.clock.now_seconds());
            job.updated_at = self.clock.now_seconds();
            self.offline.update_job(job).await?;
        }
        let done: HashMap<i64, Vec<u8>> = self
            .offline
            .done_chunks(job.id)
            .await?
            .into_iter()
            .collect();
        let slices = (job.until - job.from + job.chunk_seconds - 1) / job.chunk_seconds;
        let iv = view.interval.seconds();
        for (si, symbol) in job.symbols.clone().iter().enumerate() {
            let first = si as i64 * slices;
            // The last finished chunk of this symbol, if any, holds the state to go on from.
            let resume = (0..slices).rev().find(|k| done.contains_key(&(first + k)));
            if resume == Some(slices - 1) {
                continue;
            }
            let (mut state, start_k) = match resume {
                Some(k) => match ViewState::from_bytes(view, &done[&(first + k)]) {
                    Ok(s) => (s, k + 1),
                    Err(_) => (self.warm_up(view, symbol, job.from - iv).await?, 0),
                },
                None => (self.warm_up(view, symbol, job.from - iv).await?, 0),
            };
            for k in start_k..slices {
                if self.shutdown.is_triggered() {
                    return Ok(false);
                }
                // Bars whose vectors have event times in the slice.
                let lo = job.from + k * job.chunk_seconds - iv;
                let hi = (job.from + (k + 1) * job.chunk_seconds).min(job.until) - iv;
                let (rows, bars_read) =
                    self.compute_slice(view, symbol, &mut state, lo, hi).await?;
                let newest = rows.last().map(|r| OnlineWrite {
                    view: view.id.clone(),
                    symbol: symbol.clone(),
                    event_time: r.event_time,
                    values: r.values.clone(),
                    ttl: view.online_ttl,
                });
                let vectors = rows.len() as i64;
                if let Some(w) = newest {
                    self.online.write(std::slice::from_ref(&w)).await?;
                }
                self.offline
                    .write(&WriteBatch {
                        bars: Vec::new(),
                        views: vec![ViewWrite {
                            view: view.id.clone(),
                            rows,
                            states: Vec::new(),
                            keep_existing: true,
                        }],
                        revisions: Vec::new(),
                        chunk: Some(ChunkDone {
                            job_id: job.id,
                            chunk: first + k,
                            state: state.to_bytes(),
                            bars_read,
                            vectors_written: vectors,
                        }),
                    })
                    .await?;
                job.chunks_done += 1;
                job.bars_read += bars_read;
                job.vectors_written += vectors;
                crate::metrics::materialized(vectors as u64);
            }
        }
        Ok(true)
    }

    /// The state after every stored bar opened before `before`.
    async fn warm_up(
        &self,
        view: &View,
        symbol: &str,
        before: Ts,
    ) -> Result<ViewState, StoreError> {
        let mut state = view.new_state();
        let mut out = vec![0.0; view.features.len()];
        for_each_bar(
            self.offline.as_ref(),
            symbol,
            view.interval,
            (Ts::MIN, before),
            self.settings.page,
            |bar| view.update(&mut state, bar, &mut out),
        )
        .await?;
        Ok(state)
    }

    async fn compute_slice(
        &self,
        view: &View,
        symbol: &str,
        state: &mut ViewState,
        lo: Ts,
        hi: Ts,
    ) -> Result<(Vec<FeatureRow>, i64), StoreError> {
        let mut rows = Vec::new();
        let mut out = vec![0.0; view.features.len()];
        let read = for_each_bar(
            self.offline.as_ref(),
            symbol,
            view.interval,
            (lo, hi),
            self.settings.page,
            |bar| {
                view.update(state, bar, &mut out);
                rows.push(FeatureRow {
                    symbol: symbol.to_owned(),
                    event_time: view.event_time(bar.ts),
                    values: out.clone(),
                });
            },
        )
        .await?;
        Ok((rows, read))
    }
}
