//! The event bus every stockcast service publishes to and consumes from.
//!
//! [`EventBus`] publishes keyed records (the key is the symbol, so one symbol's events stay
//! in order) with headers, and hands out [`Consumer`]s that read as a consumer group and
//! commit only when told to: processing is at-least-once, and effects are made idempotent
//! by the consumer. Two implementations pass one conformance suite: [`kafka::KafkaBus`] on
//! rdkafka and [`memory::MemoryBus`] in-process (the embedded default).

pub mod consume;
mod dead_letter;
pub mod kafka;
pub mod memory;
mod record;
mod settings;
mod trace;

#[cfg(feature = "conformance")]
pub mod conformance;

use async_trait::async_trait;

pub use crate::consume::{
    ApplyError, BatchHandler, ConsumeError, ConsumeSettings, Prepared, batch_span_parent,
    consume_batches,
};
pub use crate::dead_letter::{DeadLetter, dead_letter_topic};
pub use crate::kafka::{KafkaBus, KafkaSettings};
pub use crate::memory::{MemoryBus, Retention};
pub use crate::record::{Delivery, Header, Message, Offsets, Record};
pub use crate::settings::{BusKind, BusSettings};

/// Header carrying the full protobuf message name of the payload.
pub const MESSAGE_TYPE_HEADER: &str = "stockcast-payload-type";

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker did not acknowledge a record; it may or may not have been written.
    #[error("publish to {topic}: {reason}")]
    Publish {
        /// Target topic.
        topic: String,
        /// The broker's or client's reason.
        reason: String,
    },
    /// Consuming failed (broker unreachable, group error).
    #[error("consume: {0}")]
    Consume(String),
    /// Committing offsets failed; the records will be delivered again.
    #[error("commit: {0}")]
    Commit(String),
    /// Topic administration failed.
    #[error("topic {topic}: {reason}")]
    Admin {
        /// The topic.
        topic: String,
        /// What failed.
        reason: String,
    },
    /// The bus cannot be configured as asked.
    #[error("config key `{key}`: {reason}")]
    Config {
        /// Dotted config key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The broker did not answer in time.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The consumer was closed.
    #[error("consumer closed")]
    Closed,
}

/// Publishes records and creates consumers. Cheap to share behind an `Arc`.
#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Publishes one record and waits until the broker has it durably (`acks=all`).
    async fn publish(&self, topic: &str, record: Record) -> Result<Delivery, BusError>;

    /// Publishes records, keeping each key's order, and waits until all are durable. On
    /// error some may have been written: retrying is safe because consumers are idempotent.
    async fn publish_batch(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Joins consumer group `group` on `topics`. A new group starts from the earliest record.
    async fn subscribe(&self, group: &str, topics: &[&str]) -> Result<Box<dyn Consumer>, BusError>;

    /// Creates `topic` with `partitions` partitions unless it exists.
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), BusError>;

    /// Checks that the broker answers, for readiness.
    async fn ping(&self) -> Result<(), BusError>;
}

/// One member of a consumer group.
#[async_trait]
pub trait Consumer: Send + std::fmt::Debug {
    /// The next record of the partitions assigned to this member. Cancel-safe.
    async fn recv(&mut self) -> Result<Message, BusError>;

    /// Durably commits the given positions: the group resumes there after a restart or a
    /// rebalance. Call it only once the records' effects are durable.
    async fn commit(&mut self, offsets: &Offsets) -> Result<(), BusError>;
}

/// Creates each of `topics` with `partitions` partitions unless it exists, waiting with the
/// start-up backoff while the broker is not reachable yet (services and brokers start in any
/// order) until the attempts run out or `shutdown` fires.
pub async fn ensure_topics(
    bus: &dyn EventBus,
    topics: &[&str],
    partitions: i32,
    shutdown: &stockcast_runtime::Shutdown,
) -> Result<(), stockcast_runtime::StartError> {
    stockcast_runtime::start::wait_for(
        "event-bus",
        shutdown,
        |_: &BusError| true,
        || async {
            for topic in topics {
                bus.ensure_topic(topic, partitions).await?;
            }
            Ok(())
        },
    )
    .await
}
