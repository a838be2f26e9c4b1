//! The stream processor's behaviour, run on any backend triple (bus, online, offline) by
//! `stream_cases!(async fn making a Backends)`: features equal the batch computation,
//! restarts at every crash point leave every feature exactly once, late and corrected bars
//! are recomputed, bad events are dead-lettered, a new view version catches up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::crate_in_macro_def,
    dead_code
)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stockcast_bus::{EventBus, Record};

use stockcast_feature_store::store::{OfflineStore, OnlineStore, SpanQuery, ViewId};
use stockcast_feature_store::stream::{BatchStats, Processor, StreamSettings};
use stockcast_feature_store::view::{Catalog, View, ViewSpec};
use stockcast_market::{Bar, Interval, ValidationSettings};
use stockcast_proto::stockcast::events::v1::{IngestPath, MarketBarEvent};

/// The three backends a processor runs on.
#[derive(Clone)]
pub struct Backends {
    pub bus: Arc<dyn EventBus>,
    pub online: Arc<dyn OnlineStore>,
    pub offline: Arc<dyn OfflineStore>,
}

/// How long processing may take before a case fails.
pub const DEADLINE: Duration = Duration::from_secs(90);

pub const T0: i64 = 1_600_000_000 - 1_600_000_000 % 86_400;

/// A deterministic daily series of `n` bars of `symbol`.
pub fn series(symbol: &str, n: usize, seed: f64) -> Vec<Bar> {
    (0..n)
        .map(|i| {
            let x = i as f64;
            let close = 100.0 * seed + (x * 0.31 + seed).sin() * 4.0 + x * 0.07;
            Bar {
                symbol: symbol.to_owned(),
                interval: Interval::D1,
                ts: T0 + i as i64 * 86_400,
                open: close - 0.25,
                high: close + 0.8 + (x * 0.13).cos().abs(),
                low: close - 0.9,
                close,
                volume: 1.0e6 + (x * 0.5 + seed).sin() * 3.0e5,
            }
        })
        .collect()
}

pub fn event(bar: &Bar, revision: i32) -> Record {
    let event = MarketBarEvent {
        bar: Some(bar.to_proto("test")),
        ingested_at: None,
        ingest_path: IngestPath::Backfill as i32,
        backfill_job_id: String::new(),
        revision,
        previous: None,
    };
    Record::proto(bar.symbol.clone().into_bytes(), &event)
}

/// A topic (with its dead-letter topic) of 3 partitions, and a consumer group.
pub async fn topic(bus: &dyn EventBus, case: &str) -> (String, String) {
    // `RUST_LOG=info` shows what the processor does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (topic, group) = stockcast_bus::conformance::names(case);
    stockcast_bus::ensure_topics(
        bus,
        &[&topic, &stockcast_bus::dead_letter_topic(&topic)],
        3,
        &stockcast_runtime::Shutdown::new(),
    )
    .await
    .expect("topics");
    (topic, group)
}

/// Publishes one record per request: tansu, the test broker, stalls a consumer that resumes
/// from an offset inside a record batch produced in one request (a broker defect; Apache
/// Kafka returns the batch and the client skips to the offset), which the restart cases do.
pub async fn publish(bus: &dyn EventBus, topic: &str, bars: &[Bar]) {
    for b in bars {
        bus.publish(topic, event(b, 0)).await.expect("publish");
    }
}

/// Interleaves the series of several symbols bar by bar.
pub fn interleave(series: &[Vec<Bar>]) -> Vec<Bar> {
    let n = series.iter().map(Vec::len).max().unwrap_or(0);
    (0..n)
        .flat_map(|i| series.iter().filter_map(move |s| s.get(i).cloned()))
        .collect()
}

pub fn settings(group: &str, batch_max: usize) -> StreamSettings {
    StreamSettings {
        group: group.to_owned(),
        batch_max,
        batch_wait_ms: 20,
        replay_page: 37, // small pages exercise paging
        ..StreamSettings::default()
    }
}

pub fn catalog(specs: &[ViewSpec]) -> Arc<Catalog> {
    Arc::new(Catalog::new(specs).expect("catalog"))
}

