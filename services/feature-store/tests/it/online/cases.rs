//! The online-store conformance suite: every case runs on the in-memory store and on Redis.
//! [`online_store_cases!`] turns the cases into tests; each test builds its own store
//! (for Redis, under its own key prefix), so they run in parallel.

#![allow(dead_code, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use stockcast_feature_store::store::{OnlineStore, OnlineVector, OnlineWrite, Ts, ViewId};

/// Long enough that no key expires during a case.
pub const LONG_TTL: Duration = Duration::from_secs(3_600);

/// Longest wait for a key with a short TTL to expire.
pub const EXPIRY_DEADLINE: Duration = Duration::from_secs(30);

/// 2024-01-02 00:00 UTC.
pub const T0: Ts = 1_704_153_600;

pub fn view() -> ViewId {
    ViewId::new("default", 1)
}

pub fn write(view: &ViewId, symbol: &str, event_time: Ts, values: &[f64]) -> OnlineWrite {
    OnlineWrite {
        view: view.clone(),
        symbol: symbol.to_owned(),
        event_time,
        values: values.to_vec(),
        ttl: LONG_TTL,
    }
}

pub fn symbols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Writes one vector with [`LONG_TTL`]; whether it applied.
pub async fn put(
    store: &dyn OnlineStore,
    view: &ViewId,
    symbol: &str,
    t: Ts,
    values: &[f64],
) -> bool {
    let applied = store
        .write(&[write(view, symbol, t, values)])
        .await
        .unwrap();
    assert_eq!(applied.len(), 1);
    applied[0]
}

/// Reads one symbol.
pub async fn read_one(
    store: &dyn OnlineStore,
    view: &ViewId,
    symbol: &str,
) -> Option<OnlineVector> {
    let mut read = store.read(view, &symbols(&[symbol])).await.unwrap();
    assert_eq!(read.len(), 1);
    read.pop().unwrap()
}

/// Polls until `symbol` reads as absent; panics after [`EXPIRY_DEADLINE`].
pub async fn wait_until_absent(store: &dyn OnlineStore, view: &ViewId, symbol: &str) {
    let deadline = Instant::now() + EXPIRY_DEADLINE;
    while read_one(store, view, symbol).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "{symbol} still present {EXPIRY_DEADLINE:?} after its TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Values come back bit for bit, NaN payloads, signed zero and infinities included.
pub async fn roundtrip_preserves_values_bit_exactly(store: Arc<dyn OnlineStore>) {
    let view = view();
    let odd_nan = f64::from_bits(0x7ff8_0000_0000_1234);
    let values = [
        1.5,
        f64::NAN,
        -0.0,
        odd_nan,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE / 4.0,
        -123_456.789,
    ];
    let applied = store
        .write(&[
            write(&view, "AAPL", T0, &values),
            write(&view, "EMPTY", T0 - 60, &[]),
            write(&view, "ZERO", T0, &[0.0; 16]),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, true]);

    let read = store
        .read(&view, &symbols(&["AAPL", "EMPTY", "ZERO"]))
        .await
        .unwrap();
    let aapl = read[0].as_ref().expect("AAPL present");
    assert_eq!(aapl.event_time, T0);
    assert_eq!(bits(&aapl.values), bits(&values));
    let empty = read[1].as_ref().expect("EMPTY present");
    assert_eq!(empty.event_time, T0 - 60);
    assert!(empty.values.is_empty());
    let zero = read[2].as_ref().expect("ZERO present");
    assert_eq!(bits(&zero.values), bits(&[0.0; 16]));
}

/// A symbol never written reads as `None`; empty calls answer empty.
pub async fn missing_symbols_read_as_none(store: Arc<dyn OnlineStore>) {
    let view = view();
    store.ping().await.unwrap();
    assert_eq!(read_one(store.as_ref(), &view, "NOPE").await, None);
    store
        .write(&[write(&view, "MSFT", T0, &[1.0])])
        .await
        .unwrap();
    let read = store
        .read(&view, &symbols(&["NOPE", "MSFT", "ALSO_NOPE"]))
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[0], None);
    assert!(read[1].is_some());
    assert_eq!(read[2], None);
    assert!(store.write(&[]).await.unwrap().is_empty());
    assert!(store.read(&view, &[]).await.unwrap().is_empty());
}

