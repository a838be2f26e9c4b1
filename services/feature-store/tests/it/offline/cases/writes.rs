//! Writes: all or nothing, upserts, filling in without replacing, bit-exact vectors, large batches.

use super::*;

pub async fn write_is_all_or_nothing(store: Arc<dyn OfflineStore>) {
    store
        .write(&WriteBatch {
            bars: vec![bar("AAPL", 0, 100.0)],
            views: vec![rows_of(view(1), vec![row("AAPL", et(0), vec![1.0])])],
            revisions: Vec::new(),
            chunk: None,
        })
        .await
        .unwrap();

    // Fails at its last step: a chunk of a job that does not exist.
    let unknown_job = WriteBatch {
        bars: vec![bar("AAPL", 0, 111.0), bar("AAPL", 1, 101.0)],
        views: vec![ViewWrite {
            view: view(1),
            rows: vec![row("AAPL", et(0), vec![2.0]), row("AAPL", et(1), vec![3.0])],
            states: vec![state("AAPL", ts(1), 2, b"s")],
            keep_existing: false,
        }],
        revisions: Vec::new(),
        chunk: Some(ChunkDone {
            job_id: Uuid::now_v7(),
            chunk: 0,
            state: b"c".to_vec(),
            bars_read: 2,
            vectors_written: 2,
        }),
    };
    assert!(store.write(&unknown_job).await.is_err());

    // Fails in the middle: a view version below 1, after a valid view's rows.
    let bad_version = WriteBatch {
        bars: vec![bar("AAPL", 2, 102.0)],
        views: vec![
            rows_of(view(1), vec![row("AAPL", et(2), vec![4.0])]),
            rows_of(
                ViewId::new("default", 0),
                vec![row("AAPL", et(2), vec![5.0])],
            ),
            rows_of(view(3), vec![row("AAPL", et(2), vec![6.0])]),
        ],
        revisions: Vec::new(),
        chunk: None,
    };
    assert!(store.write(&bad_version).await.is_err());

    assert_eq!(all_bars(&store, "AAPL").await, vec![bar("AAPL", 0, 100.0)]);
    let rows = all_rows(&store, &view(1), &["AAPL"]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0].vector,
        Some(OnlineVector {
            event_time: et(0),
            values: vec![1.0]
        })
    );
    assert!(all_rows(&store, &view(3), &["AAPL"]).await.is_empty());
    assert!(
        store
            .states(&view(1), &["AAPL".to_owned()])
            .await
            .unwrap()
            .is_empty()
    );
}

