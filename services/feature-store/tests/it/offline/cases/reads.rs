//! Reads: readiness, view registration, bars by time and by key, revisions, symbols, state snapshots.

use super::*;

pub async fn ping_answers(store: Arc<dyn OfflineStore>) {
    store.ping().await.unwrap();
}

pub async fn register_view_returns_the_previous_definition(store: Arc<dyn OfflineStore>) {
    let before = chrono::Utc::now().timestamp() - 5;
    let first = store.register_view(&view(1), "{\"a\":1}").await.unwrap();
    assert!(first.new);
    assert_eq!(first.definition, "{\"a\":1}");
    assert!(first.registered_at >= before, "{first:?}");
    let again = store.register_view(&view(1), "{\"a\":1}").await.unwrap();
    assert!(!again.new);
    assert_eq!(
        again,
        RegisteredView {
            new: false,
            ..first.clone()
        }
    );
    // A changed definition is not recorded: the first one stays.
    let changed = store.register_view(&view(1), "{\"a\":2}").await.unwrap();
    assert_eq!(
        (changed.new, changed.definition.as_str()),
        (false, "{\"a\":1}")
    );
    assert!(
        store
            .register_view(&view(2), "{\"a\":2}")
            .await
            .unwrap()
            .new
    );
    assert!(
        store
            .register_view(&ViewId::new("other", 1), "{}")
            .await
            .unwrap()
            .new
    );
}

