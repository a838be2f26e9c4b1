//! Backfill jobs: planned into chunks, each chunk stored together with its "done" marker, so
//! a job interrupted at any point (process killed) resumes where it stopped when the service
//! starts again — no gaps, no duplicate rows.
//!
//! A job runs in one worker at a time: a process never spawns a second worker for a job it is
//! already running, and a worker claims a pending job with a compare-and-set on its state, so
//! a repeated request (same `request_id`) cannot start a second run whose chunks would count
//! the first run's bars as duplicates.

mod record;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stockcast_market::sources::Source;
use stockcast_market::sources::{BackfillSpec, SourceError, SourceParams, SourceRecord};
use stockcast_proto::stockcast::events::v1::IngestPath;
use stockcast_runtime::Shutdown;
use tokio::sync::Semaphore;
use uuid::Uuid;

pub use self::record::{JobFilter, JobRecord, JobState, JobUpdate};
use crate::error::Error;
use crate::ingest::{ChunkMark, Counts, Ingestor, Item, Origin};
use crate::metrics;

/// The sources a backfill can use.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Alpha Vantage; absent when no API key is configured.
    pub alpha_vantage: Option<Arc<dyn Source>>,
    /// CSV files on the service's file system.
    pub csv: Arc<dyn Source>,
    /// The synthetic generator.
    pub synthetic: Arc<dyn Source>,
}

impl Sources {
    fn for_params(&self, params: &SourceParams) -> Result<Arc<dyn Source>, Error> {
        match params {
            SourceParams::AlphaVantage(_) => self.alpha_vantage.clone().ok_or_else(|| {
                Error::InvalidArgument(
                    "source ALPHA_VANTAGE is not enabled: set alpha_vantage.api_key".to_owned(),
                )
            }),
            SourceParams::Csv(_) => Ok(self.csv.clone()),
            SourceParams::Synthetic(_) => Ok(self.synthetic.clone()),
        }
    }
}

/// Runs backfill jobs in the background, at most `concurrency` at once.
#[derive(Debug, Clone)]
pub struct Backfills {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ingestor: Ingestor,
    sources: Sources,
    permits: Arc<Semaphore>,
    batch_size: usize,
    shutdown: Shutdown,
    running: Mutex<HashMap<Uuid, tokio::task::JoinHandle<()>>>,
}

impl Backfills {
    /// Jobs stop taking new chunks when `shutdown` fires; an unfinished job resumes on the
    /// next start.
    pub fn new(
        ingestor: Ingestor,
        sources: Sources,
        concurrency: usize,
        batch_size: usize,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                ingestor,
                sources,
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
                batch_size: batch_size.max(1),
                shutdown,
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Creates a job (or returns the one created with the same `request_id`) and starts it.
    pub async fn start(
        &self,
        request_id: Option<&str>,
        spec: BackfillSpec,
    ) -> Result<JobRecord, Error> {
        self.inner.sources.for_params(&spec.params)?;
        let job = self
            .inner
            .ingestor
            .store()
            .create_job(request_id, &spec)
            .await?;
        if job.state == JobState::Pending {
            self.spawn(job.id, false);
        }
        Ok(job)
    }

    /// The job `id`.
    pub async fn get(&self, id: Uuid) -> Result<JobRecord, Error> {
        self.inner
            .ingestor
            .store()
            .job(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("backfill job {id} does not exist")))
    }

    /// One page of the jobs `filter` selects (at most `filter.limit`, newest first), and the
    /// job to list the next page before, if there are more.
    pub async fn list(&self, filter: JobFilter) -> Result<(Vec<JobRecord>, Option<Uuid>), Error> {
        let limit = filter.limit.max(0) as usize;
        let mut jobs = self
            .inner
            .ingestor
            .store()
            .jobs(&JobFilter {
                limit: filter.limit + 1,
                ..filter
            })
            .await?;
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next = jobs.last().filter(|_| more).map(|job| job.id);
        Ok((jobs, next))
    }

