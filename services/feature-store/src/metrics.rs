//! Metric names of the feature store. Labels have low cardinality: a view version at most,
//! never a symbol.

use std::time::Duration;

use crate::stream::BatchStats;
use crate::view::ViewId;

/// Market-bar events read by the stream processor.
pub const EVENTS: &str = "stockcast_features_events_total";
/// Bars stored by the stream processor.
pub const BARS: &str = "stockcast_features_bars_total";
/// Redelivered bars skipped as already processed.
pub const DUPLICATES: &str = "stockcast_features_duplicates_total";
/// Events sent to the dead-letter topic.
pub const DEAD_LETTERS: &str = "stockcast_features_dead_letters_total";
/// Feature rows written by the stream processor.
pub const ROWS: &str = "stockcast_features_rows_total";
/// Seconds to process one batch (both stores, without the commit).
pub const BATCH_SECONDS: &str = "stockcast_features_batch_seconds";
/// Symbols recomputed because of late or corrected bars, by `view`.
pub const RECOMPUTES: &str = "stockcast_features_recomputes_total";
/// Failed reads from the event bus (retried).
pub const CONSUME_ERRORS: &str = "stockcast_features_consume_errors_total";
/// Batches retried after a store failure.
pub const BATCH_RETRIES: &str = "stockcast_features_batch_retries_total";
/// Feature rows written by materialization jobs.
pub const MATERIALIZED_ROWS: &str = "stockcast_features_materialized_rows_total";

pub(crate) fn batch_done(stats: &BatchStats, took: Duration) {
    metrics::counter!(EVENTS).increment(stats.events);
    metrics::counter!(BARS).increment(stats.bars);
    metrics::counter!(DUPLICATES).increment(stats.duplicates);
    metrics::counter!(DEAD_LETTERS).increment(stats.dead_letters);
    metrics::counter!(ROWS).increment(stats.rows);
    metrics::histogram!(BATCH_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn recomputed(view: &ViewId) {
    metrics::counter!(RECOMPUTES, "view" => view.to_string()).increment(1);
}

pub(crate) fn consume_failed() {
    metrics::counter!(CONSUME_ERRORS).increment(1);
}

pub(crate) fn batch_retried() {
    metrics::counter!(BATCH_RETRIES).increment(1);
}

pub(crate) fn materialized(rows: u64) {
    metrics::counter!(MATERIALIZED_ROWS).increment(rows);
}
