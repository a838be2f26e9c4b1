//! The in-process bus: partitioned in-memory logs with consumer groups, committed offsets
//! and rebalancing, so that the embedded default behaves like Kafka (per-key order,
//! redelivery of what was not committed).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::record::{Delivery, Message, Offsets, Record};
use crate::{BusError, Consumer, EventBus, trace};

/// Partitions of a topic created implicitly by a publish or a subscribe.
const DEFAULT_PARTITIONS: i32 = 4;

/// What an in-process bus keeps of each partition, like a broker's `retention.bytes` and
/// `retention.ms`: when a partition passes any bound, its oldest records are dropped. A
/// consumer whose next record was dropped skips to the oldest one kept (Kafka's offset reset
/// to earliest) and logs how many it lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Records kept per partition, ≥ 1.
    pub records: usize,
    /// Bytes kept per partition (key, payload, headers and the record's bookkeeping).
    pub bytes: usize,
    /// How long a record is kept after it was published.
    pub age: Duration,
}

impl Default for Retention {
    /// 1,000,000 records, 16 MiB and one hour per partition: minutes of backlog for the
    /// in-process consumers, a bounded footprint (64 MiB per 4-partition topic) for any input.
    fn default() -> Self {
        Self {
            records: 1_000_000,
            bytes: 16 << 20,
            age: Duration::from_secs(3_600),
        }
    }
}

/// In-process [`EventBus`]. Clones share the same logs.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    notify: Notify,
    /// What each partition keeps; older records are dropped like Kafka's retention drops them.
    retention: Retention,
}

#[derive(Debug, Default)]
struct State {
    topics: HashMap<String, Vec<Partition>>,
    groups: HashMap<String, Group>,
    next_member: u64,
}

#[derive(Debug, Default)]
struct Partition {
    /// Offset of `records[0]`.
    start: i64,
    records: VecDeque<Message>,
    /// Sum of [`footprint`] over `records`.
    bytes: usize,
}

impl Partition {
    fn end(&self) -> i64 {
        self.start + self.records.len() as i64
    }

    /// Drops the oldest records until the partition is within `retention` at `now_ms`.
    fn enforce(&mut self, retention: &Retention, now_ms: i64) {
        let oldest_kept =
            now_ms.saturating_sub(i64::try_from(retention.age.as_millis()).unwrap_or(i64::MAX));
        while let Some(front) = self.records.front() {
            let too_old = front.timestamp_ms.is_some_and(|t| t < oldest_kept);
            if !too_old && self.records.len() <= retention.records && self.bytes <= retention.bytes
            {
                break;
            }
            self.bytes -= footprint(front);
            self.records.pop_front();
            self.start += 1;
        }
    }
}

/// Memory a kept record takes, counted against [`Retention::bytes`].
fn footprint(message: &Message) -> usize {
    std::mem::size_of::<Message>()
        + message.topic.len()
        + message.key.len()
        + message.payload.len()
        + message
            .headers
            .iter()
            .map(|h| std::mem::size_of_val(h) + h.key.len() + h.value.len())
            .sum::<usize>()
}

#[derive(Debug, Default)]
struct Group {
    committed: HashMap<(String, i32), i64>,
    members: Vec<u64>,
    generation: u64,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// A bus with the default [`Retention`].
    pub fn new() -> Self {
        Self::with_retention(Retention::default())
    }