pub fn processor(b: &Backends, catalog: &Arc<Catalog>, settings: StreamSettings) -> Processor {
    Processor::new(
        Arc::clone(catalog),
        Arc::clone(&b.online),
        Arc::clone(&b.offline),
        Arc::clone(&b.bus),
        settings,
        &ValidationSettings::default(),
        stockcast_runtime::clock::system(),
    )
    .expect("processor")
}

/// Every stored row of `symbols` for `view`, ordered by symbol then event time.
pub async fn rows(
    offline: &dyn OfflineStore,
    view: &ViewId,
    symbols: &[String],
) -> Vec<(String, i64, Vec<f64>)> {
    let mut out = Vec::new();
    let mut after: Option<(String, i64)> = None;
    loop {
        let page = offline
            .span(SpanQuery {
                view,
                interval: Interval::D1,
                symbols,
                from: 0,
                until: i64::MAX / 2,
                after: after.as_ref().map(|(s, t)| (s.as_str(), *t)),
                limit: 1000,
                label_horizon: None,
            })
            .await
            .expect("span");
        let done = page.len() < 1000;
        for r in page {
            let v = r.vector.expect("span rows have vectors");
            after = Some((r.symbol.clone(), r.as_of));
            out.push((r.symbol, v.event_time, v.values));
        }
        if done {
            return out;
        }
    }
}