pub async fn bars_page_by_time(store: Arc<dyn OfflineStore>) {
    let mut bars: Vec<Bar> = (0..25).map(|i| bar("PAGE", i, 50.0 + i as f64)).collect();
    let mut daily = bar("PAGE", 3, 1.0);
    daily.interval = Interval::D1;
    bars.push(daily);
    bars.push(bar("PAGEX", 3, 1.0));
    // Written out of order.
    bars.reverse();
    store
        .write(&WriteBatch {
            bars,
            ..WriteBatch::default()
        })
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut from = ts(0);
    loop {
        let page = store.bars("PAGE", IV, from, ts(25), 10).await.unwrap();
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        from = last.ts + 1;
        seen.extend(page);
    }
    let expected: Vec<Bar> = (0..25).map(|i| bar("PAGE", i, 50.0 + i as f64)).collect();
    assert_eq!(seen, expected);

    // `from` inclusive, `until` exclusive.
    let window = store.bars("PAGE", IV, ts(3), ts(6), 100).await.unwrap();
    assert_eq!(
        window.iter().map(|b| b.ts).collect::<Vec<_>>(),
        vec![ts(3), ts(4), ts(5)]
    );
    let daily = store
        .bars("PAGE", Interval::D1, 0, ts(100), 100)
        .await
        .unwrap();
    assert_eq!(daily.len(), 1);
    assert_eq!(daily[0].interval, Interval::D1);
    assert!(
        store
            .bars("NONE", IV, 0, ts(100), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn bars_at_returns_the_stored_keys(store: Arc<dyn OfflineStore>) {
    store
        .write(&WriteBatch {
            bars: vec![bar("A", 0, 1.0), bar("A", 1, 2.0), bar("B", 0, 3.0)],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let keys = vec![
        ("A".to_owned(), ts(1)),
        ("B".to_owned(), ts(0)),
        ("B".to_owned(), ts(1)),
        ("C".to_owned(), ts(0)),
        ("A".to_owned(), ts(1)),
        ("A".to_owned(), ts(1) + 1),
    ];
    let mut found = store.bars_at(IV, &keys).await.unwrap();
    found.sort_by(|a, b| (&a.0.symbol, a.0.ts).cmp(&(&b.0.symbol, b.0.ts)));
    assert_eq!(found, vec![(bar("A", 1, 2.0), 0), (bar("B", 0, 3.0), 0)]);
    assert!(store.bars_at(Interval::D1, &keys).await.unwrap().is_empty());
    assert!(store.bars_at(IV, &[]).await.unwrap().is_empty());
}

/// A bar is replaced by a higher or equal revision, never by a lower one.
pub async fn bars_never_go_back_a_revision(store: Arc<dyn OfflineStore>) {
    let write = |close: f64, revision: i32| WriteBatch {
        bars: vec![bar("REV", 0, close)],
        revisions: vec![revision],
        ..WriteBatch::default()
    };
    let read = || async {
        store
            .bars_at(IV, &[("REV".to_owned(), ts(0))])
            .await
            .unwrap()
    };
    store.write(&write(1.0, 0)).await.unwrap();
    store.write(&write(2.0, 2)).await.unwrap();
    assert_eq!(read().await, vec![(bar("REV", 0, 2.0), 2)]);
    store.write(&write(1.0, 0)).await.unwrap(); // an older revision arrives late
    assert_eq!(read().await, vec![(bar("REV", 0, 2.0), 2)]);
    store.write(&write(3.0, 2)).await.unwrap(); // equal: replaced
    assert_eq!(read().await, vec![(bar("REV", 0, 3.0), 2)]);
    store.write(&write(4.0, 3)).await.unwrap();
    assert_eq!(read().await, vec![(bar("REV", 0, 4.0), 3)]);
}

pub async fn symbols_are_listed_per_interval(store: Arc<dyn OfflineStore>) {
    assert!(store.symbols(IV).await.unwrap().is_empty());
    let mut daily = bar("NVDA", 0, 1.0);
    daily.interval = Interval::D1;
    store
        .write(&WriteBatch {
            bars: vec![
                bar("MSFT", 0, 1.0),
                bar("AAPL", 0, 1.0),
                bar("AAPL", 1, 1.0),
                bar("BRK.B", 0, 1.0),
                daily,
            ],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.symbols(IV).await.unwrap(),
        vec!["AAPL", "BRK.B", "MSFT"]
    );
    assert_eq!(store.symbols(Interval::D1).await.unwrap(), vec!["NVDA"]);
    assert!(store.symbols(Interval::M5).await.unwrap().is_empty());
}

pub async fn states_upsert_and_read(store: Arc<dyn OfflineStore>) {
    store
        .write(&WriteBatch {
            views: vec![
                ViewWrite {
                    view: view(1),
                    rows: Vec::new(),
                    states: vec![state("A", ts(1), 2, b"a1"), state("B", ts(5), 6, &[0, 255])],
                    keep_existing: false,
                },
                ViewWrite {
                    view: view(2),
                    rows: Vec::new(),
                    states: vec![state("A", ts(9), 10, b"a2")],
                    keep_existing: false,
                },
            ],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let symbols = ["A", "B", "C"].map(str::to_owned);
    let mut read = store.states(&view(1), &symbols).await.unwrap();
    read.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    assert_eq!(
        read,
        vec![state("A", ts(1), 2, b"a1"), state("B", ts(5), 6, &[0, 255])]
    );
    assert_eq!(
        store.states(&view(2), &symbols).await.unwrap(),
        vec![state("A", ts(9), 10, b"a2")]
    );
    store
        .write(&WriteBatch {
            views: vec![ViewWrite {
                view: view(1),
                rows: Vec::new(),
                states: vec![state("A", ts(2), 3, b"a1-next")],
                keep_existing: false,
            }],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.states(&view(1), &["A".to_owned()]).await.unwrap(),
        vec![state("A", ts(2), 3, b"a1-next")]
    );
    // A snapshot never moves backwards: an older position (a consumer finishing late after
    // losing its partition) leaves the newer one; an equal position replaces (a recompute),
    // and more bars at the same last bar (a late bar folded in) replace too.
    for (older, count) in [(ts(1), 9), (ts(2), 2)] {
        store
            .write(&WriteBatch {
                views: vec![ViewWrite {
                    view: view(1),
                    rows: Vec::new(),
                    states: vec![state("A", older, count, b"stale")],
                    keep_existing: false,
                }],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
        assert_eq!(
            store.states(&view(1), &["A".to_owned()]).await.unwrap(),
            vec![state("A", ts(2), 3, b"a1-next")]
        );
    }
    for (same, count, bytes) in [(ts(2), 3, &b"recomputed"[..]), (ts(2), 4, &b"late"[..])] {
        store
            .write(&WriteBatch {
                views: vec![ViewWrite {
                    view: view(1),
                    rows: Vec::new(),
                    states: vec![state("A", same, count, bytes)],
                    keep_existing: false,
                }],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
        assert_eq!(
            store.states(&view(1), &["A".to_owned()]).await.unwrap(),
            vec![state("A", same, count, bytes)]
        );
    }
    assert!(store.states(&view(3), &symbols).await.unwrap().is_empty());
    assert!(store.states(&view(1), &[]).await.unwrap().is_empty());
}
