//! Materialization of a new view version: idempotent, and resumable across a restart.

use super::*;

async fn job(client: &mut Client, id: &str) -> pb::MaterializationJob {
    client
        .get_materialization_job(pb::GetMaterializationJobRequest {
            job_id: id.to_owned(),
        })
        .await
        .expect("GetMaterializationJob")
        .into_inner()
        .job
        .unwrap()
}

async fn await_succeeded(client: &Client, id: &str) -> pb::MaterializationJob {
    eventually("the materialization succeeds", || {
        let mut client = client.clone();
        let id = id.to_owned();
        async move {
            let j = job(&mut client, &id).await;
            assert_ne!(j.state, JobState::Failed as i32, "{j:?}");
            (j.state == JobState::Succeeded as i32).then_some(j)
        }
    })
    .await
}

async fn materialize(
    client: &mut Client,
    version: i32,
    end: Option<i64>,
    request_id: &str,
) -> pb::MaterializationJob {
    client
        .materialize(materialize_request(version, end, request_id))
        .await
        .expect("Materialize")
        .into_inner()
        .job
        .unwrap()
}

/// Consumes `all` with only `default` v1 served, so that v2 has no rows, and stops.
async fn consume_with_v1_only(settings: &Settings, all: &[&[Bar]]) {
    let view = View::compile(&default_view()).unwrap();
    let svc = Service::start(settings.clone()).await;
    let bars: Vec<Vec<Bar>> = all.iter().map(|s| s.to_vec()).collect();
    svc.publish(&interleave(&bars)).await;
    await_online(&svc.client, &view, all).await;
    svc.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialize_computes_a_new_version_from_the_stored_bars() {
    let a = series("MATA", 120, 1.0);
    let b = jumpy("MATB", T0 + 10 * DAY, 80, 3);
    let v2 = View::compile(&default_v2()).unwrap();
    let mut settings = real_settings("fs-svc-mat", vec![default_view()]);
    consume_with_v1_only(&settings, &[&a, &b]).await;

    settings.views = vec![default_view(), default_v2()];
    let svc = Service::start(settings.clone()).await;
    let mut client = svc.client();
    assert!(
        span_rows(&mut client, "default", 2, &["MATA", "MATB"])
            .await
            .is_empty(),
        "v2 has no rows for bars consumed before it was served"
    );
    let request_id = stockcast_testkit::unique("mat");
    let started = materialize(&mut client, 2, None, &request_id).await;
    assert_eq!(started.feature_view, "default");
    assert_eq!(started.feature_view_version, 2);
    assert_eq!(
        started.symbols,
        ["MATA", "MATB"],
        "every symbol with stored bars"
    );
    assert_eq!(started.chunks_total, 2, "one slice per symbol");
    let done = await_succeeded(&client, &started.job_id).await;
    assert_eq!(done.chunks_done, done.chunks_total);
    assert_eq!(done.vectors_written, 200);
    assert_eq!(done.bars_read, 200);
    assert!(done.finished_at.is_some() && done.started_at.is_some());
    assert!(done.error.is_empty(), "{}", done.error);

    let rows = span_rows(&mut client, "default", 2, &["MATA", "MATB"]).await;
    assert_rows_exact(&v2, &rows, &[&a, &b]);
    // The online store has v2's newest vectors (of 2020: stale).
    let r = online(&mut client, "default", 2, &["MATA", "MATB"]).await;
    assert_eq!(r.feature_names, v2.names);
    for (v, s) in r.vectors.iter().zip([&a, &b]) {
        assert_eq!(status_of(v), pb::FeatureStatus::Stale);
        assert_eq!(
            v.event_time.unwrap().seconds,
            v2.event_time(s.last().unwrap().ts)
        );
        assert!(same_bits(&v.values, &v2.compute(s).pop().unwrap()));
    }

    // A repeated request id returns the same job; another request starts another.
    let again = materialize(&mut client, 2, None, &request_id).await;
    assert_eq!(again.job_id, started.job_id);
    let other = materialize(&mut client, 2, None, "").await;
    assert_ne!(other.job_id, started.job_id);
    await_succeeded(&client, &other.job_id).await;
    let rows = span_rows(&mut client, "default", 2, &["MATA", "MATB"]).await;
    assert_rows_exact(&v2, &rows, &[&a, &b]);

    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_materialization_resumes_after_a_restart() {
    let a = series("RESA", 150, 1.0);
    let b = jumpy("RESB", T0 + 20 * DAY, 150, 4);
    let v2 = View::compile(&default_v2()).unwrap();
    let mut settings = real_settings("fs-svc-resume", vec![default_view()]);
    consume_with_v1_only(&settings, &[&a, &b]).await;

    // One bar per chunk: 2 symbols × 1,200 days = 2,400 chunks, one transaction each.
    settings.views = vec![default_view(), default_v2()];
    settings.materialize.chunk_bars = 1;
    let end = T0 + 1_200 * DAY;
    let svc = Service::start(settings.clone()).await;
    let mut client = svc.client();
    let started = materialize(&mut client, 2, Some(end), "").await;
    assert_eq!(started.chunks_total, 2_400);
    // Stop once it has made some progress.
    eventually("the first chunks", || {
        let mut client = client.clone();
        let id = started.job_id.clone();
        async move { (job(&mut client, &id).await.chunks_done >= 10).then_some(()) }
    })
    .await;
    let offline = svc.deps.offline.clone();
    drop(client);
    svc.stop().await.expect("clean stop");
    let id = uuid::Uuid::parse_str(&started.job_id).unwrap();
    let interrupted = offline.job(id).await.unwrap().unwrap();
    assert!(
        interrupted.chunks_done < interrupted.chunks_total,
        "the job was stopped before its end: {interrupted:?}"
    );
    assert_eq!(
        interrupted.state,
        stockcast_feature_store::store::JobState::Running
    );

    // A new instance on the same stores resumes it.
    let svc = Service::start(settings.clone()).await;
    let mut client = svc.client();
    let done = await_succeeded(&client, &started.job_id).await;
    assert_eq!(done.chunks_done, 2_400);
    assert_eq!(done.chunks_total, 2_400);
    assert_eq!(done.vectors_written, 300, "every vector counted once");
    assert_eq!(done.bars_read, 300, "every bar read once");
    let rows = span_rows(&mut client, "default", 2, &["RESA", "RESB"]).await;
    assert_rows_exact(&v2, &rows, &[&a, &b]);

    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}
