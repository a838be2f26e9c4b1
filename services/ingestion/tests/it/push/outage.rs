//! Pushes while the database is down or lost mid-stream: what is stored, and where to
//! resend from.

use super::*;

async fn assert_nothing_published(service: &Service, consumer: &mut dyn Consumer) {
    let events = read_to_marker(&*service.bus, consumer, &service.topic).await;
    assert!(
        events.is_empty(),
        "{} bar events published for a failed push",
        events.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_while_the_database_is_down_is_unavailable_and_says_where_to_resend() {
    let schema = stockcast_testkit::unique("ingest_down");
    let unreachable = PostgresStore::from(
        stockcast_sql::SchemaPool::connect_lazy(
            "postgres://postgres@127.0.0.1:1/x",
            &schema,
            2,
            Duration::from_millis(500),
        )
        .expect("lazy pool"),
    );
    let service = Service::start_on(settings("push-down", |_| {}), unreachable).await;
    let bars: Vec<Bar> = (0..3).map(|day| daily("AAPL", day, 101.0)).collect();
    let status = push(&service, vec![bars])
        .await
        .expect_err("a push with the database down must fail");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("database"),
        "says what is down: {}",
        status.message()
    );
    assert!(
        status.message().contains("resend from index 0"),
        "says where to resend from: {}",
        status.message()
    );
    let mut consumer = service.bars_consumer().await;
    assert_nothing_published(&service, consumer.as_mut()).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_lost_mid_stream_keeps_the_stored_batches_and_says_where_to_resend() {
    let url = stockcast_testkit::POSTGRES.require();
    let schema = stockcast_testkit::unique("ingest_cut");
    let direct = crate::support::service::store_at(&url, &schema).await;
    let proxy = Proxy::start(crate::support::service::postgres_addr(&url)).await;
    let proxied = PostgresStore::from(
        stockcast_sql::SchemaPool::connect_lazy(
            &crate::support::service::with_addr(&url, proxy.addr),
            &schema,
            2,
            Duration::from_secs(1),
        )
        .expect("lazy pool"),
    );
    let service =
        Service::start_on(settings("push-cut", |s| s.ingest.batch_size = 100), proxied).await;

    let bars: Vec<Bar> = (0..150)
        .map(|i| bar("CUT", PbInterval::Interval1Minute, OPEN0 + 60 * i, 101.0))
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut client = service.client.clone();
    let call = tokio::spawn(async move { client.push_bars(ReceiverStream::new(rx)).await });
    tx.send(pb::PushBarsRequest {
        bars: bars[..100].to_vec(),
        ..Default::default()
    })
    .await
    .expect("send first batch");
    // The first 100 bars make a full batch, stored while the stream is still open.
    eventually("first batch stored", Duration::from_secs(30), || async {
        let n = direct
            .bars("CUT", Interval::M1, 0, Y2100)
            .await
            .expect("bars")
            .len();
        (n == 100).then_some(())
    })
    .await;
    proxy.cut();
    tx.send(pb::PushBarsRequest {
        bars: bars[100..].to_vec(),
        ..Default::default()
    })
    .await
    .expect("send second batch");
    drop(tx);
    let status = call
        .await
        .expect("push task")
        .expect_err("the second batch cannot be stored");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("resend from index 100"),
        "says where to resend from: {}",
        status.message()
    );
    let rows = direct
        .bars("CUT", Interval::M1, 0, Y2100)
        .await
        .expect("bars");
    assert_eq!(
        rows.len(),
        100,
        "the first batch stays, the second is not stored"
    );

    let mut consumer = service.bars_consumer().await;
    let events = read_to_marker(&*service.bus, consumer.as_mut(), &service.topic).await;
    let published: BTreeSet<i64> = events
        .iter()
        .map(|m| decode_event(m).bar.unwrap().ts.unwrap().seconds)
        .collect();
    assert_eq!(events.len(), 100, "events of the stored batch only");
    assert_eq!(
        published,
        (0..100).map(|i| OPEN0 + 60 * i).collect::<BTreeSet<_>>()
    );
    service.stop().await;
    let _ = direct.db().drop_schema().await;
}
