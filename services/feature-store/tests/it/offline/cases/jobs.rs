//! Materialization jobs: created once per request id, updated, chunks counted once.

use super::*;

pub async fn jobs_are_created_once_and_updated(store: Arc<dyn OfflineStore>) {
    let first = job(Some("req-1"), T0 + 20);
    assert_eq!(store.create_job(&first).await.unwrap(), first);
    // Same request id: the stored job comes back and nothing new is stored.
    let again = job(Some("req-1"), T0 + 30);
    assert_eq!(store.create_job(&again).await.unwrap(), first);
    assert_eq!(store.job(again.id).await.unwrap(), None);
    assert_eq!(store.job(first.id).await.unwrap(), Some(first.clone()));

    let older = job(None, T0 + 10);
    assert_eq!(store.create_job(&older).await.unwrap(), older);
    let done = JobRecord {
        state: JobState::Succeeded,
        ..job(Some("req-2"), T0)
    };
    store.create_job(&done).await.unwrap();

    let ids: Vec<Uuid> = store
        .unfinished_jobs()
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, vec![older.id, first.id]);

    let running = JobRecord {
        state: JobState::Running,
        started_at: Some(T0 + 40),
        updated_at: T0 + 41,
        error: Some("broker unavailable, retrying".to_owned()),
        // Counters are not the caller's to set.
        chunks_done: 99,
        bars_read: 99,
        ..first.clone()
    };
    store.update_job(&running).await.unwrap();
    let stored = store.job(first.id).await.unwrap().unwrap();
    assert_eq!(
        stored,
        JobRecord {
            chunks_done: 0,
            bars_read: 0,
            ..running.clone()
        }
    );
    let failed = JobRecord {
        state: JobState::Failed,
        finished_at: Some(T0 + 50),
        updated_at: T0 + 50,
        error: Some("view default:v2 is not defined".to_owned()),
        ..older.clone()
    };
    store.update_job(&failed).await.unwrap();
    let ids: Vec<Uuid> = store
        .unfinished_jobs()
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, vec![first.id]);
    assert_eq!(store.job(older.id).await.unwrap(), Some(failed));
    assert!(store.update_job(&job(None, T0)).await.is_err());
    assert_eq!(store.job(Uuid::now_v7()).await.unwrap(), None);
}

pub async fn chunks_advance_counters_once(store: Arc<dyn OfflineStore>) {
    let job = job(Some("chunks"), T0);
    store.create_job(&job).await.unwrap();
    assert!(store.done_chunks(job.id).await.unwrap().is_empty());
    let chunk = |index: i64, state: &[u8], bars_read: i64, vectors: i64| WriteBatch {
        bars: vec![bar("AAPL", index, 10.0)],
        views: vec![rows_of(view(2), vec![row("AAPL", et(index), vec![1.0])])],
        revisions: Vec::new(),
        chunk: Some(ChunkDone {
            job_id: job.id,
            chunk: index,
            state: state.to_vec(),
            bars_read,
            vectors_written: vectors,
        }),
    };
    store.write(&chunk(1, b"after-1", 30, 20)).await.unwrap();
    store.write(&chunk(0, b"after-0", 10, 5)).await.unwrap();
    // A chunk written again (a retried transaction) counts once.
    store.write(&chunk(0, b"after-0", 10, 5)).await.unwrap();
    let stored = store.job(job.id).await.unwrap().unwrap();
    assert_eq!(stored.chunks_done, 2);
    assert_eq!(stored.bars_read, 40);
    assert_eq!(stored.vectors_written, 25);
    assert_eq!(stored.chunks_total, 48);
    assert_eq!(
        store.done_chunks(job.id).await.unwrap(),
        vec![(0, b"after-0".to_vec()), (1, b"after-1".to_vec())]
    );
    assert_eq!(all_rows(&store, &view(2), &["AAPL"]).await.len(), 2);
    assert_eq!(all_bars(&store, "AAPL").await.len(), 2);
    assert!(store.done_chunks(Uuid::now_v7()).await.unwrap().is_empty());
}
