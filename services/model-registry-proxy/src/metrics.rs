//! Metric names of the model registry proxy.

/// Resolutions answered, by `source` (`registry`, `ttl_cache`, `stale_cache`).
pub const RESOLUTIONS: &str = "stockcast_registry_resolutions_total";
/// Artifact bytes streamed to callers.
pub const FETCHED_BYTES: &str = "stockcast_registry_fetched_bytes_total";
/// Artifacts refused because they did not match their `sha256` tag.
pub const CHECKSUM_MISMATCHES: &str = "stockcast_registry_checksum_mismatches_total";
/// Bytes held by the artifact cache.
pub const CACHE_BYTES: &str = "stockcast_registry_cache_bytes";
/// Artifacts evicted from the cache.
pub const CACHE_EVICTIONS: &str = "stockcast_registry_cache_evictions_total";
/// Alias changes recorded, by `origin` (`api`, `poll`).
pub const ALIAS_CHANGES: &str = "stockcast_registry_alias_changes_total";
/// Retries of MLflow calls.
pub const MLFLOW_RETRIES: &str = "stockcast_registry_mlflow_retries_total";
/// Times the MLflow circuit breaker opened.
pub const BREAKER_OPENED: &str = "stockcast_registry_mlflow_breaker_opened_total";
/// Polls of the registry that failed.
pub const POLL_FAILURES: &str = "stockcast_registry_poll_failures_total";

pub(crate) fn resolved(source: &'static str) {
    metrics::counter!(RESOLUTIONS, "source" => source).increment(1);
}

pub(crate) fn fetched(bytes: u64) {
    metrics::counter!(FETCHED_BYTES).increment(bytes);
}

pub(crate) fn checksum_mismatch() {
    metrics::counter!(CHECKSUM_MISMATCHES).increment(1);
}

pub(crate) fn cache_bytes(bytes: u64) {
    metrics::gauge!(CACHE_BYTES).set(bytes as f64);
}

pub(crate) fn cache_evicted() {
    metrics::counter!(CACHE_EVICTIONS).increment(1);
}

pub(crate) fn alias_changed(origin: &'static str) {
    metrics::counter!(ALIAS_CHANGES, "origin" => origin).increment(1);
}

pub(crate) fn mlflow_retry() {
    metrics::counter!(MLFLOW_RETRIES).increment(1);
}

pub(crate) fn breaker_opened() {
    metrics::counter!(BREAKER_OPENED).increment(1);
}

pub(crate) fn poll_failed() {
    metrics::counter!(POLL_FAILURES).increment(1);
}
