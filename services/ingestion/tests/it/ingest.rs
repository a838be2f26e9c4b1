//! The ingestor on the embedded backends with a clock the test moves: which bars are still
//! unfinished is decided by the clock the service is given, not by the machine's.

use std::sync::Arc;

use stockcast_bus::MemoryBus;
use stockcast_ingestion::ingest::{Counts, Ingestor, Item, Origin};
use stockcast_ingestion::store::SqliteStore;
use stockcast_market::{Bar, Interval, ValidationSettings, Validator};
use stockcast_proto::stockcast::types::v1::RejectReason;
use stockcast_runtime::clock::ManualClock;

/// 2024-01-02 00:00 UTC, a Tuesday.
const DAY0: i64 = 1_704_153_600;
const DAY: i64 = 86_400;

#[tokio::test]
async fn a_bar_is_unfinished_until_the_injected_clock_passes_its_close() {
    let store = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
    let validator = Validator::new(&ValidationSettings::default()).unwrap();
    // Noon of the bar's own day: the daily bar closes at midnight, twelve hours later.
    let clock = ManualClock::at_ms((DAY0 + DAY / 2) * 1_000);
    let ingestor = Ingestor::new(
        store,
        Arc::new(MemoryBus::new()),
        validator,
        "stockcast.market.bars.v1",
        Arc::new(clock.clone()),
    );
    let bar = Bar {
        symbol: "CLK".to_owned(),
        interval: Interval::D1,
        ts: DAY0,
        open: 10.0,
        high: 11.0,
        low: 9.0,
        close: 10.5,
        volume: 100.0,
    };
    let origin = Origin::push("test".to_owned());

    let early = ingestor
        .ingest(vec![(0, Item::Bar(bar.clone()))], &origin)
        .await
        .unwrap();
    assert_eq!(early.counts.rejected, 1, "{early:?}");
    assert_eq!(
        early.rejected[0].rejection.code,
        RejectReason::FutureTimestamp
    );

    clock.advance_ms(DAY / 2 * 1_000);
    let closed = ingestor
        .ingest(vec![(0, Item::Bar(bar))], &origin)
        .await
        .unwrap();
    assert_eq!(
        closed.counts,
        Counts {
            accepted: 1,
            ..Counts::default()
        }
    );
}
