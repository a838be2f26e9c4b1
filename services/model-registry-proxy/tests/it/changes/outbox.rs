//! A model event that cannot be published when its change is recorded (broker down) is
//! published, in order and with the same id, by the next change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::harness::{Harness, Spec, audit_of, model_name, register};
use async_trait::async_trait;
use stockcast_bus::{BusError, Consumer, Delivery, EventBus, MemoryBus, Record};
use stockcast_proto::stockcast::events::v1::ModelEvent;
use stockcast_proto::stockcast::registry::v1 as pb;

/// An in-process bus whose publishes fail while `down` is set.
#[derive(Debug, Default)]
struct FlakyBus {
    inner: MemoryBus,
    down: AtomicBool,
}

#[async_trait]
impl EventBus for FlakyBus {
    async fn publish(&self, topic: &str, record: Record) -> Result<Delivery, BusError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::Unavailable("broker down (test)".into()));
        }
        self.inner.publish(topic, record).await
    }

    async fn publish_batch(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Vec<Delivery>, BusError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::Unavailable("broker down (test)".into()));
        }
        self.inner.publish_batch(topic, records).await
    }

    async fn subscribe(&self, group: &str, topics: &[&str]) -> Result<Box<dyn Consumer>, BusError> {
        self.inner.subscribe(group, topics).await
    }

    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), BusError> {
        self.inner.ensure_topic(topic, partitions).await
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.inner.ping().await
    }
}

fn promote(name: &str, version: i64) -> pb::SetAliasRequest {
    pb::SetAliasRequest {
        name: name.to_owned(),
        alias: "champion".into(),
        version,
        reason: format!("promote {version}"),
        expected_current_version: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_not_published_is_sent_with_the_next_change() {
    let bus = Arc::new(FlakyBus::default());
    let h = Harness::start_local(Some(bus.clone() as Arc<dyn EventBus>), &|_| {}).await;
    let name = model_name("outbox");
    register(&*h.registry, &name, Spec::default()).await;
    register(&*h.registry, &name, Spec::default()).await;
    let mut consumer = h.events().await;
    let mut client = h.client.clone();

    bus.down.store(true, Ordering::SeqCst);
    let first = client
        .set_alias(promote(&name, 1))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    // Recorded although not published: the audit log has it.
    let log = audit_of(&mut client, &name).await;
    assert_eq!(log.len(), 1);
    // Nothing was published: a marker sent now is the first record of the topic.
    bus.down.store(false, Ordering::SeqCst);
    bus.inner
        .publish(&h.topic, Record::new(b"marker".to_vec(), b"1".to_vec()))
        .await
        .unwrap();
    let marker = stockcast_bus::conformance::recv(&mut *consumer).await;
    assert_eq!(marker.key.as_ref(), b"marker");

    let second = client
        .set_alias(promote(&name, 2))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    let events: Vec<ModelEvent> = stockcast_bus::conformance::recv_n(&mut *consumer, 2)
        .await
        .iter()
        .map(|m| m.decode().unwrap())
        .collect();
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.audit_id, e.from_version, e.to_version))
        .collect();
    assert_eq!(
        got,
        vec![(first.id, 0, 1), (second.id, 1, 2)],
        "in audit order"
    );
    h.stop().await;
}
