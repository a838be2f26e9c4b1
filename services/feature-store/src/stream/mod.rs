//! The stream processor: market-bar events in, feature vectors out to both stores.
//!
//! It reads `stockcast.market.bars.v1` as a consumer group, in batches. For each batch:
//!
//! 1. decode and check every event; an unreadable or invalid one goes to the dead-letter
//!    topic with the reason (and is never retried);
//! 2. per symbol, restore each view's engine state (from memory when it matches the stored
//!    snapshot, else from the snapshot, else by replaying the stored bars) and fold the new
//!    bars in;
//! 3. write the newest vector of every (view, symbol) to the online store (compare on event
//!    time inside the store, so it never moves backwards);
//! 4. write the bars, every feature row and the new state snapshots to the offline store in
//!    one transaction;
//! 5. commit the offsets.
//!
//! Step 1 is `decode.rs`, step 2 `restore.rs` (the states and the stored bars a redelivery
//! may repeat) and `fold.rs`, steps 3 and 4 `write.rs`. The loop around these steps
//! (batching, dead-letter publishing, retries, commits, shutdown) is the bus's
//! [`stockcast_bus::consume_batches`]; `handler.rs` plugs the processor into it.
//!
//! A crash anywhere before 5 redelivers the batch. Redelivered bars equal to the stored ones
//! are recognized as duplicates and skipped (the transaction of step 4 stored them together
//! with their features and state), so every effect happens exactly once.
//!
//! **Late, out-of-order and corrected bars** (open time at or before the last bar folded
//! into the state, with values different from the stored bar) are never folded in out of
//! order: the symbol's history is recomputed from its first stored bar with the new bar in
//! place, the feature rows from the late bar on are rewritten, and the state is replaced —
//! in the same transaction. The cost grows with the symbol's history; late bars are rare.

mod decode;
mod fold;
mod handler;
mod restore;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stockcast_bus::{ConsumeError, ConsumeSettings, EventBus};
use stockcast_market::{ValidationSettings, Validator};
use stockcast_runtime::Shutdown;
use stockcast_runtime::clock::SharedClock;
use stockcast_runtime::retry::Backoff;

use crate::error::Error;
use crate::store::{OfflineStore, OnlineStore};
use crate::view::{Catalog, ViewState};

use self::decode::Work;
use self::handler::Handler;

/// The `[stream]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Whether the service consumes market bars at all (off for a read-only replica).
    pub enabled: bool,
    /// Consumer group.
    pub group: String,
    /// Most events per batch (one transaction, one commit).
    pub batch_max: usize,
    /// Longest wait for a batch to fill once its first event arrived, milliseconds.
    pub batch_wait_ms: u64,
    /// Bars per page when replaying stored history.
    pub replay_page: usize,
    /// First delay before retrying a batch that failed on a store, milliseconds; doubles up
    /// to 5 s (or this delay when longer), with jitter.
    pub retry_ms: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            group: "stockcast-feature-store".to_owned(),
            batch_max: 5_000,
            batch_wait_ms: 20,
            replay_page: 10_000,
            retry_ms: 100,
        }
    }
}

/// A deliberate crash point, for restart tests: the processor stops without committing.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailPoint {
    /// Never.
    #[default]
    Never,
    /// After the n-th batch was consumed, before anything is written.
    AfterConsume(usize),
    /// After the n-th batch's online write, before the offline transaction.
    AfterOnlineWrite(usize),
    /// After the n-th batch's offline transaction, before the offsets are committed.
    AfterOfflineWrite(usize),
}

/// Counters of one batch (and, summed, of a processor's life).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Events read.
    pub events: u64,
    /// Bars stored.
    pub bars: u64,
    /// Redelivered bars skipped as already processed.
    pub duplicates: u64,
    /// Events dead-lettered.
    pub dead_letters: u64,
    /// Symbols recomputed because of late or corrected bars.
    pub recomputes: u64,
    /// Feature rows written.
    pub rows: u64,
    /// Online vectors written.
    pub online_writes: u64,
}

impl std::ops::AddAssign for BatchStats {
    fn add_assign(&mut self, o: Self) {
        self.events += o.events;
        self.bars += o.bars;
        self.duplicates += o.duplicates;
        self.dead_letters += o.dead_letters;
        self.recomputes += o.recomputes;
        self.rows += o.rows;
        self.online_writes += o.online_writes;
    }
}