/// Runs `processor` on `topic` until `done` holds for the stores (then stops it cleanly),
/// or until it stops by itself (a fail point).
pub async fn run_until<F, Fut>(
    processor: Processor,
    topic: &str,
    done: F,
) -> Result<BatchStats, String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let stop = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&stop);
    let topic = topic.to_owned();
    let task = tokio::spawn(async move {
        processor
            .run(&topic, async move { signal.notified().await })
            .await
    });
    let started = Instant::now();
    loop {
        if task.is_finished() {
            return task.await.unwrap().map_err(|e| e.to_string());
        }
        if done().await {
            stop.notify_one();
            return task.await.unwrap().map_err(|e| e.to_string());
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the processor did not finish within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that the stored rows of every series are exactly the batch computation: one row
/// per bar, bit-identical values.
pub async fn assert_exact(offline: &dyn OfflineStore, view: &View, all: &[Vec<Bar>]) {
    let symbols: Vec<String> = all.iter().map(|s| s[0].symbol.clone()).collect();
    let stored = rows(offline, &view.id, &symbols).await;
    let mut expected = Vec::new();
    let mut sorted: Vec<&Vec<Bar>> = all.iter().collect();
    sorted.sort_by(|a, b| a[0].symbol.cmp(&b[0].symbol));
    for s in sorted {
        for (bar, values) in s.iter().zip(view.compute(s)) {
            expected.push((bar.symbol.clone(), view.event_time(bar.ts), values));
        }
    }
    assert_eq!(stored.len(), expected.len(), "row count");
    for (got, want) in stored.iter().zip(&expected) {
        assert_eq!((&got.0, got.1), (&want.0, want.1), "row key");
        let same = got
            .2
            .iter()
            .zip(&want.2)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{} at {}: {:?} != {:?}", got.0, got.1, got.2, want.2);
    }
}

pub async fn count_rows(offline: &dyn OfflineStore, view: &ViewId, symbols: &[String]) -> usize {
    rows(offline, view, symbols).await.len()
}

#[macro_export]
macro_rules! stream_cases {
    ($make:expr) => {
        use std::sync::Arc;

        use crate::stream_cases::*;
        use stockcast_feature_store::store::ViewId;
        use stockcast_feature_store::stream::FailPoint;
        use stockcast_feature_store::view::{View, default_view};

        fn three() -> Vec<Vec<stockcast_market::Bar>> {
            vec![
                series("AAA", 130, 1.0),
                series("BBB", 90, 2.0),
                series("CCC", 20, 3.0),
            ]
        }

        fn names(all: &[Vec<stockcast_market::Bar>]) -> Vec<String> {
            all.iter().map(|s| s[0].symbol.clone()).collect()
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn features_equal_the_batch_computation_and_serve_online() {
            let b: Backends = $make("fs-exact").await;
            let (topic, group) = topic(&*b.bus, "fs-exact").await;
            let all = three();
            publish(&*b.bus, &topic, &interleave(&all)).await;
            let cat = catalog(&[default_view()]);
            let view = View::compile(&default_view()).unwrap();
            let total: usize = all.iter().map(Vec::len).sum();
            let syms = names(&all);
            let stats = run_until(
                processor(&b, &cat, settings(&group, 64)),
                &topic,
                || async { count_rows(&*b.offline, &view.id, &syms).await >= total },
            )
            .await
            .unwrap();
            assert_exact(&*b.offline, &view, &all).await;
            assert_eq!(stats.dead_letters, 0);
            // Online: the newest vector of each symbol.
            let online = b.online.read(&view.id, &syms).await.unwrap();
            for (s, got) in all.iter().zip(online) {
                let got = got.expect("online vector");
                let last = s.last().unwrap();
                assert_eq!(got.event_time, view.event_time(last.ts));
                let want = view.compute(s).pop().unwrap();
                assert!(
                    got.values
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
            }
        }

        async fn crash_and_resume(case: &str, fail: FailPoint) {
            let b: Backends = $make(case).await;
            let (topic, group) = topic(&*b.bus, case).await;
            let all = three();
            publish(&*b.bus, &topic, &interleave(&all)).await;
            let cat = catalog(&[default_view()]);
            let view = View::compile(&default_view()).unwrap();
            let total: usize = all.iter().map(Vec::len).sum();
            let syms = names(&all);
            let first = run_until(
                processor(&b, &cat, settings(&group, 40)).fail_at(fail),
                &topic,
                || async { false },
            )
            .await;
            let err = first.expect_err("the fail point stops the processor");
            assert!(err.contains("fail point"), "{err}");
            let before = count_rows(&*b.offline, &view.id, &syms).await;
            assert!(
                before < total,
                "the crash happened before the end ({before} of {total})"
            );
            // A new processor of the same group takes over from the committed offsets.
            let second = run_until(
                processor(&b, &cat, settings(&group, 40)),
                &topic,
                || async { count_rows(&*b.offline, &view.id, &syms).await >= total },
            )
            .await
            .unwrap();
            assert_exact(&*b.offline, &view, &all).await;
            if matches!(fail, FailPoint::AfterOfflineWrite(_)) {
                assert!(
                    second.duplicates > 0,
                    "redelivered bars are recognized: {second:?}"
                );
            }
            let online = b.online.read(&view.id, &syms).await.unwrap();
            for (s, got) in all.iter().zip(online) {
                assert_eq!(
                    got.unwrap().event_time,
                    view.event_time(s.last().unwrap().ts)
                );
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_crash_between_consume_and_write_loses_nothing() {
            crash_and_resume("fs-crash-consume", FailPoint::AfterConsume(3)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_crash_between_the_online_and_offline_writes_loses_nothing() {
            crash_and_resume("fs-crash-online", FailPoint::AfterOnlineWrite(3)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_crash_between_write_and_commit_duplicates_nothing() {
            crash_and_resume("fs-crash-commit", FailPoint::AfterOfflineWrite(3)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn late_and_corrected_bars_recompute_the_window() {
            let b: Backends = $make("fs-late").await;
            let (topic, group) = topic(&*b.bus, "fs-late").await;
            let mut s = series("LATE", 80, 1.5);
            let missing = s.remove(30);
            let cat = catalog(&[default_view()]);
            let view = View::compile(&default_view()).unwrap();
            let syms = vec!["LATE".to_owned()];
            publish(&*b.bus, &topic, &s).await;
            run_until(
                processor(&b, &cat, settings(&group, 25)),
                &topic,
                || async { count_rows(&*b.offline, &view.id, &syms).await >= 79 },
            )
            .await
            .unwrap();
            // The missing bar arrives late, and bar 50 is corrected.
            let mut corrected = s[49].clone();
            corrected.close *= 1.01;
            corrected.high = corrected.high.max(corrected.close);
            b.bus.publish(&topic, event(&missing, 0)).await.unwrap();
            b.bus.publish(&topic, event(&corrected, 1)).await.unwrap();
            let mut fixed = s.clone();
            fixed.insert(30, missing);
            fixed[50] = corrected;
            let want_last = view.compute(&fixed).pop().unwrap();
            let stats = run_until(
                processor(&b, &cat, settings(&group, 25)),
                &topic,
                || async {
                    let rows = rows(&*b.offline, &view.id, &syms).await;
                    rows.len() >= 80
                        && rows.last().is_some_and(|r| {
                            r.2.iter()
                                .zip(&want_last)
                                .all(|(a, b)| a.to_bits() == b.to_bits())
                        })
                },
            )
            .await
            .unwrap();
            assert!(stats.recomputes >= 1, "{stats:?}");
            assert_exact(&*b.offline, &view, &[fixed]).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_older_revision_arriving_after_a_newer_one_is_ignored() {
            let b: Backends = $make("fs-rev").await;
            let (topic, group) = topic(&*b.bus, "fs-rev").await;
            let s = series("REV", 50, 1.3);
            let cat = catalog(&[default_view()]);
            let view = View::compile(&default_view()).unwrap();
            let syms = vec!["REV".to_owned()];
            publish(&*b.bus, &topic, &s).await;
            let mut corrected = s[20].clone();
            corrected.close *= 1.03;
            corrected.high = corrected.high.max(corrected.close);
            // Revision 1, then the original revision 0 again (a late re-publication), in one
            // batch and across batches.
            b.bus.publish(&topic, event(&corrected, 1)).await.unwrap();
            b.bus.publish(&topic, event(&s[20], 0)).await.unwrap();
            let p = processor(&b, &cat, settings(&group, 51));
            let committed = p.progress();
            run_until(p, &topic, || async {
                committed.load(std::sync::atomic::Ordering::Relaxed) >= 52
            })
            .await
            .unwrap();
            b.bus.publish(&topic, event(&s[20], 0)).await.unwrap();
            let p = processor(&b, &cat, settings(&group, 51));
            let committed = p.progress();
            let stats = run_until(p, &topic, || async {
                committed.load(std::sync::atomic::Ordering::Relaxed) >= 1
            })
            .await
            .unwrap();
            assert_eq!(stats.duplicates, 1, "{stats:?}");
            let mut fixed = s.clone();
            fixed[20] = corrected;
            assert_exact(&*b.offline, &view, &[fixed]).await;
            let _ = &syms;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn bad_events_go_to_the_dead_letter_topic_and_good_ones_flow() {
            let b: Backends = $make("fs-dlq").await;
            let (topic, group) = topic(&*b.bus, "fs-dlq").await;
            let good = series("GOOD", 10, 1.0);
            let mut bad = good[3].clone();
            bad.symbol = "BAD".into();
            bad.high = bad.low - 1.0; // high below low
            b.bus
                .publish(
                    &topic,
                    stockcast_bus::Record::new(b"X".to_vec(), b"\xff\x00garbage".to_vec()),
                )
                .await
                .unwrap();
            b.bus.publish(&topic, event(&bad, 0)).await.unwrap();
            publish(&*b.bus, &topic, &good).await;
            let cat = catalog(&[default_view()]);
            let view = View::compile(&default_view()).unwrap();
            let syms = vec!["GOOD".to_owned()];
            let p = processor(&b, &cat, settings(&group, 100));
            // All 12 events (in any partition order) committed, and the good rows stored.
            let committed = p.progress();
            let stats = run_until(p, &topic, || async {
                committed.load(std::sync::atomic::Ordering::Relaxed) >= 12
                    && count_rows(&*b.offline, &view.id, &syms).await >= 10
            })
            .await
            .unwrap();
            assert_eq!(stats.dead_letters, 2, "{stats:?}");
            let dlq = stockcast_bus::dead_letter_topic(&topic);
            let mut consumer = b
                .bus
                .subscribe(&format!("{group}-dlq"), &[&dlq])
                .await
                .unwrap();
            let letters = stockcast_bus::conformance::recv_n(consumer.as_mut(), 2).await;
            let mut reasons: Vec<(String, String)> = letters
                .iter()
                .map(|m| {
                    let l: stockcast_proto::stockcast::events::v1::DeadLetterRecord =
                        m.decode().unwrap();
                    (l.field, l.reason)
                })
                .collect();
            reasons.sort();
            assert!(
                reasons
                    .iter()
                    .any(|(_, r)| r.contains("not a MarketBarEvent")),
                "{reasons:?}"
            );
            assert!(
                reasons.iter().any(|(f, _)| f == "high" || f == "low"),
                "{reasons:?}"
            );
            assert_exact(&*b.offline, &view, &[good]).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_view_version_served_again_folds_in_the_bars_it_missed() {
            let b: Backends = $make("fs-again").await;
            let (topic, group) = topic(&*b.bus, "fs-again").await;
            let s = series("AGAIN", 90, 1.7);
            let syms = vec!["AGAIN".to_owned()];
            let v1 = default_view();
            let mut v2 = default_view();
            v2.version = 2;
            v2.current = false;
            v2.features.truncate(6);
            let view1 = View::compile(&v1).unwrap();
            let view2 = View::compile(&v2).unwrap();
            let both = catalog(&[v1.clone(), v2.clone()]);
            // Served together, then v2 is dropped for a while, then served again.
            publish(&*b.bus, &topic, &s[..30]).await;
            run_until(
                processor(&b, &both, settings(&group, 20)),
                &topic,
                || async { count_rows(&*b.offline, &view2.id, &syms).await >= 30 },
            )
            .await
            .unwrap();
            publish(&*b.bus, &topic, &s[30..60]).await;
            run_until(
                processor(
                    &b,
                    &catalog(std::slice::from_ref(&v1)),
                    settings(&group, 20),
                ),
                &topic,
                || async { count_rows(&*b.offline, &view1.id, &syms).await >= 60 },
            )
            .await
            .unwrap();
            publish(&*b.bus, &topic, &s[60..]).await;
            run_until(
                processor(&b, &both, settings(&group, 20)),
                &topic,
                || async { count_rows(&*b.offline, &view2.id, &syms).await >= 60 },
            )
            .await
            .unwrap();
            // v2 has no rows for the bars it missed, and its later rows are computed over
            // every bar, as if it had never stopped.
            let got = rows(&*b.offline, &view2.id, &syms).await;
            let want = view2.compute(&s);
            let keys: Vec<i64> = got.iter().map(|r| r.1).collect();
            let expected: Vec<i64> = s[..30]
                .iter()
                .chain(&s[60..])
                .map(|b| view2.event_time(b.ts))
                .collect();
            assert_eq!(keys, expected);
            for (row, values) in got[30..].iter().zip(&want[60..]) {
                assert!(
                    row.2
                        .iter()
                        .zip(values)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{} {:?} {:?}",
                    row.1,
                    row.2,
                    values
                );
            }
            assert_exact(&*b.offline, &view1, std::slice::from_ref(&s)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_new_view_version_catches_up_from_stored_bars() {
            let b: Backends = $make("fs-v2").await;
            let (topic, group) = topic(&*b.bus, "fs-v2").await;
            let s = series("VER", 100, 1.2);
            let syms = vec!["VER".to_owned()];
            publish(&*b.bus, &topic, &s[..70]).await;
            let v1 = default_view();
            let view1 = View::compile(&v1).unwrap();
            run_until(
                processor(
                    &b,
                    &catalog(std::slice::from_ref(&v1)),
                    settings(&group, 30),
                ),
                &topic,
                || async { count_rows(&*b.offline, &view1.id, &syms).await >= 70 },
            )
            .await
            .unwrap();
            let mut v2 = default_view();
            v2.version = 2;
            v2.current = false;
            v2.features.truncate(4);
            let view2 = View::compile(&v2).unwrap();
            publish(&*b.bus, &topic, &s[70..]).await;
            run_until(
                processor(&b, &catalog(&[v1, v2]), settings(&group, 30)),
                &topic,
                || async {
                    count_rows(&*b.offline, &view1.id, &syms).await >= 100
                        && count_rows(&*b.offline, &view2.id, &syms).await >= 30
                },
            )
            .await
            .unwrap();
            assert_exact(&*b.offline, &view1, std::slice::from_ref(&s)).await;
            // v2 has rows from the bars after it appeared, computed over the whole history.
            let got = rows(&*b.offline, &view2.id, &syms).await;
            let want = view2.compute(&s);
            assert_eq!(got.len(), 30);
            for (row, values) in got.iter().zip(&want[70..]) {
                assert!(
                    row.2
                        .iter()
                        .zip(values)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
            }
            let _ = ViewId::new("default", 2);
            let _ = Arc::clone(&b.bus);
        }
    };
}