/// 500 symbols written in one batch read back in request order, with duplicates and
/// unknown symbols in between.
pub async fn many_symbols_read_in_request_order(store: Arc<dyn OnlineStore>) {
    let view = view();
    let writes: Vec<_> = (0..500)
        .map(|i| write(&view, &format!("S{i:03}"), T0 + i, &[i as f64, -(i as f64)]))
        .collect();
    let applied = store.write(&writes).await.unwrap();
    assert_eq!(applied, vec![true; 500]);

    // Reverse order, every tenth symbol twice, an unknown symbol after every 50th.
    let mut request = Vec::new();
    for i in (0..500).rev() {
        request.push(format!("S{i:03}"));
        if i % 10 == 0 {
            request.push(format!("S{i:03}"));
        }
        if i % 50 == 0 {
            request.push(format!("UNKNOWN{i}"));
        }
    }
    let read = store.read(&view, &request).await.unwrap();
    assert_eq!(read.len(), request.len());
    for (symbol, vector) in request.iter().zip(&read) {
        match symbol.strip_prefix('S') {
            Some(n) => {
                let i: i64 = n.parse().unwrap();
                let vector = vector
                    .as_ref()
                    .unwrap_or_else(|| panic!("{symbol} missing"));
                assert_eq!(vector.event_time, T0 + i, "{symbol}");
                assert_eq!(vector.values, vec![i as f64, -(i as f64)], "{symbol}");
            }
            None => assert_eq!(*vector, None, "{symbol}"),
        }
    }
}

/// An older event time never replaces a newer one (and reports `false`); an equal one
/// replaces (a recomputed vector); repeats within a batch apply in order.
pub async fn older_never_replaces_newer_and_equal_replaces(store: Arc<dyn OnlineStore>) {
    let view = view();
    let key = "NVDA";
    assert!(put(store.as_ref(), &view, key, T0 + 200, &[2.0]).await);
    assert!(!put(store.as_ref(), &view, key, T0 + 100, &[1.0]).await);
    let stored = read_one(store.as_ref(), &view, key).await.unwrap();
    assert_eq!((stored.event_time, stored.values), (T0 + 200, vec![2.0]));

    assert!(put(store.as_ref(), &view, key, T0 + 200, &[2.5, f64::NAN]).await);
    let stored = read_one(store.as_ref(), &view, key).await.unwrap();
    assert_eq!(stored.event_time, T0 + 200);
    assert_eq!(bits(&stored.values), bits(&[2.5, f64::NAN]));

    let applied = store
        .write(&[
            write(&view, key, T0 + 300, &[3.0]),
            write(&view, key, T0 + 250, &[9.0]),
            write(&view, "OTHER", T0, &[0.0]),
            write(&view, key, T0 + 300, &[3.5]),
            write(&view, key, T0 + 400, &[4.0]),
            write(&view, key, T0 + 399, &[9.0]),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, false, true, true, true, false]);
    let stored = read_one(store.as_ref(), &view, key).await.unwrap();
    assert_eq!((stored.event_time, stored.values), (T0 + 400, vec![4.0]));
}

/// Writers racing different event times for one key end with the newest.
pub async fn concurrent_writers_end_with_the_newest(store: Arc<dyn OnlineStore>) {
    let view = view();
    let writers = 8;
    let per_writer: i64 = 50;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = Arc::clone(&store);
        let view = view.clone();
        tasks.push(tokio::spawn(async move {
            let mut applied = 0;
            // Writer w writes event times w, w + writers, … in an order that differs per
            // writer, one write per call and also in small batches.
            let mut times: Vec<i64> = (0..per_writer).map(|k| k * writers + w).collect();
            let len = times.len();
            times.rotate_left((w as usize * 7) % len);
            if w % 2 == 1 {
                times.reverse();
            }
            for chunk in times.chunks(if w % 3 == 0 { 1 } else { 5 }) {
                let batch: Vec<_> = chunk
                    .iter()
                    .map(|&t| write(&view, "RACE", T0 + t, &[t as f64]))
                    .collect();
                applied += store
                    .write(&batch)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|&a| a)
                    .count();
                tokio::task::yield_now().await;
            }
            applied
        }));
    }
    let mut applied = 0;
    for task in tasks {
        applied += task.await.unwrap();
    }
    let newest = per_writer * writers - 1;
    assert!(applied >= 1, "no write applied");
    let stored = read_one(store.as_ref(), &view, "RACE").await.unwrap();
    assert_eq!(stored.event_time, T0 + newest);
    assert_eq!(stored.values, vec![newest as f64]);
    // The newest wins for good: a late older write is refused.
    assert!(!put(store.as_ref(), &view, "RACE", T0 + newest - 1, &[0.0]).await);
}

