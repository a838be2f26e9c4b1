//! Dead-lettering: a record that cannot be accepted or processed is published, with the
//! reason and its original bytes, to the dead-letter topic beside its topic.

use stockcast_proto::stockcast::events::v1::dead_letter_record::Origin;
use stockcast_proto::stockcast::events::v1::{ComponentOrigin, DeadLetterRecord, KafkaOrigin};
use stockcast_proto::stockcast::types::v1::RejectReason;

use crate::record::{Message, Record};
use crate::{BusError, Delivery, EventBus};

/// The dead-letter topic of `topic`: `stockcast.market.bars.v1` → `stockcast.market.bars-dlq.v1`.
pub fn dead_letter_topic(topic: &str) -> String {
    match topic.rsplit_once('.') {
        Some((name, version)) if version.starts_with('v') => format!("{name}-dlq.{version}"),
        _ => format!("{topic}-dlq"),
    }
}

/// Why a record is dead-lettered.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Machine-readable reason.
    pub code: RejectReason,
    /// Human-readable reason naming the offending value.
    pub reason: String,
    /// The offending field, empty when not about one field.
    pub field: String,
    /// The symbol, when known.
    pub symbol: String,
    /// Component that rejects it, e.g. `ingestion`.
    pub rejected_by: String,
    /// Processing attempts made, at least 1.
    pub attempts: i32,
}

impl DeadLetter {
    /// A reason with no field or symbol yet.
    pub fn new(rejected_by: &str, code: RejectReason, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            field: String::new(),
            symbol: String::new(),
            rejected_by: rejected_by.to_owned(),
            attempts: 1,
        }
    }

    /// Names the offending field.
    pub fn field(mut self, field: &str) -> Self {
        self.field = field.to_owned();
        self
    }

    /// Names the symbol.
    pub fn symbol(mut self, symbol: &str) -> Self {
        self.symbol = symbol.to_owned();
        self
    }

    fn record(
        self,
        key: bytes::Bytes,
        origin: Origin,
        payload: Vec<u8>,
        payload_type: String,
    ) -> Record {
        let now = std::time::SystemTime::now();
        let letter = DeadLetterRecord {
            origin: Some(origin),
            payload,
            payload_type,
            reason_code: self.code as i32,
            reason: self.reason,
            field: self.field,
            symbol: self.symbol,
            failed_at: Some(prost_types::Timestamp::from(now)),
            attempts: self.attempts.max(1),
            rejected_by: self.rejected_by,
        };
        Record::proto(key, &letter)
    }

    /// Dead-letters a consumed record to the dead-letter topic of its topic.
    pub async fn publish_consumed(
        self,
        bus: &dyn EventBus,
        message: &Message,
        consumer_group: &str,
    ) -> Result<Delivery, BusError> {
        let topic = dead_letter_topic(&message.topic);
        bus.publish(&topic, self.for_consumed(message, consumer_group))
            .await
    }

    /// The dead-letter record of a consumed record, to publish on
    /// `dead_letter_topic(&message.topic)` (with others, in one `publish_batch`).
    pub fn for_consumed(self, message: &Message, consumer_group: &str) -> Record {
        let origin = Origin::Kafka(KafkaOrigin {
            topic: message.topic.clone(),
            partition: message.partition,
            offset: message.offset,
            key: message.key.to_vec(),
            consumer_group: consumer_group.to_owned(),
        });
        let payload_type = message.message_type().unwrap_or_default().to_owned();
        self.record(
            message.key.clone(),
            origin,
            message.payload.to_vec(),
            payload_type,
        )
    }

    /// A dead-letter record for input that never was on the bus (a pushed bar, a CSV row),
    /// to publish on `dead_letter_topic(data_topic)`.
    pub fn for_input(
        self,
        origin: ComponentOrigin,
        payload: Vec<u8>,
        payload_type: &str,
    ) -> Record {
        let key = bytes::Bytes::from(self.symbol.clone().into_bytes());
        self.record(
            key,
            Origin::Component(origin),
            payload,
            payload_type.to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::dead_letter_topic;

    #[test]
    fn dead_letter_topics_keep_the_version_suffix() {
        assert_eq!(
            dead_letter_topic("stockcast.market.bars.v1"),
            "stockcast.market.bars-dlq.v1"
        );
        assert_eq!(dead_letter_topic("plain"), "plain-dlq");
    }
}
