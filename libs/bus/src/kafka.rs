//! The Kafka bus on rdkafka: idempotent producer with `acks=all`, consumer groups with
//! manual commits, trace context in headers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize, Serializer};

use crate::record::{Delivery, Header, Message, Offsets, Record};
use crate::{BusError, Consumer, EventBus, trace};

/// Connection settings for a Kafka-protocol broker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Client id reported to the broker.
    pub client_id: String,
    /// How long a publish may wait for the broker's acknowledgement, milliseconds.
    pub delivery_timeout_ms: u64,
    /// How long a metadata, admin or commit request may take, milliseconds.
    pub request_timeout_ms: u64,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, `compression.type`, …).
    /// Values of keys containing `password` or `secret` are redacted when printed.
    #[serde(serialize_with = "redacted_properties")]
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            client_id: "stockcast".to_owned(),
            delivery_timeout_ms: 30_000,
            request_timeout_ms: 10_000,
            properties: BTreeMap::new(),
        }
    }
}

fn redacted_properties<S: Serializer>(
    properties: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, &str> = properties
        .iter()
        .map(|(k, v)| {
            let secret = k.contains("password") || k.contains("secret");
            (k.as_str(), if secret { "[redacted]" } else { v.as_str() })
        })
        .collect();
    shown.serialize(serializer)
}

impl KafkaSettings {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("socket.timeout.ms", self.request_timeout_ms.to_string());
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// [`EventBus`] on a Kafka-protocol broker.
#[derive(Clone)]
pub struct KafkaBus {
    settings: Arc<KafkaSettings>,
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.settings.brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Creates the producer and admin clients; connecting happens lazily.
    pub fn new(settings: KafkaSettings) -> Result<Self, BusError> {
        let config_error = |e: KafkaError| BusError::Config {
            key: "kafka.properties".to_owned(),
            reason: e.to_string(),
        };
        let producer: FutureProducer = settings
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "200000")
            .set(
                "message.timeout.ms",
                settings.delivery_timeout_ms.to_string(),
            )
            .create()
            .map_err(config_error)?;
        let admin: AdminClient<DefaultClientContext> =
            settings.client_config().create().map_err(config_error)?;
        Ok(Self {
            settings: Arc::new(settings),
            producer,
            admin: Arc::new(admin),
        })
    }

    fn send(
        &self,
        topic: &str,
        mut record: Record,
    ) -> impl std::future::Future<Output = Result<Delivery, BusError>> + Send + 'static {
        trace::inject(&mut record.headers);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for header in &record.headers {
            headers = headers.insert(KafkaHeader {
                key: &header.key,
                value: Some(&header.value),
            });
        }
        let producer = self.producer.clone();
        let topic = topic.to_owned();
        let timeout = Duration::from_millis(self.settings.delivery_timeout_ms);
        async move {
            let future_record = FutureRecord::to(&topic)
                .key(record.key.as_ref())
                .payload(record.payload.as_ref())
                .headers(headers);
            match producer.send(future_record, timeout).await {
                Ok(delivery) => Ok(Delivery {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Err((error, _)) => Err(BusError::Publish {
                    topic,
                    reason: error.to_string(),
                }),
            }
        }
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, topic: &str, record: Record) -> Result<Delivery, BusError> {
        self.send(topic, record).await
    }

    async fn publish_batch(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Vec<Delivery>, BusError> {
        // Enqueue everything first (librdkafka keeps per-partition order), then await acks.
        let pending: Vec<_> = records
            .into_iter()
            .map(|record| self.send(topic, record))
            .collect();
        join_all(pending).await.into_iter().collect()
    }

    async fn subscribe(&self, group: &str, topics: &[&str]) -> Result<Box<dyn Consumer>, BusError> {
        if topics.is_empty() {
            return Err(BusError::Consume(format!(
                "group {group}: no topics to subscribe to"
            )));
        }
        let consumer: StreamConsumer = self
            .settings
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| BusError::Config {
                key: "kafka.properties".to_owned(),
                reason: e.to_string(),
            })?;
        consumer
            .subscribe(topics)
            .map_err(|e| BusError::Consume(format!("subscribe {topics:?}: {e}")))?;
        Ok(Box::new(KafkaConsumer {
            consumer: Arc::new(consumer),
            request_timeout: self.settings.request_timeout(),
        }))
    }

    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), BusError> {
        let admin_error = |reason: String| BusError::Admin {
            topic: topic.to_owned(),
            reason,
        };
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(self.settings.request_timeout()));
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| admin_error(e.to_string()))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(admin_error(code.to_string())),
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        let producer = self.producer.clone();
        let timeout = self.settings.request_timeout();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(|e| BusError::Unavailable(e.to_string()))
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?
    }
}

/// A member of a Kafka consumer group.
pub struct KafkaConsumer {
    consumer: Arc<StreamConsumer>,
    request_timeout: Duration,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer").finish_non_exhaustive()
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn recv(&mut self) -> Result<Message, BusError> {
        let message = self
            .consumer
            .recv()
            .await
            .map_err(|e| BusError::Consume(e.to_string()))?;
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| Header {
                        key: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Message {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: bytes::Bytes::copy_from_slice(message.key().unwrap_or_default()),
            payload: bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default()),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
        })
    }

    async fn commit(&mut self, offsets: &Offsets) -> Result<(), BusError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition, next) in offsets.iter() {
            list.add_partition_offset(topic, partition, Offset::Offset(next))
                .map_err(|e| BusError::Commit(e.to_string()))?;
        }
        let consumer = self.consumer.clone();
        let commit = tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync));
        match tokio::time::timeout(self.request_timeout, commit).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(BusError::Commit(error.to_string())),
            Ok(Err(error)) => Err(BusError::Commit(error.to_string())),
            Err(_) => Err(BusError::Commit(format!(
                "no answer within {} ms",
                self.request_timeout.as_millis()
            ))),
        }
    }
}
