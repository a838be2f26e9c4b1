//! The store conformance suite: every case runs on SQLite and on PostgreSQL.

use std::sync::Arc;

use stockcast_ingestion::store::{BarStore, Counts, JobFilter, JobState, JobUpdate, Outcome};
use stockcast_market::sources::synthetic::SyntheticParams;
use stockcast_market::sources::{BackfillSpec, SourceParams};
use stockcast_market::{Bar, Interval};

/// 2024-01-02 00:00 UTC, a Tuesday.
pub const DAY0: i64 = 1_704_153_600;

pub fn bar(symbol: &str, day: i64, close: f64) -> Bar {
    Bar {
        symbol: symbol.to_owned(),
        interval: Interval::D1,
        ts: DAY0 + day * 86_400,
        open: 100.0,
        high: close.max(100.0) + 1.0,
        low: close.min(100.0) - 1.0,
        close,
        volume: 1_000.0,
    }
}

pub fn spec(symbols: &[&str]) -> BackfillSpec {
    BackfillSpec {
        symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
        interval: Interval::D1,
        start: DAY0,
        end: DAY0 + 30 * 86_400,
        params: SourceParams::Synthetic(SyntheticParams::default()),
    }
}

async fn upsert(store: &Arc<dyn BarStore>, bars: &[Bar]) -> Vec<Outcome> {
    let mut tx = store.begin().await.unwrap();
    let outcomes = tx.upsert(bars, "test").await.unwrap();
    tx.commit().await.unwrap();
    outcomes
}

pub async fn inserts_duplicates_and_corrections(store: Arc<dyn BarStore>) {
    let (a, b) = (bar("AAPL", 0, 101.0), bar("AAPL", 1, 102.0));
    assert_eq!(
        upsert(&store, &[a.clone(), b.clone()]).await,
        vec![Outcome::Inserted, Outcome::Inserted]
    );
    assert_eq!(
        upsert(&store, std::slice::from_ref(&a)).await,
        vec![Outcome::Unchanged]
    );
    let fixed = Bar {
        close: 101.5,
        ..a.clone()
    };
    assert_eq!(
        upsert(&store, std::slice::from_ref(&fixed)).await,
        vec![Outcome::Corrected {
            previous: a.clone(),
            revision: 1
        }]
    );
    let again = Bar {
        close: 101.25,
        ..a.clone()
    };
    assert_eq!(
        upsert(&store, std::slice::from_ref(&again)).await,
        vec![Outcome::Corrected {
            previous: fixed,
            revision: 2
        }]
    );
    let stored = store
        .bars("AAPL", Interval::D1, DAY0, DAY0 + 10 * 86_400)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].bar, again);
    assert_eq!(stored[0].revision, 2);
    assert_eq!(stored[0].source, "test");
    assert_eq!(stored[1].bar, b);
    assert_eq!(stored[1].revision, 0);
}

pub async fn repeats_within_one_batch_apply_in_order(store: Arc<dyn BarStore>) {
    let a = bar("MSFT", 0, 101.0);
    let a2 = Bar {
        volume: 7.0,
        ..a.clone()
    };
    let outcomes = upsert(
        &store,
        &[a.clone(), a.clone(), a2.clone(), bar("MSFT", 1, 99.0)],
    )
    .await;
    assert_eq!(
        outcomes,
        vec![
            Outcome::Inserted,
            Outcome::Unchanged,
            Outcome::Corrected {
                previous: a,
                revision: 1
            },
            Outcome::Inserted
        ]
    );
    let stored = store
        .bars("MSFT", Interval::D1, DAY0, DAY0 + 86_400)
        .await
        .unwrap();
    assert_eq!(stored[0].bar, a2);
}

pub async fn a_dropped_transaction_leaves_nothing(store: Arc<dyn BarStore>) {
    {
        let mut tx = store.begin().await.unwrap();
        tx.upsert(&[bar("NVDA", 0, 100.0)], "test").await.unwrap();
    }
    let stored = store
        .bars("NVDA", Interval::D1, 0, DAY0 + 365 * 86_400)
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
}

pub async fn chunks_commit_with_their_bars_once(store: Arc<dyn BarStore>) {
    let job = store.create_job(None, &spec(&["AMZN"])).await.unwrap();
    assert_eq!(job.state, JobState::Pending);
    let counts = Counts {
        accepted: 2,
        rejected: 1,
        duplicate: 0,
        corrected: 0,
    };
    {
        let mut tx = store.begin().await.unwrap();
        tx.upsert(&[bar("AMZN", 0, 100.0)], "test").await.unwrap();
        tx.chunk_done(job.id, "AMZN/0", &counts).await.unwrap();
        // dropped: rolled back
    }
    assert!(store.done_chunks(job.id).await.unwrap().is_empty());
    for _ in 0..2 {
        let mut tx = store.begin().await.unwrap();
        tx.upsert(&[bar("AMZN", 0, 100.0)], "test").await.unwrap();
        tx.chunk_done(job.id, "AMZN/0", &counts).await.unwrap();
        tx.commit().await.unwrap();
    }
    let done = store.done_chunks(job.id).await.unwrap();
    assert_eq!(
        done.into_iter().collect::<Vec<_>>(),
        vec!["AMZN/0".to_owned()]
    );
    let job = store.job(job.id).await.unwrap().unwrap();
    assert_eq!(job.chunks_done, 1, "a chunk counts once");
    assert_eq!(job.counts, counts);
}

