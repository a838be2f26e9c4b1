//! Backfill jobs on the embedded backends with a source that holds its plans until the test
//! releases them: a job runs in one worker at a time, so a repeated request cannot make a
//! second run count the first run's bars as duplicates.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use stockcast_bus::MemoryBus;
use stockcast_ingestion::ingest::{Counts, Ingestor};
use stockcast_ingestion::jobs::{Backfills, JobRecord, JobState, Sources};
use stockcast_ingestion::store::SqliteStore;
use stockcast_market::sources::synthetic::{SyntheticParams, SyntheticSource};
use stockcast_market::sources::{
    BackfillSpec, Chunk, Source, SourceError, SourceParams, SourceRecord,
};
use stockcast_market::{Interval, ValidationSettings, Validator};
use stockcast_runtime::Shutdown;
use tokio::sync::Semaphore;

/// 2024-01-01 00:00 UTC, a Monday.
const START: i64 = 1_704_067_200;
const DAY: i64 = 86_400;
const DEADLINE: Duration = Duration::from_secs(30);

/// The synthetic generator, counting its plans per symbol and holding each plan until the
/// gate opens.
#[derive(Debug)]
struct Gated {
    plans: std::sync::Mutex<Vec<String>>,
    waiting: AtomicUsize,
    gate: Semaphore,
}

#[async_trait]
impl Source for Gated {
    async fn plan(&self, spec: &BackfillSpec) -> Result<Vec<Chunk>, SourceError> {
        self.plans.lock().unwrap().push(spec.symbols.join(","));
        self.waiting.fetch_add(1, Ordering::SeqCst);
        drop(self.gate.acquire().await);
        SyntheticSource.plan(spec).await
    }

    async fn fetch(
        &self,
        spec: &BackfillSpec,
        chunk: &Chunk,
    ) -> Result<Vec<SourceRecord>, SourceError> {
        SyntheticSource.fetch(spec, chunk).await
    }
}

fn spec(symbol: &str) -> BackfillSpec {
    BackfillSpec {
        symbols: vec![symbol.to_owned()],
        interval: Interval::D1,
        start: START,
        end: START + 28 * DAY,
        params: SourceParams::Synthetic(SyntheticParams::default()),
    }
}

async fn finished(backfills: &Backfills, job: &JobRecord) -> JobRecord {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = backfills.get(job.id).await.unwrap();
        if now.state.is_final() {
            return now;
        }
        assert!(Instant::now() < deadline, "job not done: {now:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_requested_twice_while_it_waits_runs_once_and_counts_each_bar_once() {
    let store = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
    let validator = Validator::new(&ValidationSettings::default()).unwrap();
    let clock = stockcast_runtime::clock::system();
    let ingestor = Ingestor::new(
        store,
        Arc::new(MemoryBus::new()),
        validator,
        "stockcast.market.bars.v1",
        clock,
    );
    let source = Arc::new(Gated {
        plans: Default::default(),
        waiting: AtomicUsize::new(0),
        gate: Semaphore::new(0),
    });
    let sources = Sources {
        alpha_vantage: None,
        csv: source.clone(),
        synthetic: source.clone(),
    };
    // One job at a time: the first holds the only permit inside its plan, so the second
    // waits, still pending, while it is requested again.
    let backfills = Backfills::new(ingestor, sources, 1, 7, Shutdown::new());
    let first = backfills.start(Some("first"), spec("AAA")).await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    while source.waiting.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the first job never planned");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = backfills.start(Some("second"), spec("BBB")).await.unwrap();
    let again = backfills.start(Some("second"), spec("BBB")).await.unwrap();
    assert_eq!(again.id, second.id, "same request_id, same job");
    assert_eq!(again.state, JobState::Pending, "{again:?}");

    source.gate.add_permits(1);
    let first = finished(&backfills, &first).await;
    let second = finished(&backfills, &second).await;

    // Twenty weekdays in four weeks, each stored once, in batches of seven.
    let new = Counts {
        accepted: 20,
        ..Counts::default()
    };
    for job in [&first, &second] {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.counts, new, "{job:?}");
        assert_eq!((job.chunks_done, job.resumes), (1, 0), "{job:?}");
    }
    assert_eq!(
        *source.plans.lock().unwrap(),
        vec!["AAA".to_owned(), "BBB".to_owned()],
        "each job planned by one run"
    );
    backfills.join().await;
}
