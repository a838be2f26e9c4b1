//! The Prometheus recorder's upkeep runs without a scraper: a service that records a million
//! call latencies and is never scraped keeps its memory flat. (Each histogram sample is held
//! until upkeep or a scrape folds it into the buckets: ~8 bytes a call, forever, before.)
//! It runs in a process of its own, so that nothing else allocates there while it measures.

use std::time::Duration;

/// Resident set size of this process, bytes (Linux `/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm resident pages");
    pages * 4_096
}

fn record_calls(n: usize) {
    for _ in 0..n {
        metrics::histogram!(
            stockcast_runtime::metrics::GRPC_DURATION,
            "service" => "upkeep",
            "method" => "/t.T/Call",
            "code" => "OK"
        )
        .record(0.000_123);
    }
}

#[test]
fn memory_stays_flat_over_millions_of_calls_without_a_scraper() {
    if !stockcast_testkit::process::in_own_process(
        "metrics_upkeep::memory_stays_flat_over_millions_of_calls_without_a_scraper",
    ) {
        return;
    }
    let upkeep = Duration::from_millis(20);
    let _ = stockcast_runtime::metrics::install(upkeep);
    // Warm up: the registry, the label set and the allocator's arenas.
    record_calls(200_000);
    std::thread::sleep(upkeep * 5);
    let before = rss();
    // Four rounds of half two million calls: ~30 MiB of samples if nothing folds them.
    for _ in 0..4 {
        record_calls(500_000);
        std::thread::sleep(upkeep * 5);
    }
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 8 << 20,
        "resident memory grew by {} MiB over 2 M calls without a scrape",
        grown >> 20
    );
    // The samples were counted, not dropped (the exporter may lose a handful that race
    // with a drain).
    let text = stockcast_runtime::metrics::handle().render();
    let count = text
        .lines()
        .find(|l| l.contains("_count") && l.contains("service=\"upkeep\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("histogram count in the rendering:\n{text}"));
    assert!((2_000_000.0..=2_200_000.0).contains(&count), "{count}");
}