/// Consumes market bars into the feature stores.
#[derive(Debug)]
pub struct Processor {
    catalog: Arc<Catalog>,
    online: Arc<dyn OnlineStore>,
    offline: Arc<dyn OfflineStore>,
    bus: Arc<dyn EventBus>,
    settings: StreamSettings,
    validator: Validator,
    clock: SharedClock,
    /// Engine state per (view index in the catalog, symbol), valid while it matches the
    /// stored snapshot.
    cache: HashMap<(usize, String), (ViewState, Vec<u8>)>,
    fail: FailPoint,
    batches: usize,
    committed: Arc<AtomicU64>,
    /// Totals since start.
    pub totals: BatchStats,
}

impl Processor {
    /// A processor over these stores and bus; `clock` judges how far in the future a bar
    /// may be.
    pub fn new(
        catalog: Arc<Catalog>,
        online: Arc<dyn OnlineStore>,
        offline: Arc<dyn OfflineStore>,
        bus: Arc<dyn EventBus>,
        settings: StreamSettings,
        validation: &ValidationSettings,
        clock: SharedClock,
    ) -> Result<Self, Error> {
        let validator = Validator::new(validation).map_err(|reason| Error::Config {
            key: "validation.symbol_pattern",
            reason,
        })?;
        Ok(Self {
            catalog,
            online,
            offline,
            bus,
            settings,
            validator,
            clock,
            cache: HashMap::new(),
            fail: FailPoint::Never,
            batches: 0,
            committed: Arc::default(),
            totals: BatchStats::default(),
        })
    }

    /// Arms a crash point (tests).
    #[doc(hidden)]
    pub fn fail_at(mut self, fail: FailPoint) -> Self {
        self.fail = fail;
        self
    }

    /// Events whose batch was committed so far (shared counter, for progress and benchmarks).
    pub fn progress(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.committed)
    }

    /// Consumes `topic` until `stop` resolves (finishing and committing the batch in hand)
    /// or a fail point fires. The loop is [`stockcast_bus::consume_batches`]: store failures
    /// retry the batch as a whole, dead letters are published once per batch before its
    /// effects, offsets are committed after both stores have the batch.
    pub async fn run(
        mut self,
        topic: &str,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<BatchStats, Error> {
        let first_delay = Duration::from_millis(self.settings.retry_ms.max(1));
        let settings = ConsumeSettings {
            batch_max: self.settings.batch_max,
            batch_wait: Duration::from_millis(self.settings.batch_wait_ms),
            retry: Backoff::new(first_delay, first_delay.max(Duration::from_secs(5))).map_err(
                |e| Error::Config {
                    key: "stream.retry_ms",
                    reason: e.to_string(),
                },
            )?,
        };
        let bus = Arc::clone(&self.bus);
        let mut consumer = bus.subscribe(&self.settings.group, &[topic]).await?;
        let shutdown = Shutdown::new();
        let result = {
            let mut handler = Handler(&mut self);
            let consume = stockcast_bus::consume_batches(
                bus.as_ref(),
                consumer.as_mut(),
                &mut handler,
                &settings,
                &shutdown,
            );
            tokio::pin!(consume, stop);
            tokio::select! {
                biased;
                result = &mut consume => result,
                () = &mut stop => {
                    shutdown.trigger();
                    consume.await
                }
            }
        };
        match result {
            Ok(()) => Ok(self.totals),
            Err(ConsumeError::Bus(e)) => Err(Error::Bus(e)),
            Err(ConsumeError::Apply(e)) => Err(e),
        }
    }

    /// Processes one decoded batch into both stores (without committing offsets), step by
    /// step.
    async fn process(&mut self, work: &Work) -> Result<BatchStats, Error> {
        let started = Instant::now();
        let mut stats = BatchStats {
            events: work.events,
            dead_letters: work.dead_letters,
            ..BatchStats::default()
        };
        // A copy: a failed attempt is retried from the same decoded batch.
        let groups = work.groups.clone();
        self.check_fail(FailPoint::AfterConsume)?;
        let restored = self.restore(&groups).await?;
        let stored = self.stored_bars(&groups, &restored.positions).await?;
        let folded = self.fold(groups, restored, &stored, &mut stats).await?;
        stats.online_writes = self.write_online(folded.newest).await?;
        self.check_fail(FailPoint::AfterOnlineWrite)?;
        self.write_offline(&folded.write).await?;
        self.check_fail(FailPoint::AfterOfflineWrite)?;
        crate::metrics::batch_done(&stats, started.elapsed());
        Ok(stats)
    }

    fn check_fail(&self, point: fn(usize) -> FailPoint) -> Result<(), Error> {
        if self.fail != FailPoint::Never && self.fail == point(self.batches) {
            return Err(Error::FailPoint(self.fail));
        }
        Ok(())
    }
}
