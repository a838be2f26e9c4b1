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
//! The loop around these steps (batching, dead-letter publishing, retries, commits, shutdown)
//! is the bus's [`stockcast_bus::consume_batches`]; this module is its handler.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use stockcast_bus::{
    ApplyError, BatchHandler, BusError, ConsumeError, ConsumeSettings, DeadLetter, EventBus,
    Message, Prepared,
};
use stockcast_market::{Bar, Interval, ValidationSettings, Validator};
use stockcast_proto::stockcast::events::v1::MarketBarEvent;
use stockcast_proto::stockcast::types::v1::RejectReason;
use stockcast_runtime::Shutdown;
use stockcast_runtime::retry::{Backoff, BackoffError};
use tracing::{info, warn};

use crate::SERVICE;
use crate::store::{
    FeatureRow, OfflineStore, OnlineStore, OnlineWrite, StateSnapshot, StoreError, Ts, ViewWrite,
    WriteBatch, for_each_bar,
};
use crate::view::{Catalog, View, ViewState};

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

/// Why the processor stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The bus failed in a way retrying did not fix.
    #[error("event bus: {0}")]
    Bus(#[from] BusError),
    /// A fail point fired.
    #[error("stopped at fail point {0:?}")]
    FailPoint(FailPoint),
    /// `stream.retry_ms` does not make a backoff.
    #[error("config key `stream.retry_ms`: {0}")]
    Retry(#[from] BackoffError),
    /// A store failed in a way retrying cannot fix (today every store failure is retried).
    #[error("store: {0}")]
    Store(StoreError),
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
    /// Engine state per (view index in the catalog, symbol), valid while it matches the
    /// stored snapshot.
    cache: HashMap<(usize, String), (ViewState, Vec<u8>)>,
    fail: FailPoint,
    batches: usize,
    committed: Arc<std::sync::atomic::AtomicU64>,
    /// Totals since start.
    pub totals: BatchStats,
}

/// One decoded event of a batch.
#[derive(Clone)]
struct Incoming {
    bar: Bar,
    /// Ingestion's revision of the bar (0 = first version).
    revision: i32,
}

/// A decoded batch (its dead letters are published by the consume loop).
#[derive(Default)]
struct Work {
    events: u64,
    /// Usable bars in arrival order, by (symbol, interval).
    groups: BTreeMap<(String, Interval), Vec<Incoming>>,
    dead_letters: u64,
}

impl Processor {
    /// A processor over these stores and bus.
    pub fn new(
        catalog: Arc<Catalog>,
        online: Arc<dyn OnlineStore>,
        offline: Arc<dyn OfflineStore>,
        bus: Arc<dyn EventBus>,
        settings: StreamSettings,
        validation: &ValidationSettings,
    ) -> Result<Self, String> {
        let validator = Validator::new(validation)?;
        Ok(Self {
            catalog,
            online,
            offline,
            bus,
            settings,
            validator,
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
    pub fn progress(&self) -> Arc<std::sync::atomic::AtomicU64> {
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
    ) -> Result<BatchStats, StreamError> {
        let first_delay = Duration::from_millis(self.settings.retry_ms.max(1));
        let settings = ConsumeSettings {
            batch_max: self.settings.batch_max,
            batch_wait: Duration::from_millis(self.settings.batch_wait_ms),
            retry: Backoff::new(first_delay, first_delay.max(Duration::from_secs(5)))?,
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
            Err(ConsumeError::Bus(e)) => Err(StreamError::Bus(e)),
            Err(ConsumeError::Apply(Failure::Fail(point))) => Err(StreamError::FailPoint(point)),
            Err(ConsumeError::Apply(Failure::Store(e))) => Err(StreamError::Store(e)),
        }
    }

    fn check_fail(&self, point: fn(usize) -> FailPoint) -> Result<(), Failure> {
        if self.fail != FailPoint::Never && self.fail == point(self.batches) {
            return Err(Failure::Fail(self.fail));
        }
        Ok(())
    }

    /// Decodes a batch: usable bars by (symbol, interval), dead letters by topic.
    fn decode_batch(&self, batch: &[Message]) -> Prepared<Work> {
        let mut prepared = Prepared::new(Work {
            events: batch.len() as u64,
            ..Work::default()
        });
        let now = chrono::Utc::now().timestamp();
        for message in batch {
            match self.decode(message, now) {
                Ok((bar, revision)) => prepared
                    .work
                    .groups
                    .entry((bar.symbol.clone(), bar.interval))
                    .or_default()
                    .push(Incoming { bar, revision }),
                Err(letter) => prepared.dead_letter(message, letter, &self.settings.group),
            }
        }
        prepared.work.dead_letters = prepared.dead_letter_count() as u64;
        prepared
    }

    /// Processes one decoded batch into both stores (without committing offsets).
    async fn process(&mut self, prepared: &Work) -> Result<BatchStats, Failure> {
        let started = Instant::now();
        let mut stats = BatchStats {
            events: prepared.events,
            dead_letters: prepared.dead_letters,
            ..BatchStats::default()
        };
        // A copy: a failed attempt is retried from the same decoded batch.
        let groups = prepared.groups.clone();
        self.check_fail(FailPoint::AfterConsume)?;

        // 2. fold the bars of each symbol into each view of its interval.
        let mut write = WriteBatch::default();
        let mut view_writes: BTreeMap<usize, ViewWrite> = BTreeMap::new();
        let mut newest: BTreeMap<(usize, String), (Ts, Vec<f64>)> = BTreeMap::new();
        let catalog = Arc::clone(&self.catalog);

        // Redelivered bars: find the stored ones among bars at or before a state's position.
        let mut intervals: BTreeMap<Interval, Vec<String>> = BTreeMap::new();
        for (symbol, interval) in groups.keys() {
            intervals.entry(*interval).or_default().push(symbol.clone());
        }
        let mut states: HashMap<(usize, String), ViewState> = HashMap::new();
        let mut positions: HashMap<(String, Interval), Option<Ts>> = HashMap::new();
        for (interval, symbols) in &intervals {
            for (vi, view) in catalog.views().iter().enumerate() {
                if view.interval != *interval {
                    continue;
                }
                let snapshots = self
                    .offline
                    .states(&view.id, symbols)
                    .await
                    .map_err(Failure::Store)?;
                let by_symbol: HashMap<&str, &StateSnapshot> =
                    snapshots.iter().map(|s| (s.symbol.as_str(), s)).collect();
                for symbol in symbols {
                    let key = (vi, symbol.clone());
                    let state = match by_symbol.get(symbol.as_str()) {
                        Some(snap) => match self.cache.remove(&key) {
                            // Ours, unless another consumer moved it since (a rebalance).
                            Some((cached, bytes)) if bytes == snap.state => cached,
                            _ => match ViewState::from_bytes(view, &snap.state) {
                                Ok(mut s) => {
                                    // Bars stored after the snapshot (its view version was
                                    // not served for a while) are folded in, never skipped.
                                    self.catch_up(view, symbol, &mut s)
                                        .await
                                        .map_err(Failure::Store)?;
                                    s
                                }
                                Err(e) => {
                                    warn!(view = %view.id, symbol, error = %e, "unusable state snapshot; replaying history");
                                    self.replay(view, symbol).await.map_err(Failure::Store)?
                                }
                            },
                        },
                        // No snapshot: a new symbol, or a view version added later; its
                        // state must reflect every stored bar, as the others' do.
                        None => self.replay(view, symbol).await.map_err(Failure::Store)?,
                    };
                    let pos = positions
                        .entry((symbol.clone(), *interval))
                        .or_insert(state.last_bar_ts);
                    // Bars up to the furthest position may be redeliveries.
                    *pos = (*pos).max(state.last_bar_ts);
                    states.insert(key, state);
                }
            }
        }
        let mut candidates: BTreeMap<Interval, Vec<(String, Ts)>> = BTreeMap::new();
        for ((symbol, interval), incoming) in &groups {
            let Some(Some(pos)) = positions.get(&(symbol.clone(), *interval)) else {
                continue;
            };
            for i in incoming.iter().filter(|i| i.bar.ts <= *pos) {
                candidates
                    .entry(*interval)
                    .or_default()
                    .push((symbol.clone(), i.bar.ts));
            }
        }
        let mut stored: HashMap<(String, Interval, Ts), (Bar, i32)> = HashMap::new();
        for (interval, keys) in &candidates {
            for bar in self
                .offline
                .bars_at(*interval, keys)
                .await
                .map_err(Failure::Store)?
            {
                stored.insert((bar.0.symbol.clone(), bar.0.interval, bar.0.ts), bar);
            }
        }

        for ((symbol, interval), incoming) in groups {
            // Collapse redeliveries within the batch (the highest revision of a key wins, the
            // last event among equal ones), drop bars equal to the stored ones or older than
            // them (a lower revision), and fold in time order.
            let pos = positions
                .get(&(symbol.clone(), interval))
                .copied()
                .flatten();
            let mut latest: BTreeMap<Ts, (Bar, i32)> = BTreeMap::new();
            for Incoming { bar, revision } in incoming {
                if let Some((prev, prev_revision)) = latest.get(&bar.ts)
                    && (revision < *prev_revision || prev.same_values(&bar))
                {
                    stats.duplicates += 1;
                    continue;
                }
                latest.insert(bar.ts, (bar, revision));
            }
            let mut fresh: Vec<Bar> = Vec::with_capacity(latest.len());
            let mut revisions: Vec<i32> = Vec::with_capacity(latest.len());
            for (ts, (bar, revision)) in latest {
                if pos.is_some_and(|p| ts <= p)
                    && stored
                        .get(&(symbol.clone(), interval, ts))
                        .is_some_and(|(s, r)| revision < *r || s.same_values(&bar))
                {
                    stats.duplicates += 1;
                    continue;
                }
                fresh.push(bar);
                revisions.push(revision);
            }
            let Some(first_ts) = fresh.first().map(|b| b.ts) else {
                continue;
            };
            for (vi, view) in catalog.views().iter().enumerate() {
                if view.interval != interval {
                    continue;
                }
                let key = (vi, symbol.clone());
                let vw = view_writes.entry(vi).or_insert_with(|| ViewWrite {
                    view: view.id.clone(),
                    rows: Vec::new(),
                    states: Vec::new(),
                    keep_existing: false,
                });
                let state = states.remove(&key).unwrap_or_else(|| view.new_state());
                let late = state.last_bar_ts.is_some_and(|p| first_ts <= p);
                let state = match late {
                    false => {
                        let mut state = state;
                        let mut out = vec![0.0; view.features.len()];
                        for bar in &fresh {
                            view.update(&mut state, bar, &mut out);
                            vw.rows.push(FeatureRow {
                                symbol: symbol.clone(),
                                event_time: view.event_time(bar.ts),
                                values: out.clone(),
                            });
                        }
                        state
                    }
                    true => {
                        let from = first_ts;
                        stats.recomputes += 1;
                        metrics::counter!("stockcast_features_recomputes_total", "view" => view.id.to_string()).increment(1);
                        let (state, rows) = self
                            .recompute(view, &symbol, &fresh, from)
                            .await
                            .map_err(Failure::Store)?;
                        vw.rows.extend(rows);
                        state
                    }
                };
                if let Some(last) = vw.rows.iter().rev().find(|r| r.symbol == symbol) {
                    newest.insert(key.clone(), (last.event_time, last.values.clone()));
                }
                let bytes = state.to_bytes();
                vw.states.push(StateSnapshot {
                    symbol: symbol.clone(),
                    last_bar_ts: state.last_bar_ts.unwrap_or(Ts::MIN),
                    bars_seen: state.bars_seen,
                    state: bytes.clone(),
                });
                self.cache.insert(key, (state, bytes));
            }
            // Keep `revisions` aligned with `bars`.
            write.revisions.resize(write.bars.len(), 0);
            write.bars.extend(fresh);
            write.revisions.extend(revisions);
        }
        stats.bars = write.bars.len() as u64;
        stats.rows = view_writes.values().map(|v| v.rows.len() as u64).sum();
        write.views = view_writes.into_values().collect();

        // 3. online: the newest vector per (view, symbol).
        let writes: Vec<OnlineWrite> = newest
            .into_iter()
            .map(|((vi, symbol), (event_time, values))| {
                let view = &catalog.views()[vi];
                OnlineWrite {
                    view: view.id.clone(),
                    symbol,
                    event_time,
                    values,
                    ttl: view.online_ttl,
                }
            })
            .collect();
        if !writes.is_empty() {
            self.online.write(&writes).await.map_err(Failure::Store)?;
        }
        stats.online_writes = writes.len() as u64;
        self.check_fail(FailPoint::AfterOnlineWrite)?;

        // 4. offline: bars, rows and states in one transaction.
        if !write.is_empty() {
            self.offline.write(&write).await.map_err(Failure::Store)?;
        }
        self.check_fail(FailPoint::AfterOfflineWrite)?;
        record_metrics(&stats, started.elapsed());
        Ok(stats)
    }

    fn decode(&self, message: &Message, now: Ts) -> Result<(Bar, i32), DeadLetter> {
        let letter = |code: RejectReason, field: &str, reason: String| {
            DeadLetter::new(SERVICE, code, reason).field(field)
        };
        if let Some(kind) = message.message_type()
            && kind != <MarketBarEvent as prost::Name>::full_name()
        {
            return Err(letter(
                RejectReason::UnknownPayloadType,
                "",
                format!("payload type {kind:?} is not stockcast.events.v1.MarketBarEvent"),
            ));
        }
        let event: MarketBarEvent = message.decode().map_err(|e| {
            letter(
                RejectReason::Malformed,
                "",
                format!("not a MarketBarEvent: {e}"),
            )
        })?;
        let Some(bar) = event.bar.as_ref() else {
            return Err(letter(
                RejectReason::MissingField,
                "bar",
                "event has no bar".to_owned(),
            ));
        };
        let bar = Bar::try_from(bar)
            .map_err(|r| letter(r.code, r.field, r.reason).symbol(&bar.symbol))?;
        self.validator
            .check(&bar, now)
            .map_err(|r| letter(r.code, r.field, r.reason).symbol(&bar.symbol))?;
        if event.revision < 0 {
            return Err(letter(
                RejectReason::Malformed,
                "revision",
                format!("revision {} is negative", event.revision),
            )
            .symbol(&bar.symbol));
        }
        Ok((bar, event.revision))
    }

    /// Replays every stored bar of `symbol` into a fresh state, page by page.
    async fn replay(&self, view: &View, symbol: &str) -> Result<ViewState, StoreError> {
        let mut state = view.new_state();
        let mut out = vec![0.0; view.features.len()];
        for_each_bar(
            self.offline.as_ref(),
            symbol,
            view.interval,
            (Ts::MIN, Ts::MAX),
            self.settings.replay_page,
            |bar| view.update(&mut state, bar, &mut out),
        )
        .await?;
        if state.bars_seen > 0 {
            info!(view = %view.id, symbol, bars = state.bars_seen, "state rebuilt from stored bars");
        }
        Ok(state)
    }

    /// Folds the stored bars opened after `state`'s last bar into it.
    async fn catch_up(
        &self,
        view: &View,
        symbol: &str,
        state: &mut ViewState,
    ) -> Result<(), StoreError> {
        let Some(last) = state.last_bar_ts else {
            return Ok(());
        };
        let mut out = vec![0.0; view.features.len()];
        let n = for_each_bar(
            self.offline.as_ref(),
            symbol,
            view.interval,
            (last.saturating_add(1), Ts::MAX),
            self.settings.replay_page,
            |bar| view.update(state, bar, &mut out),
        )
        .await?;
        if n > 0 {
            info!(view = %view.id, symbol, bars = n, "state caught up with bars stored after its snapshot");
        }
        Ok(())
    }

    /// Recomputes `symbol`'s history with `fresh` merged over the stored bars, returning the
    /// final state and the rows of bars opened at or after `from`.
    async fn recompute(
        &self,
        view: &View,
        symbol: &str,
        fresh: &[Bar],
        from: Ts,
    ) -> Result<(ViewState, Vec<FeatureRow>), StoreError> {
        let mut overrides: BTreeMap<Ts, &Bar> = fresh.iter().map(|b| (b.ts, b)).collect();
        let mut state = view.new_state();
        let mut out = vec![0.0; view.features.len()];
        let mut rows = Vec::new();
        let mut emit = |state: &mut ViewState, bar: &Bar, rows: &mut Vec<FeatureRow>| {
            view.update(state, bar, &mut out);
            if bar.ts >= from {
                rows.push(FeatureRow {
                    symbol: symbol.to_owned(),
                    event_time: view.event_time(bar.ts),
                    values: out.clone(),
                });
            }
        };
        for_each_bar(
            self.offline.as_ref(),
            symbol,
            view.interval,
            (Ts::MIN, Ts::MAX),
            self.settings.replay_page,
            |bar| {
                // Fresh bars opened before this stored one come first.
                while let Some(entry) = overrides.first_entry() {
                    if *entry.key() >= bar.ts {
                        break;
                    }
                    let b = entry.remove();
                    emit(&mut state, b, &mut rows);
                }
                match overrides.remove(&bar.ts) {
                    Some(b) => emit(&mut state, b, &mut rows),
                    None => emit(&mut state, bar, &mut rows),
                }
            },
        )
        .await?;
        while let Some((_, b)) = overrides.pop_first() {
            emit(&mut state, b, &mut rows);
        }
        Ok((state, rows))
    }
}

/// The processor as the consume loop's handler.
struct Handler<'a>(&'a mut Processor);

#[async_trait]
impl BatchHandler for Handler<'_> {
    type Work = Work;
    type Error = Failure;

    fn prepare(&mut self, batch: &[Message]) -> Prepared<Work> {
        self.0.batches += 1;
        self.0.decode_batch(batch)
    }

    async fn apply(&mut self, work: &Work) -> Result<(), ApplyError<Failure>> {
        match self.0.process(work).await {
            Ok(stats) => {
                self.0.totals += stats;
                Ok(())
            }
            Err(e @ Failure::Store(_)) => Err(ApplyError::Transient(e)),
            Err(e @ Failure::Fail(_)) => Err(ApplyError::Fatal(e)),
        }
    }

    /// A child of the first event's producer trace (so a trace shows the hop from ingestion
    /// to the feature store), linked to the other events' traces.
    fn span(&self, batch: &[Message]) -> tracing::Span {
        let span = tracing::info_span!("feature_batch", events = batch.len());
        stockcast_bus::batch_span_parent(&span, batch);
        span
    }

    fn consume_failed(&mut self, _error: &BusError) {
        metrics::counter!("stockcast_features_consume_errors_total").increment(1);
    }

    fn apply_retried(&mut self, _error: &Failure) {
        // Nothing was committed: the batch is retried as a whole, and the state cache may be
        // ahead of the stores, so drop it.
        self.0.cache.clear();
        metrics::counter!("stockcast_features_batch_retries_total").increment(1);
    }

    fn committed(&mut self, records: usize) {
        self.0
            .committed
            .fetch_add(records as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Why applying a batch failed: a store (retried) or a fail point (the processor stops).
#[derive(Debug)]
enum Failure {
    Store(StoreError),
    Fail(FailPoint),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Store(e) => e.fmt(f),
            Failure::Fail(point) => write!(f, "stopped at fail point {point:?}"),
        }
    }
}

fn record_metrics(stats: &BatchStats, took: Duration) {
    metrics::counter!("stockcast_features_events_total").increment(stats.events);
    metrics::counter!("stockcast_features_bars_total").increment(stats.bars);
    metrics::counter!("stockcast_features_duplicates_total").increment(stats.duplicates);
    metrics::counter!("stockcast_features_dead_letters_total").increment(stats.dead_letters);
    metrics::counter!("stockcast_features_rows_total").increment(stats.rows);
    metrics::histogram!("stockcast_features_batch_seconds").record(took.as_secs_f64());
}
