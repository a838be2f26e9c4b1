//! The stream processor on any backend triple (bus, online, offline): bars as bus events,
//! a processor over a catalog, running it until a condition holds, and the exactness check
//! against a batch computation. The cases themselves are in `stream/cases.rs`.

#![allow(dead_code)]

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