/// A key expires after the TTL of its last applied write and then reads as `None`; an
/// expired key no longer blocks an older write; a refused write leaves the expiry alone.
pub async fn keys_expire_after_their_ttl(store: Arc<dyn OnlineStore>) {
    let view = view();
    let short = Duration::from_secs(1);
    let mut kept = write(&view, "KEPT", T0 + 200, &[2.0]);
    kept.ttl = LONG_TTL;
    let mut gone = write(&view, "GONE", T0 + 200, &[2.0]);
    gone.ttl = LONG_TTL;
    assert_eq!(store.write(&[kept, gone]).await.unwrap(), vec![true, true]);

    // GONE: a newer write with a short TTL shortens it. KEPT: an older write with a short
    // TTL is refused and must not shorten it. MARK: written last, so it expires no earlier
    // than a shortened KEPT would.
    let mut refused = write(&view, "KEPT", T0 + 100, &[1.0]);
    refused.ttl = short;
    let mut newer = write(&view, "GONE", T0 + 300, &[3.0]);
    newer.ttl = short;
    let mut mark = write(&view, "MARK", T0, &[0.0]);
    mark.ttl = short;
    assert_eq!(
        store.write(&[refused, newer, mark]).await.unwrap(),
        vec![false, true, true]
    );

    wait_until_absent(store.as_ref(), &view, "MARK").await;
    wait_until_absent(store.as_ref(), &view, "GONE").await;
    let kept = read_one(store.as_ref(), &view, "KEPT").await;
    assert_eq!(kept.map(|v| v.event_time), Some(T0 + 200));

    // The expired key is gone: an older event time applies again.
    assert!(put(store.as_ref(), &view, "GONE", T0 + 100, &[1.0]).await);
    let stored = read_one(store.as_ref(), &view, "GONE").await.unwrap();
    assert_eq!((stored.event_time, stored.values), (T0 + 100, vec![1.0]));
}

/// Views and versions of a view never see each other's vectors.
pub async fn views_and_versions_are_isolated(store: Arc<dyn OnlineStore>) {
    let v1 = ViewId::new("default", 1);
    let v2 = ViewId::new("default", 2);
    let other = ViewId::new("momentum", 1);
    let applied = store
        .write(&[
            write(&v1, "AAPL", T0, &[1.0]),
            write(&v2, "AAPL", T0 - 100, &[2.0, 2.0]),
            write(&other, "AAPL", T0 + 100, &[3.0, 3.0, 3.0]),
            write(&v2, "MSFT", T0, &[4.0]),
        ])
        .await
        .unwrap();
    // Older than v1's AAPL, yet applied: v2 is another key.
    assert_eq!(applied, vec![true, true, true, true]);

    let both = symbols(&["AAPL", "MSFT"]);
    let read = store.read(&v1, &both).await.unwrap();
    assert_eq!(read[0].as_ref().unwrap().values, vec![1.0]);
    assert_eq!(read[1], None);
    let read = store.read(&v2, &both).await.unwrap();
    assert_eq!(read[0].as_ref().unwrap().values, vec![2.0, 2.0]);
    assert_eq!(read[0].as_ref().unwrap().event_time, T0 - 100);
    assert_eq!(read[1].as_ref().unwrap().values, vec![4.0]);
    let read = store.read(&other, &both).await.unwrap();
    assert_eq!(read[0].as_ref().unwrap().values, vec![3.0, 3.0, 3.0]);
    assert_eq!(read[1], None);
    let read = store.read(&ViewId::new("default", 3), &both).await.unwrap();
    assert_eq!(read, vec![None, None]);
}

/// Event times compare as numbers, before the epoch and across digit counts too.
pub async fn event_times_compare_as_numbers(store: Arc<dyn OnlineStore>) {
    let view = view();
    let key = "OLD";
    // Each time is newer than the one before; a text comparison would get most wrong.
    let times: [Ts; 9] = [-3_600, -100, -60, -9, 0, 9, 10, 100, T0];
    for pair in times.windows(2) {
        assert!(put(store.as_ref(), &view, key, pair[1], &[pair[1] as f64]).await);
        assert!(!put(store.as_ref(), &view, key, pair[0], &[0.0]).await);
    }
    let stored = read_one(store.as_ref(), &view, key).await.unwrap();
    assert_eq!((stored.event_time, stored.values), (T0, vec![T0 as f64]));

    assert!(put(store.as_ref(), &view, "NEG", -100, &[1.0]).await);
    assert!(!put(store.as_ref(), &view, "NEG", -3_600, &[2.0]).await);
    assert!(put(store.as_ref(), &view, "NEG", -60, &[3.0]).await);
    let stored = read_one(store.as_ref(), &view, "NEG").await.unwrap();
    assert_eq!((stored.event_time, stored.values), (-60, vec![3.0]));
}

/// Turns every case into a `#[tokio::test]`; `$make` is an expression (awaited) that builds
/// a fresh `Arc<dyn OnlineStore>`.
#[macro_export]
macro_rules! online_store_cases {
    ($make:expr) => {
        $crate::online_store_cases!(@cases $make;
            roundtrip_preserves_values_bit_exactly,
            missing_symbols_read_as_none,
            many_symbols_read_in_request_order,
            older_never_replaces_newer_and_equal_replaces,
            concurrent_writers_end_with_the_newest,
            keys_expire_after_their_ttl,
            views_and_versions_are_isolated,
            event_times_compare_as_numbers,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make.await;
                $crate::online::cases::$case(store).await;
            }
        )*
    };
}