    /// A bus keeping what `retention` allows of each partition (at least the newest record).
    pub fn with_retention(retention: Retention) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                notify: Notify::new(),
                retention: Retention {
                    records: retention.records.max(1),
                    ..retention
                },
            }),
        }
    }

    /// Records and bytes kept in `topic`, over its partitions.
    pub fn retained(&self, topic: &str) -> (usize, usize) {
        let state = self.lock();
        state.topics.get(topic).map_or((0, 0), |partitions| {
            partitions
                .iter()
                .fold((0, 0), |(n, b), p| (n + p.records.len(), b + p.bytes))
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent data behind (every update is a
    // single push or insert), so a poisoned lock is still usable.
    shared
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn topic_mut<'a>(state: &'a mut State, topic: &str) -> &'a mut Vec<Partition> {
    state.topics.entry(topic.to_owned()).or_insert_with(|| {
        (0..DEFAULT_PARTITIONS)
            .map(|_| Partition::default())
            .collect()
    })
}

/// FNV-1a: stable across runs and platforms, so a key always maps to the same partition.
fn partition_for(key: &[u8], partitions: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % partitions as u64) as usize
}

impl MemoryBus {
    fn append(&self, state: &mut State, topic: &str, mut record: Record, now_ms: i64) -> Delivery {
        trace::inject(&mut record.headers);
        let retention = self.shared.retention;
        let partitions = topic_mut(state, topic);
        let index = partition_for(&record.key, partitions.len());
        let partition = &mut partitions[index];
        let offset = partition.end();
        let message = Message {
            topic: topic.to_owned(),
            partition: index as i32,
            offset,
            key: record.key,
            payload: record.payload,
            headers: record.headers,
            timestamp_ms: Some(now_ms),
        };
        partition.bytes += footprint(&message);
        partition.records.push_back(message);
        partition.enforce(&retention, now_ms);
        Delivery {
            partition: index as i32,
            offset,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, topic: &str, record: Record) -> Result<Delivery, BusError> {
        let delivery = {
            let mut state = self.lock();
            self.append(&mut state, topic, record, now_ms())
        };
        self.shared.notify.notify_waiters();
        Ok(delivery)
    }

    async fn publish_batch(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Vec<Delivery>, BusError> {
        let now = now_ms();
        let deliveries = {
            let mut state = self.lock();
            records
                .into_iter()
                .map(|record| self.append(&mut state, topic, record, now))
                .collect()
        };
        self.shared.notify.notify_waiters();
        Ok(deliveries)
    }

    async fn subscribe(&self, group: &str, topics: &[&str]) -> Result<Box<dyn Consumer>, BusError> {
        if topics.is_empty() {
            return Err(BusError::Consume(format!(
                "group {group}: no topics to subscribe to"
            )));
        }
        let member = {
            let mut state = self.lock();
            for topic in topics {
                topic_mut(&mut state, topic);
            }
            state.next_member += 1;
            let member = state.next_member;
            let entry = state.groups.entry(group.to_owned()).or_default();
            entry.members.push(member);
            entry.generation += 1;
            member
        };
        self.shared.notify.notify_waiters();
        Ok(Box::new(MemoryConsumer {
            shared: self.shared.clone(),
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            member,
            generation: 0,
            positions: HashMap::new(),
            cursor: 0,
        }))
    }

    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), BusError> {
        if partitions < 1 {
            return Err(BusError::Admin {
                topic: topic.to_owned(),
                reason: format!("partitions must be at least 1, got {partitions}"),
            });
        }
        let mut state = self.lock();
        state
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| (0..partitions).map(|_| Partition::default()).collect());
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// A member of an in-process consumer group.
#[derive(Debug)]
pub struct MemoryConsumer {
    shared: Arc<Shared>,
    group: String,
    topics: Vec<String>,
    member: u64,
    /// Group generation the positions belong to.
    generation: u64,
    /// Next offset to read, per assigned partition.
    positions: HashMap<(String, i32), i64>,
    /// Round-robin start among assigned partitions, so none starves.
    cursor: usize,
}

impl MemoryConsumer {
    /// Takes the next record if one is ready, rebalancing first when the group changed.
    fn poll(&mut self) -> Option<Message> {
        let mut state = lock(&self.shared);
        let state = &mut *state;
        let group = state.groups.get(&self.group)?;
        if group.generation != self.generation {
            self.generation = group.generation;
            let mut members = group.members.clone();
            members.sort_unstable();
            let rank = members.iter().position(|m| *m == self.member)?;
            self.positions.clear();
            let mut slot = 0usize;
            for topic in &self.topics {
                let count = state.topics.get(topic).map_or(0, Vec::len);
                for partition in 0..count as i32 {
                    if slot % members.len() == rank {
                        let committed = group
                            .committed
                            .get(&(topic.clone(), partition))
                            .copied()
                            .unwrap_or(0);
                        self.positions.insert((topic.clone(), partition), committed);
                    }
                    slot += 1;
                }
            }
        }
        let mut assigned: Vec<_> = self.positions.keys().cloned().collect();
        assigned.sort_unstable();
        let count = assigned.len();
        for step in 0..count {
            let key = &assigned[(self.cursor + step) % count];
            let Some(partition) = state.topics.get(&key.0).and_then(|p| p.get(key.1 as usize))
            else {
                continue;
            };
            let position = self.positions.get_mut(key)?;
            // Records dropped by retention are skipped, as Kafka's offset reset does.
            if *position < partition.start {
                tracing::warn!(
                    group = %self.group,
                    topic = %key.0,
                    partition = key.1,
                    lost = partition.start - *position,
                    "records dropped by the in-process bus's retention before this group read them"
                );
                *position = partition.start;
            }
            if *position < partition.end() {
                let message = partition.records[(*position - partition.start) as usize].clone();
                *position += 1;
                self.cursor = (self.cursor + step + 1) % count;
                return Some(message);
            }
        }
        None
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn recv(&mut self) -> Result<Message, BusError> {
        let shared = self.shared.clone();
        loop {
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(message) = self.poll() {
                return Ok(message);
            }
            notified.await;
        }
    }

    async fn commit(&mut self, offsets: &Offsets) -> Result<(), BusError> {
        let mut state = lock(&self.shared);
        let group = state
            .groups
            .get_mut(&self.group)
            .ok_or_else(|| BusError::Commit(format!("group {} is gone", self.group)))?;
        for (topic, partition, next) in offsets.iter() {
            group.committed.insert((topic.to_owned(), partition), next);
        }
        Ok(())
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        let mut state = lock(&self.shared);
        if let Some(group) = state.groups.get_mut(&self.group) {
            group.members.retain(|m| *m != self.member);
            group.generation += 1;
        }
        drop(state);
        self.shared.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(key: &str, payload_bytes: usize) -> Record {
        Record {
            key: bytes::Bytes::copy_from_slice(key.as_bytes()),
            payload: bytes::Bytes::from(vec![7u8; payload_bytes]),
            headers: Vec::new(),
        }
    }

    fn bus(retention: Retention) -> MemoryBus {
        MemoryBus::with_retention(retention)
    }

    /// Publishes with a given clock, as `publish` does with the system's.
    fn publish_at(bus: &MemoryBus, topic: &str, record: Record, now_ms: i64) -> Delivery {
        let mut state = bus.lock();
        bus.append(&mut state, topic, record, now_ms)
    }

    #[test]
    fn memory_stays_within_the_byte_bound_however_much_is_published() {
        let retention = Retention {
            bytes: 256 << 10,
            ..Retention::default()
        };
        let bus = bus(retention);
        let mut high_water = 0;
        for i in 0..200_000 {
            publish_at(&bus, "t", record(&format!("K{}", i % 50), 200), 0);
            high_water = high_water.max(bus.retained("t").1);
        }
        let (records, bytes) = bus.retained("t");
        assert!(
            high_water <= 4 * retention.bytes,
            "{high_water} bytes kept over 4 partitions of {} bytes",
            retention.bytes
        );
        assert!(bytes > 3 * retention.bytes, "the bound is used: {bytes}");
        assert!(
            records < 200_000 / 10,
            "old records were dropped: {records} kept"
        );
    }

    #[test]
    fn records_older_than_the_age_bound_are_dropped_on_the_next_publish() {
        let bus = bus(Retention {
            age: Duration::from_secs(60),
            ..Retention::default()
        });
        // One key: one partition.
        publish_at(&bus, "t", record("K", 10), 1_000);
        publish_at(&bus, "t", record("K", 10), 30_000);
        assert_eq!(bus.retained("t").0, 2);
        let late = publish_at(&bus, "t", record("K", 10), 61_001 + 1_000);
        assert_eq!(
            bus.retained("t").0,
            2,
            "the record published at 1 s is gone"
        );
        assert_eq!(late.offset, 2, "offsets keep counting");
        publish_at(&bus, "t", record("K", 10), 10_000_000);
        assert_eq!(bus.retained("t").0, 1, "the newest record is always kept");
    }

    #[tokio::test]
    async fn a_consumer_behind_retention_resumes_at_the_oldest_kept_record() {
        let bus = bus(Retention {
            records: 3,
            ..Retention::default()
        });
        for _ in 0..10 {
            publish_at(&bus, "t", record("K", 1), 0);
        }
        let mut consumer = bus.subscribe("g", &["t"]).await.unwrap();
        let first = consumer.recv().await.unwrap();
        assert_eq!(first.offset, 7, "offsets 0..=6 were dropped");
    }

    #[test]
    fn a_key_always_maps_to_the_same_partition() {
        let first = partition_for(b"AAPL", 4);
        assert!((0..100).all(|_| partition_for(b"AAPL", 4) == first));
        let spread: std::collections::HashSet<_> = [
            "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA", "META", "JPM",
        ]
        .iter()
        .map(|s| partition_for(s.as_bytes(), 4))
        .collect();
        assert!(spread.len() > 1, "keys must spread over partitions");
    }
}