pub async fn jobs_are_idempotent_by_request_id_and_listed(store: Arc<dyn BarStore>) {
    let first = store
        .create_job(Some("req-1"), &spec(&["AAPL", "MSFT"]))
        .await
        .unwrap();
    let again = store
        .create_job(Some("req-1"), &spec(&["AAPL", "MSFT"]))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(first.spec, again.spec);
    let other = store.create_job(None, &spec(&["TSLA"])).await.unwrap();
    assert_ne!(other.id, first.id);

    store
        .update_job(
            first.id,
            &JobUpdate {
                state: Some(JobState::Running),
                chunks_total: Some(4),
                started: true,
                resumed: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let running = store.job(first.id).await.unwrap().unwrap();
    assert_eq!(
        (running.state, running.chunks_total, running.resumes),
        (JobState::Running, 4, 1)
    );
    assert!(running.started_at.is_some());
    assert!(running.finished_at.is_none());

    let by_state = store
        .jobs(&JobFilter {
            state: Some(JobState::Running),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_state.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![first.id]
    );
    let by_symbol = store
        .jobs(&JobFilter {
            symbol: Some("TSLA".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_symbol.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![other.id]
    );

    let page1 = store
        .jobs(&JobFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page1.len(), 1);
    let last = &page1[0];
    let page2 = store
        .jobs(&JobFilter {
            limit: 10,
            before: Some(last.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page2.len(), 1);
    assert_ne!(page2[0].id, last.id);

    store
        .update_job(
            first.id,
            &JobUpdate {
                state: Some(JobState::Failed),
                finished: true,
                error: Some("boom".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let failed = store.job(first.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.state, failed.error.as_str()),
        (JobState::Failed, "boom")
    );
    assert!(failed.finished_at.is_some());
    assert!(store.job(uuid::Uuid::now_v7()).await.unwrap().is_none());
}

pub async fn coverage_pages_by_symbol_and_interval(store: Arc<dyn BarStore>) {
    let mut bars = Vec::new();
    for symbol in ["AA", "AB", "B"] {
        bars.push(bar(symbol, 0, 100.0));
        bars.push(bar(symbol, 3, 100.0));
    }
    let intraday = Bar {
        interval: Interval::M5,
        ..bar("AA", 0, 100.0)
    };
    bars.push(intraday);
    upsert(&store, &bars).await;

    let all = store.coverage(None, "", None, 100).await.unwrap();
    let keys: Vec<_> = all
        .iter()
        .map(|c| (c.symbol.as_str(), c.interval))
        .collect();
    // Intervals order by their names: "1d" < "5m".
    let expected = vec![
        ("AA", Interval::D1),
        ("AA", Interval::M5),
        ("AB", Interval::D1),
        ("B", Interval::D1),
    ];
    assert_eq!(keys, expected);
    let aa = &all[0];
    assert_eq!(
        (aa.first_ts, aa.last_ts, aa.bar_count),
        (DAY0, DAY0 + 3 * 86_400, 2)
    );

    let prefixed = store
        .coverage(Some(Interval::D1), "A", None, 100)
        .await
        .unwrap();
    assert_eq!(
        prefixed
            .iter()
            .map(|c| c.symbol.as_str())
            .collect::<Vec<_>>(),
        vec!["AA", "AB"]
    );
    let after = store
        .coverage(None, "", Some(("AA".into(), Interval::D1)), 100)
        .await
        .unwrap();
    let keys: Vec<_> = after
        .iter()
        .map(|c| (c.symbol.as_str(), c.interval))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("AA", Interval::M5),
            ("AB", Interval::D1),
            ("B", Interval::D1)
        ]
    );
    assert_eq!(
        store.timestamps("AB", Interval::D1).await.unwrap(),
        vec![DAY0, DAY0 + 3 * 86_400]
    );
}

/// A claim (`only_from`) applies once: of two workers claiming a pending job, one wins.
pub async fn a_state_claim_applies_only_from_that_state(store: Arc<dyn BarStore>) {
    let job = store.create_job(None, &spec(&["CLM"])).await.unwrap();
    let claim = JobUpdate {
        only_from: Some(JobState::Pending),
        state: Some(JobState::Running),
        started: true,
        ..Default::default()
    };
    assert!(
        store.update_job(job.id, &claim).await.unwrap(),
        "first claim"
    );
    assert!(
        !store.update_job(job.id, &claim).await.unwrap(),
        "second claim"
    );
    let claimed = store.job(job.id).await.unwrap().unwrap();
    assert_eq!(claimed.state, JobState::Running);
    assert!(
        !store
            .update_job(uuid::Uuid::now_v7(), &JobUpdate::default())
            .await
            .unwrap(),
        "no such job"
    );
}

/// One `#[tokio::test]` per case; `$make` is an async expression yielding `Arc<dyn BarStore>`.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@cases $make;
            inserts_duplicates_and_corrections,
            repeats_within_one_batch_apply_in_order,
            a_dropped_transaction_leaves_nothing,
            chunks_commit_with_their_bars_once,
            jobs_are_idempotent_by_request_id_and_listed,
            a_state_claim_applies_only_from_that_state,
            coverage_pages_by_symbol_and_interval,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make.await;
                $crate::support::store_cases::$case(store).await;
            }
        )*
    };
}
