//! A materialization whose chunks the store keeps refusing ends FAILED with the store's
//! reason; one whose store is only unreachable keeps waiting (and is not failed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use stockcast_feature_store::materialize::{MaterializeSettings, MaterializeSpec, Materializer};
use stockcast_feature_store::store::memory::MemoryOnline;
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_feature_store::store::{
    HistoricalRow, JobRecord, JobState, OfflineStore, PointInTimeQuery, RegisteredView, SpanQuery,
    StateSnapshot, StoreError, Ts, ViewId, WriteBatch,
};
use stockcast_feature_store::view::default_view;
use stockcast_market::{Bar, Interval};
use stockcast_runtime::Shutdown;
use uuid::Uuid;

use crate::support::stream;

/// SQLite, except that writes of materialization chunks fail with `error`.
#[derive(Debug)]
struct Refusing {
    inner: Arc<dyn OfflineStore>,
    unavailable: bool,
    refusals: AtomicU32,
}

#[async_trait]
impl OfflineStore for Refusing {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn register_view(&self, v: &ViewId, d: &str) -> Result<RegisteredView, StoreError> {
        self.inner.register_view(v, d).await
    }
    async fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.chunk.is_some() {
            self.refusals.fetch_add(1, Ordering::SeqCst);
            return Err(if self.unavailable {
                StoreError::Unavailable {
                    backend: "test",
                    reason: "connection refused".into(),
                }
            } else {
                StoreError::Failed {
                    backend: "test",
                    reason: "value out of range".into(),
                }
            });
        }
        self.inner.write(batch).await
    }
    async fn bars(
        &self,
        s: &str,
        i: Interval,
        f: Ts,
        u: Ts,
        l: usize,
    ) -> Result<Vec<Bar>, StoreError> {
        self.inner.bars(s, i, f, u, l).await
    }
    async fn bars_at(
        &self,
        i: Interval,
        k: &[(String, Ts)],
    ) -> Result<Vec<(Bar, i32)>, StoreError> {
        self.inner.bars_at(i, k).await
    }
    async fn symbols(&self, i: Interval) -> Result<Vec<String>, StoreError> {
        self.inner.symbols(i).await
    }
    async fn states(&self, v: &ViewId, s: &[String]) -> Result<Vec<StateSnapshot>, StoreError> {
        self.inner.states(v, s).await
    }
    async fn point_in_time(
        &self,
        q: PointInTimeQuery<'_>,
    ) -> Result<Vec<HistoricalRow>, StoreError> {
        self.inner.point_in_time(q).await
    }
    async fn span(&self, q: SpanQuery<'_>) -> Result<Vec<HistoricalRow>, StoreError> {
        self.inner.span(q).await
    }
    async fn create_job(&self, j: &JobRecord) -> Result<JobRecord, StoreError> {
        self.inner.create_job(j).await
    }
    async fn job(&self, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
        self.inner.job(id).await
    }
    async fn update_job(&self, j: &JobRecord) -> Result<(), StoreError> {
        self.inner.update_job(j).await
    }
    async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.inner.unfinished_jobs().await
    }
    async fn done_chunks(&self, id: Uuid) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        self.inner.done_chunks(id).await
    }
}

async fn job_against(unavailable: bool) -> (Arc<Refusing>, Materializer, JobRecord, Shutdown) {
    let inner = open(&DatabaseSettings::default(), &Shutdown::new())
        .await
        .unwrap();
    let bars = stream::series("REFUSE", 40, 1.0);
    inner
        .write(&WriteBatch {
            bars: bars.clone(),
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let store = Arc::new(Refusing {
        inner,
        unavailable,
        refusals: AtomicU32::new(0),
    });
    let shutdown = Shutdown::new();
    let materializer = Materializer::new(
        stream::catalog(&[default_view()]),
        Arc::clone(&store) as Arc<dyn OfflineStore>,
        Arc::new(MemoryOnline::new()),
        MaterializeSettings::default(),
        shutdown.clone(),
        stockcast_runtime::clock::system(),
    );
    let job = materializer
        .start(MaterializeSpec {
            view: "default".into(),
            version: 0,
            symbols: vec!["REFUSE".into()],
            from: bars[0].ts,
            until: bars[39].ts + 2 * 86_400,
            request_id: None,
        })
        .await
        .unwrap();
    (store, materializer, job, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_the_store_keeps_refusing_fails_the_job_with_its_reason() {
    let (store, materializer, job, _shutdown) = job_against(false).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let failed = loop {
        let now = materializer.job(job.id).await.unwrap().unwrap();
        if now.state == JobState::Failed {
            break now;
        }
        assert!(Instant::now() < deadline, "job still {:?}", now.state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("value out of range"),
        "{failed:?}"
    );
    assert!(failed.finished_at.is_some());
    assert_eq!(store.refusals.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_waited_for_not_failed() {
    let (store, materializer, job, shutdown) = job_against(true).await;
    // More attempts than a refusing store gets, and still running.
    let deadline = Instant::now() + Duration::from_secs(120);
    while store.refusals.load(Ordering::SeqCst) < 6 {
        assert!(Instant::now() < deadline, "the job stopped retrying");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = materializer.job(job.id).await.unwrap().unwrap();
    assert_eq!(now.state, JobState::Running);
    assert!(now.error.unwrap_or_default().contains("connection refused"));
    shutdown.trigger();
    materializer.join().await;
}