/// A fill-only write (materialization) inserts missing rows and keeps stored ones.
pub async fn keep_existing_fills_without_replacing(store: Arc<dyn OfflineStore>) {
    let first = rows_of(
        view(1),
        vec![row("KEEP", et(0), vec![1.0]), row("KEEP", et(1), vec![2.0])],
    );
    store
        .write(&WriteBatch {
            views: vec![first],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let mut fill = rows_of(
        view(1),
        vec![
            row("KEEP", et(1), vec![-2.0]),
            row("KEEP", et(2), vec![3.0]),
        ],
    );
    fill.keep_existing = true;
    store
        .write(&WriteBatch {
            views: vec![fill],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let got: Vec<(Ts, Vec<f64>)> = store
        .span(SpanQuery {
            view: &view(1),
            interval: Interval::D1,
            symbols: &["KEEP".to_owned()],
            from: 0,
            until: Ts::MAX / 2,
            after: None,
            limit: 10,
            label_horizon: None,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let v = r.vector.unwrap();
            (v.event_time, v.values)
        })
        .collect();
    assert_eq!(
        got,
        vec![(et(0), vec![1.0]), (et(1), vec![2.0]), (et(2), vec![3.0])]
    );
}

pub async fn upserts_are_idempotent_and_replace_values(store: Arc<dyn OfflineStore>) {
    let batch = WriteBatch {
        bars: (0..5).map(|i| bar("MSFT", i, 200.0 + i as f64)).collect(),
        views: vec![ViewWrite {
            view: view(1),
            rows: (0..5)
                .map(|i| row("MSFT", et(i), vec![i as f64, -(i as f64)]))
                .collect(),
            states: vec![state("MSFT", ts(4), 5, b"after-4")],
            keep_existing: false,
        }],
        revisions: Vec::new(),
        chunk: None,
    };
    store.write(&batch).await.unwrap();
    let bars = all_bars(&store, "MSFT").await;
    let rows = all_rows(&store, &view(1), &["MSFT"]).await;
    let states = store.states(&view(1), &["MSFT".to_owned()]).await.unwrap();
    store.write(&batch).await.unwrap();
    assert_eq!(all_bars(&store, "MSFT").await, bars);
    assert_eq!(all_rows(&store, &view(1), &["MSFT"]).await, rows);
    assert_eq!(
        store.states(&view(1), &["MSFT".to_owned()]).await.unwrap(),
        states
    );
    assert_eq!(bars.len(), 5);
    assert_eq!(rows.len(), 5);

    // New values replace the stored ones; within one batch the last repeat wins.
    let fixed = WriteBatch {
        bars: vec![bar("MSFT", 2, 1.0), bar("MSFT", 2, 2.0)],
        views: vec![ViewWrite {
            view: view(1),
            rows: vec![
                row("MSFT", et(2), vec![7.0]),
                row("MSFT", et(2), vec![8.0, 9.0, 10.0]),
            ],
            states: vec![
                state("MSFT", ts(5), 6, b"x"),
                state("MSFT", ts(6), 7, b"after-6"),
            ],
            keep_existing: false,
        }],
        revisions: Vec::new(),
        chunk: None,
    };
    store.write(&fixed).await.unwrap();
    let bars = all_bars(&store, "MSFT").await;
    assert_eq!(bars.len(), 5);
    assert_eq!(bars[2], bar("MSFT", 2, 2.0));
    assert_eq!(bars[3], bar("MSFT", 3, 203.0));
    let rows = all_rows(&store, &view(1), &["MSFT"]).await;
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[2].vector.as_ref().unwrap().values,
        vec![8.0, 9.0, 10.0]
    );
    assert_eq!(rows[3].vector.as_ref().unwrap().values, vec![3.0, -3.0]);
    assert_eq!(
        store.states(&view(1), &["MSFT".to_owned()]).await.unwrap(),
        vec![state("MSFT", ts(6), 7, b"after-6")]
    );
    // A batch of stored and new keys at once writes all of them.
    let overlapping = WriteBatch {
        bars: (3..8).map(|i| bar("MSFT", i, 300.0 + i as f64)).collect(),
        views: vec![rows_of(
            view(1),
            (3..8)
                .map(|i| row("MSFT", et(i), vec![30.0 + i as f64]))
                .collect(),
        )],
        revisions: Vec::new(),
        chunk: None,
    };
    store.write(&overlapping).await.unwrap();
    let bars = all_bars(&store, "MSFT").await;
    assert_eq!(bars.len(), 8);
    assert_eq!(bars[2], bar("MSFT", 2, 2.0));
    assert_eq!(bars[3], bar("MSFT", 3, 303.0));
    assert_eq!(bars[7], bar("MSFT", 7, 307.0));
    let rows = all_rows(&store, &view(1), &["MSFT"]).await;
    let values: Vec<f64> = rows
        .iter()
        .map(|r| r.vector.as_ref().unwrap().values[0])
        .collect();
    assert_eq!(values, vec![0.0, 1.0, 8.0, 33.0, 34.0, 35.0, 36.0, 37.0]);
    // An empty batch is a no-op.
    store.write(&WriteBatch::default()).await.unwrap();
    assert_eq!(all_bars(&store, "MSFT").await.len(), 8);
}

pub async fn vectors_round_trip_bit_exactly(store: Arc<dyn OfflineStore>) {
    let odd_nan = f64::from_bits(0x7ff8_0000_0000_0001);
    let negative_nan = f64::from_bits(0xfff8_0000_0000_0000);
    let values = vec![
        f64::NAN,
        1.25,
        -0.0,
        odd_nan,
        negative_nan,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::from_bits(1),
        f64::MAX,
        0.1 + 0.2,
    ];
    store
        .write(&WriteBatch {
            views: vec![rows_of(
                view(1),
                vec![
                    row("NAN", et(0), values.clone()),
                    row("NAN", et(1), Vec::new()),
                    row("NAN", et(2), vec![f64::NAN; 3]),
                ],
            )],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let rows = all_rows(&store, &view(1), &["NAN"]).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        bits(&rows[0].vector.as_ref().unwrap().values),
        bits(&values)
    );
    assert!(rows[1].vector.as_ref().unwrap().values.is_empty());
    assert_eq!(
        bits(&rows[2].vector.as_ref().unwrap().values),
        bits(&[f64::NAN; 3])
    );
    let pit = store
        .point_in_time(PointInTimeQuery {
            view: &view(1),
            interval: IV,
            rows: &[("NAN".to_owned(), et(0))],
            label_horizon: None,
        })
        .await
        .unwrap();
    assert_eq!(bits(&pit[0].vector.as_ref().unwrap().values), bits(&values));
}

pub async fn large_batches_are_written_whole(store: Arc<dyn OfflineStore>) {
    let symbols: Vec<String> = (0..20).map(|s| format!("S{s:02}")).collect();
    let mut bars = Vec::new();
    let mut rows = Vec::new();
    for symbol in &symbols {
        for i in 0..600 {
            bars.push(bar(symbol, i, 100.0 + i as f64));
            rows.push(row(symbol, et(i), vec![i as f64; 16]));
        }
    }
    store
        .write(&WriteBatch {
            bars,
            views: vec![rows_of(view(1), rows)],
            revisions: Vec::new(),
            chunk: None,
        })
        .await
        .unwrap();
    assert_eq!(store.symbols(IV).await.unwrap(), symbols);
    assert_eq!(all_bars(&store, "S07").await.len(), 600);
    let entity: Vec<(String, Ts)> = symbols.iter().map(|s| (s.clone(), et(599))).collect();
    let answered = store
        .point_in_time(PointInTimeQuery {
            view: &view(1),
            interval: IV,
            rows: &entity,
            label_horizon: None,
        })
        .await
        .unwrap();
    assert!(
        answered
            .iter()
            .all(|r| r.vector.as_ref().unwrap().values == vec![599.0; 16])
    );
}
