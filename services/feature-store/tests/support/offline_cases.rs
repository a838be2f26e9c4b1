//! The offline store conformance suite: every case runs on SQLite and on PostgreSQL.
//!
//! Include with `#[path = "support/offline_cases.rs"] mod offline_cases;` and invoke
//! `offline_store_cases!(async make_store)`, where `make_store()` is an async fn returning a
//! fresh, empty `Arc<dyn OfflineStore>`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use stockcast_feature_store::store::{
    ChunkDone, FeatureRow, HistoricalRow, JobRecord, JobState, OfflineStore, OnlineVector,
    PointInTimeQuery, RegisteredView, SpanQuery, StateSnapshot, StoreError, Ts, ViewId, ViewWrite,
    WriteBatch,
};
use stockcast_market::{Bar, Interval};
use uuid::Uuid;

/// 2024-01-02 00:00 UTC.
pub const T0: Ts = 1_704_153_600;
/// The interval of the bars here.
pub const IV: Interval = Interval::M1;
/// Its length.
pub const SEC: Ts = 60;

pub fn view(version: i32) -> ViewId {
    ViewId::new("default", version)
}

/// Open time of bar `i`.
pub fn ts(i: i64) -> Ts {
    T0 + i * SEC
}

/// Close time of bar `i`: the event time of a vector that includes it.
pub fn et(i: i64) -> Ts {
    ts(i + 1)
}

pub fn bar(symbol: &str, i: i64, close: f64) -> Bar {
    Bar {
        symbol: symbol.to_owned(),
        interval: IV,
        ts: ts(i),
        open: close - 0.5,
        high: close + 1.0,
        low: close - 1.0,
        close,
        volume: 1_000.0 + i as f64,
    }
}

pub fn row(symbol: &str, event_time: Ts, values: Vec<f64>) -> FeatureRow {
    FeatureRow {
        symbol: symbol.to_owned(),
        event_time,
        values,
    }
}

pub fn state(symbol: &str, last_bar_ts: Ts, bars_seen: i64, bytes: &[u8]) -> StateSnapshot {
    StateSnapshot {
        symbol: symbol.to_owned(),
        last_bar_ts,
        bars_seen,
        state: bytes.to_vec(),
    }
}

pub fn rows_of(view: ViewId, rows: Vec<FeatureRow>) -> ViewWrite {
    ViewWrite {
        view,
        rows,
        states: Vec::new(),
        keep_existing: false,
    }
}

pub fn job(request_id: Option<&str>, created_at: Ts) -> JobRecord {
    JobRecord {
        id: Uuid::now_v7(),
        request_id: request_id.map(str::to_owned),
        view: view(2),
        symbols: vec!["AAPL".to_owned(), "MSFT".to_owned()],
        from: T0,
        until: T0 + 86_400,
        chunk_seconds: 3_600,
        state: JobState::Pending,
        chunks_done: 0,
        chunks_total: 48,
        bars_read: 0,
        vectors_written: 0,
        created_at,
        started_at: None,
        finished_at: None,
        updated_at: created_at,
        error: None,
    }
}

async fn all_bars(store: &Arc<dyn OfflineStore>, symbol: &str) -> Vec<Bar> {
    store
        .bars(symbol, IV, i64::MIN / 4, i64::MAX / 4, 1_000_000)
        .await
        .unwrap()
}

