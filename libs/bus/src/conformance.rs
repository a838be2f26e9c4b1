//! The conformance suite every [`EventBus`] implementation must pass. Each case takes a bus
//! and a unique name prefix (so cases run in parallel on one broker) and panics on failure.
//! [`bus_conformance!`](crate::bus_conformance) turns the cases into tests.

#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use crate::record::{Message, Offsets, Record};
use crate::{Consumer, DeadLetter, EventBus, dead_letter_topic};
use stockcast_proto::stockcast::events::v1::DeadLetterRecord;
use stockcast_proto::stockcast::events::v1::dead_letter_record::Origin;
use stockcast_proto::stockcast::types::v1::RejectReason;

/// Longest wait for one record; generous because a Kafka group join takes seconds.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(30);

/// A unique topic and group name for one case.
pub fn names(case: &str) -> (String, String) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    (
        format!("stockcast.test-{case}-{}.v1", &id[..12]),
        format!("test-{case}-{}", &id[..12]),
    )
}

/// Receives one record or panics after [`RECV_TIMEOUT`].
pub async fn recv(consumer: &mut dyn Consumer) -> Message {
    match tokio::time::timeout(RECV_TIMEOUT, consumer.recv()).await {
        Ok(Ok(message)) => message,
        Ok(Err(error)) => panic!("recv failed: {error}"),
        Err(_) => panic!("no record within {RECV_TIMEOUT:?}"),
    }
}

/// Receives `n` records.
pub async fn recv_n(consumer: &mut dyn Consumer, n: usize) -> Vec<Message> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(recv(consumer).await);
    }
    out
}

/// Asserts that nothing arrives within `wait`.
pub async fn assert_quiet(consumer: &mut dyn Consumer, wait: Duration) {
    if let Ok(result) = tokio::time::timeout(wait, consumer.recv()).await {
        panic!("expected no record, got {result:?}");
    }
}

async fn setup(bus: &dyn EventBus, case: &str, partitions: i32) -> (String, String) {
    let (topic, group) = names(case);
    bus.ensure_topic(&topic, partitions)
        .await
        .unwrap_or_else(|e| panic!("ensure_topic {topic}: {e}"));
    (topic, group)
}

/// Key, payload and headers arrive as published; the payload type header is set by
/// [`Record::proto`].
pub async fn roundtrip_preserves_key_payload_and_headers(bus: &dyn EventBus) {
    let (topic, group) = setup(bus, "roundtrip", 1).await;
    let letter = DeadLetterRecord {
        reason: "x".to_owned(),
        ..Default::default()
    };
    let record = Record::proto("AAPL", &letter).with_header("x-extra", b"42".to_vec());
    let delivery = bus.publish(&topic, record).await.expect("publish");
    let mut consumer = bus.subscribe(&group, &[&topic]).await.expect("subscribe");
    let message = recv(consumer.as_mut()).await;
    assert_eq!(message.topic, topic);
    assert_eq!(message.partition, delivery.partition);
    assert_eq!(message.offset, delivery.offset);
    assert_eq!(message.key.as_ref(), b"AAPL");
    assert_eq!(
        message.decode::<DeadLetterRecord>().expect("decode"),
        letter
    );
    assert_eq!(
        message.message_type(),
        Some("stockcast.events.v1.DeadLetterRecord")
    );
    assert_eq!(message.header("x-extra"), Some(&b"42"[..]));
}

/// Records with one key arrive in publish order, across a batch of interleaved keys.
pub async fn per_key_order_is_kept(bus: &dyn EventBus) {
    let (topic, group) = setup(bus, "order", 3).await;
    let symbols = ["AAPL", "MSFT", "GOOG", "NVDA"];
    let records: Vec<_> = (0..200u32)
        .map(|i| {
            Record::new(
                symbols[i as usize % symbols.len()],
                i.to_be_bytes().to_vec(),
            )
        })
        .collect();
    let deliveries = bus
        .publish_batch(&topic, records)
        .await
        .expect("publish_batch");
    assert_eq!(deliveries.len(), 200);
    let mut consumer = bus.subscribe(&group, &[&topic]).await.expect("subscribe");
    let mut seen: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
    for message in recv_n(consumer.as_mut(), 200).await {
        let value = u32::from_be_bytes(message.payload.as_ref().try_into().expect("4 bytes"));
        seen.entry(message.key.to_vec()).or_default().push(value);
    }
    for (key, values) in &seen {
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "key {:?} out of order: {values:?}",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(seen.values().map(Vec::len).sum::<usize>(), 200);
}

/// A consumer that stops without committing leaves its records to the next member: they
/// are delivered again. What was committed is not.
pub async fn uncommitted_records_are_redelivered(bus: &dyn EventBus) {
    let (topic, group) = setup(bus, "redeliver", 1).await;
    for i in 0..6u8 {
        bus.publish(&topic, Record::new("AAPL", vec![i]))
            .await
            .expect("publish");
    }
    {
        let mut first = bus.subscribe(&group, &[&topic]).await.expect("subscribe");
        let got = recv_n(first.as_mut(), 4).await;
        assert_eq!(payloads(&got), vec![0, 1, 2, 3]);
        // Only the first two are processed durably; the member dies before committing more.
        first.commit(&Offsets::of(&got[1])).await.expect("commit");
    }
    let mut second = bus
        .subscribe(&group, &[&topic])
        .await
        .expect("subscribe again");
    let got = recv_n(second.as_mut(), 4).await;
    assert_eq!(
        payloads(&got),
        vec![2, 3, 4, 5],
        "resumes after the committed offset"
    );
}

/// A committed group resumes exactly after its commit and sees new records.
pub async fn committed_group_resumes_after_commit(bus: &dyn EventBus) {
    let (topic, group) = setup(bus, "resume", 1).await;
    for i in 0..3u8 {
        bus.publish(&topic, Record::new("MSFT", vec![i]))
            .await
            .expect("publish");
    }
    {
        let mut consumer = bus.subscribe(&group, &[&topic]).await.expect("subscribe");
        let got = recv_n(consumer.as_mut(), 3).await;
        let mut offsets = Offsets::new();
        got.iter().for_each(|m| offsets.track(m));
        consumer.commit(&offsets).await.expect("commit");
    }
    bus.publish(&topic, Record::new("MSFT", vec![3]))
        .await
        .expect("publish");
    let mut consumer = bus
        .subscribe(&group, &[&topic])
        .await
        .expect("subscribe again");
    let got = recv(consumer.as_mut()).await;
    assert_eq!(got.payload.as_ref(), &[3]);
    assert_quiet(consumer.as_mut(), Duration::from_millis(500)).await;
}

/// Two groups each receive every record.
pub async fn every_group_gets_every_record(bus: &dyn EventBus) {
    let (topic, group) = setup(bus, "groups", 2).await;
    for i in 0..10u8 {
        bus.publish(&topic, Record::new(format!("S{i}"), vec![i]))
            .await
            .expect("publish");
    }
    for suffix in ["a", "b"] {
        let mut consumer = bus
            .subscribe(&format!("{group}-{suffix}"), &[&topic])
            .await
            .expect("subscribe");
        let mut got = payloads(&recv_n(consumer.as_mut(), 10).await);
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<u8>>(), "group {suffix}");
    }
}

