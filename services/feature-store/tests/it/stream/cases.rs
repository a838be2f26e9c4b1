//! The stream processor's behaviour, run on any backend triple (bus, online, offline) by
//! `stream_cases!(async fn making a Backends)`: features equal the batch computation,
//! restarts at every crash point leave every feature exactly once, late and corrected bars
//! are recomputed, bad events are dead-lettered, a new view version catches up.

#![allow(clippy::crate_in_macro_def)]

#[macro_export]
macro_rules! stream_cases {
    ($make:expr) => {
        use std::sync::Arc;

        use crate::support::stream::*;
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