/// Every row of `symbols` in `view` (no label), read through `span`.
async fn all_rows(
    store: &Arc<dyn OfflineStore>,
    view: &ViewId,
    symbols: &[&str],
) -> Vec<HistoricalRow> {
    let symbols: Vec<String> = symbols.iter().map(|s| (*s).to_owned()).collect();
    store
        .span(SpanQuery {
            view,
            interval: IV,
            symbols: &symbols,
            from: 0,
            until: T0 * 2,
            after: None,
            limit: 1_000_000,
            label_horizon: None,
        })
        .await
        .unwrap()
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

// ---------------------------------------------------------------------------------------
// cases

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

/// Close of bar `i` of the leakage series: ln(C[j+h]/C[j]) = ((j+h)² − j²)/10, so the
/// label names which bars it used; any off-by-one shows.
fn leak_close(i: i64) -> f64 {
    ((i * i) as f64 / 10.0).exp()
}

fn leak_label(j: i64, h: i64) -> f64 {
    (((j + h) * (j + h) - j * j) as f64) / 10.0
}

/// Bars 0..=9 of `LEAK`; rows of view 1 at the close of bars 1, 3 and 5 whose values encode
/// their event time; decoys in view 2 and another symbol at the close of bars 2 and 4.
async fn write_leakage_series(store: &Arc<dyn OfflineStore>) {
    let encoded = |i: i64| row("LEAK", et(i), vec![et(i) as f64, i as f64, f64::NAN]);
    store
        .write(&WriteBatch {
            bars: (0..10)
                .map(|i| bar("LEAK", i, leak_close(i)))
                .chain((0..10).map(|i| bar("DECOY", i, 1.0 + i as f64)))
                .collect(),
            views: vec![
                rows_of(view(1), vec![encoded(1), encoded(3), encoded(5)]),
                rows_of(
                    view(2),
                    vec![
                        row("LEAK", et(2), vec![-1.0]),
                        row("LEAK", et(4), vec![-1.0]),
                    ],
                ),
                rows_of(
                    view(1),
                    vec![
                        row("DECOY", et(2), vec![-2.0]),
                        row("DECOY", et(4), vec![-2.0]),
                    ],
                ),
            ],
            revisions: Vec::new(),
            chunk: None,
        })
        .await
        .unwrap();
}

fn assert_label(row: &HistoricalRow, expected: Option<f64>) {
    match (row.label, expected) {
        (Some(got), Some(want)) => assert!(
            (got - want).abs() < 1e-9,
            "label at {} is {got}, expected {want}",
            row.as_of
        ),
        (got, want) => assert_eq!(got, want, "label at {}", row.as_of),
    }
}

fn assert_vector_of(row: &HistoricalRow, bar: Option<i64>) {
    match bar {
        None => assert_eq!(row.vector, None, "vector at {}", row.as_of),
        Some(i) => {
            let vector = row.vector.as_ref().unwrap_or_else(|| {
                panic!("no vector at {}, expected the one of bar {i}", row.as_of)
            });
            assert_eq!(vector.event_time, et(i), "vector at {}", row.as_of);
            assert_eq!(vector.values[0], et(i) as f64);
            assert_eq!(vector.values[1], i as f64);
            assert!(vector.values[2].is_nan());
        }
    }
}

pub async fn point_in_time_never_leaks(store: Arc<dyn OfflineStore>) {
    write_leakage_series(&store).await;
    // (as-of, bar of the expected vector, bar of C[0] for the label).
    let cases: Vec<(Ts, Option<i64>, Option<i64>)> = vec![
        (et(3), Some(3), Some(3)),     // exactly at an event time and a bar close
        (et(3) - 1, Some(1), Some(2)), // one second before both
        (et(3) + 1, Some(3), Some(3)), // one second after
        (et(4), Some(3), Some(4)),     // between rows (bar 4 closed, no row at it)
        (et(1) - 1, None, Some(0)),    // before the first row
        (ts(0), None, None),           // at the first bar's open: nothing closed yet
        (et(0) - 1, None, None),       // one second before the first bar closes
        (et(0), None, Some(0)),        // exactly at the first bar's close
        (et(7), Some(5), Some(7)),     // C[2] = bar 9, the last stored bar
        (et(8), Some(5), Some(8)),     // C[2] would be bar 10: not stored
        (et(9) + 10_000, Some(5), Some(9)),
    ];
    let rows: Vec<(String, Ts)> = cases.iter().map(|c| ("LEAK".to_owned(), c.0)).collect();
    let answered = store
        .point_in_time(PointInTimeQuery {
            view: &view(1),
            interval: IV,
            rows: &rows,
            label_horizon: Some(2),
        })
        .await
        .unwrap();
    assert_eq!(answered.len(), cases.len());
    for (row, (as_of, vector_bar, c0_bar)) in answered.iter().zip(&cases) {
        assert_eq!(row.symbol, "LEAK");
        assert_eq!(row.as_of, *as_of);
        assert_vector_of(row, *vector_bar);
        let expected = c0_bar.filter(|j| j + 2 <= 9).map(|j| leak_label(j, 2));
        assert_label(row, expected);
    }

    // Horizon 1 and 9 from bar 0; no label unless asked.
    let first = vec![("LEAK".to_owned(), et(0))];
    for (horizon, expected) in [
        (1, Some(leak_label(0, 1))),
        (9, Some(leak_label(0, 9))),
        (10, None),
    ] {
        let answered = store
            .point_in_time(PointInTimeQuery {
                view: &view(1),
                interval: IV,
                rows: &first,
                label_horizon: Some(horizon),
            })
            .await
            .unwrap();
        assert_label(&answered[0], expected);
    }
    let unlabelled = store
        .point_in_time(PointInTimeQuery {
            view: &view(1),
            interval: IV,
            rows: &first,
            label_horizon: None,
        })
        .await
        .unwrap();
    assert_eq!(unlabelled[0].label, None);
}

pub async fn point_in_time_keeps_input_order_and_isolation(store: Arc<dyn OfflineStore>) {
    write_leakage_series(&store).await;
    let rows = vec![
        ("LEAK".to_owned(), et(5)),
        ("NOPE".to_owned(), et(5)),
        ("LEAK".to_owned(), et(2)),
        ("DECOY".to_owned(), et(3)),
        ("LEAK".to_owned(), et(5)),
        ("LEAK".to_owned(), et(0)),
    ];
    let answered = store
        .point_in_time(PointInTimeQuery {
            view: &view(1),
            interval: IV,
            rows: &rows,
            label_horizon: Some(1),
        })
        .await
        .unwrap();
    let got: Vec<(String, Ts)> = answered
        .iter()
        .map(|r| (r.symbol.clone(), r.as_of))
        .collect();
    assert_eq!(got, rows);
    assert_vector_of(&answered[0], Some(5));
    assert_eq!(answered[1].vector, None);
    assert_eq!(answered[1].label, None);
    // View 2's row at bar 2 does not leak into view 1.
    assert_vector_of(&answered[2], Some(1));
    assert_eq!(
        answered[3].vector,
        Some(OnlineVector {
            event_time: et(2),
            values: vec![-2.0]
        })
    );
    assert_label(&answered[3], Some((5.0f64 / 4.0).ln()));
    // Vectors hold NaN, which is never equal to itself: compare the rendering.
    assert_eq!(format!("{:?}", answered[4]), format!("{:?}", answered[0]));
    assert_vector_of(&answered[5], None);
    // Bars of another interval give no label.
    let daily = store
        .point_in_time(PointInTimeQuery {
            view: &view(1),
            interval: Interval::D1,
            rows: &rows[..1],
            label_horizon: Some(1),
        })
        .await
        .unwrap();
    assert_vector_of(&daily[0], Some(5));
    assert_eq!(daily[0].label, None);
    let version2 = store
        .point_in_time(PointInTimeQuery {
            view: &view(2),
            interval: IV,
            rows: &rows[..1],
            label_horizon: None,
        })
        .await
        .unwrap();
    assert_eq!(version2[0].vector.as_ref().unwrap().event_time, et(4));
    assert!(
        store
            .point_in_time(PointInTimeQuery {
                view: &view(1),
                interval: IV,
                rows: &[],
                label_horizon: Some(1),
            })
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn span_pages_across_symbols_with_a_cursor(store: Arc<dyn OfflineStore>) {
    // Three symbols with rows at bars 0..6; bars for labels on B only.
    let mut views = Vec::new();
    for symbol in ["C", "A", "B"] {
        views.push(rows_of(
            view(1),
            (0..6).map(|i| row(symbol, et(i), vec![i as f64])).collect(),
        ));
    }
    views.push(rows_of(view(2), vec![row("A", et(1), vec![99.0])]));
    store
        .write(&WriteBatch {
            bars: (0..8).map(|i| bar("B", i, leak_close(i))).collect(),
            views,
            revisions: Vec::new(),
            chunk: None,
        })
        .await
        .unwrap();
    // Unsorted, repeated, and one without rows; range = bars 1..=4.
    let symbols = ["C", "B", "ZZZ", "A", "B"].map(str::to_owned);
    let (from, until) = (et(1), et(5));
    let mut pages = Vec::new();
    let mut after: Option<(String, Ts)> = None;
    loop {
        let page = store
            .span(SpanQuery {
                view: &view(1),
                interval: IV,
                symbols: &symbols,
                from,
                until,
                after: after.as_ref().map(|(s, t)| (s.as_str(), *t)),
                limit: 3,
                label_horizon: Some(2),
            })
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some((last.symbol.clone(), last.as_of));
        pages.push(page);
        assert!(pages.len() < 10, "paging does not end");
    }
    let rows: Vec<&HistoricalRow> = pages.iter().flatten().collect();
    let keys: Vec<(&str, Ts)> = rows.iter().map(|r| (r.symbol.as_str(), r.as_of)).collect();
    let mut expected = Vec::new();
    for symbol in ["A", "B", "C"] {
        for i in 1..5 {
            expected.push((symbol, et(i)));
        }
    }
    assert_eq!(keys, expected);
    assert_eq!(pages.len(), 4);
    for row in &rows {
        let vector = row.vector.as_ref().unwrap();
        assert_eq!(vector.event_time, row.as_of);
        let i = (row.as_of - et(0)) / SEC;
        assert_eq!(vector.values, vec![i as f64]);
        // The row's label starts at the bar it closes: C[0] = bar i, C[2] = bar i + 2.
        if row.symbol == "B" {
            assert_label(row, Some(leak_label(i, 2)));
        } else {
            assert_label(row, None);
        }
    }
    // A cursor in the middle of a symbol, and one past every symbol.
    let tail = store
        .span(SpanQuery {
            view: &view(1),
            interval: IV,
            symbols: &symbols,
            from,
            until,
            after: Some(("B", et(2))),
            limit: 3,
            label_horizon: None,
        })
        .await
        .unwrap();
    let keys: Vec<(&str, Ts)> = tail.iter().map(|r| (r.symbol.as_str(), r.as_of)).collect();
    assert_eq!(keys, vec![("B", et(3)), ("B", et(4)), ("C", et(1))]);
    assert!(tail.iter().all(|r| r.label.is_none()));
    let none = store
        .span(SpanQuery {
            view: &view(1),
            interval: IV,
            symbols: &symbols,
            from,
            until,
            after: Some(("ZZZ", 0)),
            limit: 3,
            label_horizon: None,
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

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

/// A [`StoreError`] is what a backend reports; kept in scope for case authors.
pub fn is_failure(error: &StoreError) -> bool {
    matches!(error, StoreError::Failed { .. })
}

/// One `#[tokio::test]` per case; `$make` is an async fn returning a fresh, empty
/// `Arc<dyn OfflineStore>`.
#[macro_export]
macro_rules! offline_store_cases {
    (async $make:path) => {
        $crate::offline_store_cases!(@cases $make;
            ping_answers,
            register_view_returns_the_previous_definition,
            write_is_all_or_nothing,
            upserts_are_idempotent_and_replace_values,
            keep_existing_fills_without_replacing,
            vectors_round_trip_bit_exactly,
            bars_page_by_time,
            bars_at_returns_the_stored_keys,
            bars_never_go_back_a_revision,
            symbols_are_listed_per_interval,
            states_upsert_and_read,
            point_in_time_never_leaks,
            point_in_time_keeps_input_order_and_isolation,
            span_pages_across_symbols_with_a_cursor,
            jobs_are_created_once_and_updated,
            chunks_advance_counters_once,
            large_batches_are_written_whole,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make().await;
                offline_cases::$case(store).await;
            }
        )*
    };
}
