//! The offline store conformance suite: every case runs on SQLite and on PostgreSQL.
//! `offline_store_cases!(async make_store)` turns the cases into tests, where `make_store()`
//! is an async fn returning a fresh, empty `Arc<dyn OfflineStore>`. The fixtures are here,
//! the cases by theme: writes, reads, point-in-time history, jobs.

#![allow(dead_code, clippy::crate_in_macro_def)]

mod history;
mod jobs;
mod reads;
mod writes;

pub use self::history::*;
pub use self::jobs::*;
pub use self::reads::*;
pub use self::writes::*;

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

pub(super) async fn all_bars(store: &Arc<dyn OfflineStore>, symbol: &str) -> Vec<Bar> {
    store
        .bars(symbol, IV, i64::MIN / 4, i64::MAX / 4, 1_000_000)
        .await
        .unwrap()
}

/// Every row of `symbols` in `view` (no label), read through `span`.
pub(super) async fn all_rows(
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

pub(super) fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
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
                $crate::offline::cases::$case(store).await;
            }
        )*
    };
}
