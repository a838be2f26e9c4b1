//! Which bus a service uses, as configured.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{BusError, EventBus, KafkaBus, KafkaSettings, MemoryBus};

/// Bus implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// In-process channels: one process only (the demo).
    #[default]
    Memory,
    /// A Kafka-protocol broker.
    Kafka,
}

/// The `[bus]` section of a service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    /// `memory` or `kafka`.
    pub kind: BusKind,
    /// Broker settings, used when `kind = "kafka"`.
    pub kafka: KafkaSettings,
}

impl BusSettings {
    /// Builds the configured bus. A memory bus is private to this call; the demo shares one
    /// by passing it to every service instead.
    pub fn connect(&self) -> Result<Arc<dyn EventBus>, BusError> {
        match self.kind {
            BusKind::Memory => tracing::info!(bus = "memory", "event bus: in-process"),
            BusKind::Kafka => {
                tracing::info!(bus = "kafka", brokers = %self.kafka.brokers, "event bus: kafka")
            }
        }
        Ok(match self.kind {
            BusKind::Memory => Arc::new(MemoryBus::new()),
            BusKind::Kafka => Arc::new(KafkaBus::new(self.kafka.clone())?),
        })
    }
}