/// A dead-lettered record lands on the dead-letter topic with its reason, origin and
/// original bytes.
pub async fn dead_letter_keeps_reason_and_original(bus: &dyn EventBus) {
    let (topic, group) = setup(bus, "dlq", 1).await;
    let dlq = dead_letter_topic(&topic);
    bus.ensure_topic(&dlq, 1).await.expect("ensure dlq");
    bus.publish(&topic, Record::new("TSLA", b"not a bar".to_vec()))
        .await
        .expect("publish");
    let mut consumer = bus.subscribe(&group, &[&topic]).await.expect("subscribe");
    let message = recv(consumer.as_mut()).await;
    DeadLetter::new(
        "conformance",
        RejectReason::Malformed,
        "payload is not a Bar",
    )
    .symbol("TSLA")
    .publish_consumed(bus, &message, &group)
    .await
    .expect("dead letter");
    consumer
        .commit(&Offsets::of(&message))
        .await
        .expect("commit");

    let mut dlq_consumer = bus
        .subscribe(&format!("{group}-dlq"), &[&dlq])
        .await
        .expect("subscribe dlq");
    let letter: DeadLetterRecord = recv(dlq_consumer.as_mut()).await.decode().expect("decode");
    assert_eq!(letter.payload, b"not a bar".to_vec());
    assert_eq!(letter.reason_code, RejectReason::Malformed as i32);
    assert_eq!(letter.reason, "payload is not a Bar");
    assert_eq!(letter.symbol, "TSLA");
    match letter.origin {
        Some(Origin::Kafka(origin)) => {
            assert_eq!(origin.topic, topic);
            assert_eq!(origin.offset, message.offset);
            assert_eq!(origin.consumer_group, group);
        }
        other => panic!("expected a kafka origin, got {other:?}"),
    }
}

/// Publishing inside a span carries its W3C trace context in the headers.
pub async fn trace_context_travels_in_headers(bus: &dyn EventBus) {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    let (topic, group) = setup(bus, "trace", 1).await;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("conformance")));
    // Thread-local: the test body runs on one thread, and publishing reads the current span
    // before its first await.
    let _default = tracing::subscriber::set_default(subscriber);
    let span = tracing::info_span!("publish");
    let trace_id = span.context().span().span_context().trace_id();
    assert_ne!(
        trace_id,
        opentelemetry::trace::TraceId::INVALID,
        "span must be sampled"
    );
    {
        use tracing::Instrument;
        bus.publish(&topic, Record::new("AAPL", b"x".to_vec()))
            .instrument(span)
            .await
            .expect("publish");
    }
    let mut consumer = bus.subscribe(&group, &[&topic]).await.expect("subscribe");
    let message = recv(consumer.as_mut()).await;
    let traceparent = message
        .header("traceparent")
        .map(|v| String::from_utf8_lossy(v).into_owned());
    assert!(
        traceparent
            .as_deref()
            .is_some_and(|t| t.contains(&trace_id.to_string())),
        "traceparent {traceparent:?} does not carry trace {trace_id}"
    );
    let remote = message.trace_context();
    assert_eq!(remote.span().span_context().trace_id(), trace_id);
}

fn payloads(messages: &[Message]) -> Vec<u8> {
    messages.iter().map(|m| m.payload[0]).collect()
}

/// Generates one `#[tokio::test]` per conformance case; `$bus` is an async expression
/// yielding a value that derefs to `dyn EventBus`.
#[macro_export]
macro_rules! bus_conformance {
    ($make:expr) => {
        $crate::bus_conformance!(@cases $make;
            roundtrip_preserves_key_payload_and_headers,
            per_key_order_is_kept,
            uncommitted_records_are_redelivered,
            committed_group_resumes_after_commit,
            every_group_gets_every_record,
            dead_letter_keeps_reason_and_original,
            trace_context_travels_in_headers,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let bus = $make.await;
                $crate::conformance::$case(&*bus).await;
            }
        )*
    };
}