    /// Starts every job left pending or running by a previous process.
    pub async fn resume_all(&self) -> Result<usize, Error> {
        let mut resumed = 0;
        for state in [JobState::Running, JobState::Pending] {
            let jobs = self
                .inner
                .ingestor
                .store()
                .jobs(&JobFilter {
                    state: Some(state),
                    limit: 10_000,
                    ..Default::default()
                })
                .await?;
            for job in jobs {
                tracing::info!(job = %job.id, chunks_done = job.chunks_done, "resuming backfill");
                self.spawn(job.id, state == JobState::Running);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Waits until every running job has stopped (after shutdown, for tests and drain).
    pub async fn join(&self) {
        let handles: Vec<_> = match self.inner.running.lock() {
            Ok(mut running) => running.drain().map(|(_, h)| h).collect(),
            Err(poisoned) => poisoned.into_inner().drain().map(|(_, h)| h).collect(),
        };
        for handle in handles {
            let _ = handle.await;
        }
    }

    /// Number of jobs running in this process.
    pub fn running(&self) -> usize {
        match self.inner.running.lock() {
            Ok(running) => running.values().filter(|h| !h.is_finished()).count(),
            Err(_) => 0,
        }
    }

    /// Runs job `id` in the background, unless this process is running it already.
    fn spawn(&self, id: Uuid, resumed: bool) {
        let mut running = match self.inner.running.lock() {
            Ok(running) => running,
            Err(poisoned) => poisoned.into_inner(),
        };
        running.retain(|_, h| !h.is_finished());
        if running.contains_key(&id) {
            tracing::debug!(job = %id, "backfill already running here");
            return;
        }
        let inner = self.inner.clone();
        let handle = tokio::spawn(async move {
            let Ok(_permit) = inner.permits.clone().acquire_owned().await else {
                return;
            };
            if let Err(error) = run(&inner, id, resumed).await {
                tracing::error!(job = %id, %error, "backfill stopped");
                let update = JobUpdate {
                    error: Some(error.to_string()),
                    ..Default::default()
                };
                let _ = inner.ingestor.store().update_job(id, &update).await;
            }
        });
        running.insert(id, handle);
    }
}

async fn run(inner: &Inner, id: Uuid, resumed: bool) -> Result<(), Error> {
    let store = inner.ingestor.store();
    let Some(job) = store.job(id).await? else {
        return Err(Error::NotFound(format!("backfill job {id} does not exist")));
    };
    let source = inner.sources.for_params(&job.spec.params)?;
    // A pending job is claimed; a running one is only resumed (at start-up, left running by
    // a process that stopped).
    let claimed = store
        .update_job(
            id,
            &JobUpdate {
                only_from: Some(if resumed {
                    JobState::Running
                } else {
                    JobState::Pending
                }),
                state: Some(JobState::Running),
                started: true,
                resumed,
                ..Default::default()
            },
        )
        .await?;
    if !claimed {
        tracing::info!(job = %id, "backfill taken by another worker or finished; not run");
        return Ok(());
    }

    let plan = match retrying(inner, || source.plan(&job.spec)).await {
        Ok(Some(plan)) => plan,
        Ok(None) => return Ok(()),
        Err(error) => return fail(inner, id, error).await,
    };
    store
        .update_job(
            id,
            &JobUpdate {
                chunks_total: Some(plan.len() as i64),
                ..Default::default()
            },
        )
        .await?;
    let done = store.done_chunks(id).await?;
    let source_name = job.spec.params.source_name();
    for chunk in plan.iter().filter(|c| !done.contains(&c.key)) {
        if inner.shutdown.is_triggered() {
            tracing::info!(job = %id, "backfill paused by shutdown; resumes at next start");
            return Ok(());
        }
        let records = match retrying(inner, || source.fetch(&job.spec, chunk)).await {
            Ok(Some(records)) => records,
            Ok(None) => return Ok(()),
            Err(error) => return fail(inner, id, error).await,
        };
        let items: Vec<(i64, Item)> = records
            .into_iter()
            .enumerate()
            .map(|(i, record)| match record {
                SourceRecord::Bar(bar) => (i as i64, Item::Bar(bar)),
                SourceRecord::Row(row) => (
                    row.index,
                    Item::Read {
                        bar: row.bar,
                        payload: row.payload,
                        payload_type: row.payload_type,
                    },
                ),
                SourceRecord::Unreadable(unreadable) => (unreadable.index, unreadable.into()),
            })
            .collect();
        // Large chunks are stored in several transactions; only the last marks the chunk
        // done, so a crash in between redoes the chunk (idempotent upserts).
        let batches = items.len().div_ceil(inner.batch_size).max(1);
        let mut items = items.into_iter();
        let mut counts = Counts::default();
        for batch in 0..batches {
            let part: Vec<_> = items.by_ref().take(inner.batch_size).collect();
            let origin = Origin {
                source: source_name.to_owned(),
                path: IngestPath::Backfill,
                location: chunk.key.clone(),
                job: Some(id),
                chunk: (batch + 1 == batches).then(|| ChunkMark {
                    job: id,
                    key: chunk.key.clone(),
                    counts_before: counts,
                }),
            };
            let report = inner.ingestor.ingest(part, &origin).await?;
            counts.add(&report.counts);
        }
        metrics::chunk_done(source_name);
    }
    store
        .update_job(
            id,
            &JobUpdate {
                state: Some(JobState::Succeeded),
                finished: true,
                error: Some(String::new()),
                ..Default::default()
            },
        )
        .await?;
    tracing::info!(job = %id, chunks = plan.len(), "backfill done");
    Ok(())
}

async fn fail(inner: &Inner, id: Uuid, error: SourceError) -> Result<(), Error> {
    tracing::warn!(job = %id, %error, "backfill failed");
    inner
        .ingestor
        .store()
        .update_job(
            id,
            &JobUpdate {
                state: Some(JobState::Failed),
                finished: true,
                error: Some(error.to_string()),
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

/// Runs `call`, waiting out retryable errors until shutdown (then `Ok(None)`).
async fn retrying<T, F, Fut>(inner: &Inner, call: F) -> Result<Option<T>, SourceError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    loop {
        match call().await {
            Ok(value) => return Ok(Some(value)),
            Err(SourceError::Retryable {
                reason,
                retry_after,
            }) => {
                let wait =
                    retry_after.clamp(Duration::from_millis(100), Duration::from_secs(3_600));
                tracing::warn!(
                    reason,
                    wait_ms = wait.as_millis() as u64,
                    "source unavailable; retrying"
                );
                if !stockcast_runtime::retry::sleep_unless(&inner.shutdown, wait).await {
                    return Ok(None);
                }
            }
            Err(fatal) => return Err(fatal),
        }
    }
}
