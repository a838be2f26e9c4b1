//! The conformance suite every [`EventBus`] implementation must pass. Each case takes a bus
//! and a unique name prefix (so cases run in parallel on one broker) and panics on failure.
//! [`bus_conformance!`](crate::bus_conformance) turns the cases into tests.

#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use crate::consume::{ApplyError, BatchHandler, ConsumeError, ConsumeSettings, Prepared};
use crate::record::{Message, Offsets, Record};
use crate::{BusError, Consumer, DeadLetter, EventBus, consume_batches, dead_letter_topic};
use stockcast_proto::stockcast::events::v1::DeadLetterRecord;
use stockcast_proto::stockcast::events::v1::dead_letter_record::Origin;
use stockcast_proto::stockcast::types::v1::RejectReason;
use stockcast_runtime::Shutdown;
use stockcast_runtime::retry::Backoff;

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

/// A payload the loop cases dead-letter.
const BAD: u8 = 0xFF;

/// A [`BatchHandler`] that records what the loop asks of it. Work is the batch's first
/// payload bytes; a `BAD` payload is dead-lettered.
struct Recorder {
    group: String,
    shutdown: Shutdown,
    /// Shutdown fires once this many records were committed.
    stop_after: usize,
    /// Apply fails transiently this many times (from the first call) before succeeding.
    transient: usize,
    /// The first apply fails fatally.
    fatal: bool,
    /// Shutdown fires when a retry is about to wait.
    stop_on_retry: bool,
    /// Consumer of the dead-letter topic: the batch's dead letter is read in `apply`.
    dlq: Option<Box<dyn Consumer>>,
    letter_pending: bool,
    letters_seen_in_apply: Vec<DeadLetterRecord>,
    /// The work of every apply call, in order, and whether it succeeded.
    applies: Vec<(Vec<u8>, bool)>,
    retries: usize,
    commits: usize,
    committed: usize,
}

impl Recorder {
    fn new(group: &str, stop_after: usize) -> Self {
        Self {
            group: group.to_owned(),
            shutdown: Shutdown::new(),
            stop_after,
            transient: 0,
            fatal: false,
            stop_on_retry: false,
            dlq: None,
            letter_pending: false,
            letters_seen_in_apply: Vec::new(),
            applies: Vec::new(),
            retries: 0,
            commits: 0,
            committed: 0,
        }
    }

    /// Every payload applied successfully, sorted.
    fn applied(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self
            .applies
            .iter()
            .filter(|(_, ok)| *ok)
            .flat_map(|(work, _)| work.iter().copied())
            .collect();
        out.sort_unstable();
        out
    }
}

#[async_trait::async_trait]
impl BatchHandler for Recorder {
    type Work = Vec<u8>;
    type Error = String;

    fn prepare(&mut self, batch: &[Message]) -> Prepared<Vec<u8>> {
        let mut prepared = Prepared::new(Vec::new());
        for message in batch {
            if message.payload.as_ref() == [BAD] {
                let letter = DeadLetter::new("conformance", RejectReason::Malformed, "bad");
                prepared.dead_letter(message, letter, &self.group);
                self.letter_pending = true;
            } else {
                prepared.work.push(message.payload[0]);
            }
        }
        prepared
    }

    async fn apply(&mut self, work: &Vec<u8>) -> Result<(), ApplyError<String>> {
        if self.letter_pending
            && let Some(dlq) = self.dlq.as_mut()
        {
            // Published before apply, so it is there to read.
            let letter = recv(dlq.as_mut()).await.decode().expect("dead letter");
            self.letters_seen_in_apply.push(letter);
            self.letter_pending = false;
        }
        let outcome = if self.fatal {
            self.fatal = false;
            Err(ApplyError::Fatal("fatal".to_owned()))
        } else if self.transient > 0 {
            self.transient -= 1;
            Err(ApplyError::Transient("transient".to_owned()))
        } else {
            Ok(())
        };
        self.applies.push((work.clone(), outcome.is_ok()));
        outcome
    }

    fn apply_retried(&mut self, _error: &String) {
        self.retries += 1;
        if self.stop_on_retry {
            self.shutdown.trigger();
        }
    }

    fn consume_failed(&mut self, error: &BusError) {
        panic!("consuming failed: {error}");
    }

    fn committed(&mut self, records: usize) {
        self.commits += 1;
        self.committed += records;
        if self.committed >= self.stop_after {
            self.shutdown.trigger();
        }
    }
}

/// Runs the loop on a new member of `group` until the handler stops it, or panics when it
/// does not end within two [`RECV_TIMEOUT`]s.
async fn drive(
    bus: &dyn EventBus,
    topic: &str,
    handler: &mut Recorder,
    retry: Backoff,
) -> Result<(), ConsumeError<String>> {
    let settings = ConsumeSettings {
        batch_max: 100,
        batch_wait: Duration::from_millis(200),
        retry,
    };
    let mut consumer = bus
        .subscribe(&handler.group, &[topic])
        .await
        .expect("subscribe");
    let shutdown = handler.shutdown.clone();
    tokio::time::timeout(
        RECV_TIMEOUT * 2,
        consume_batches(bus, consumer.as_mut(), handler, &settings, &shutdown),
    )
    .await
    .expect("the consume loop did not stop")
}

fn quick_retry() -> Backoff {
    Backoff::new(Duration::from_millis(1), Duration::from_millis(10)).expect("backoff")
}

/// The next record a new member of `group` receives, after publishing `next` so that there
/// is one: `next` itself when everything before it was committed.
async fn next_for_group(bus: &dyn EventBus, topic: &str, group: &str, next: u8) -> u8 {
    bus.publish(topic, Record::new("AAPL", vec![next]))
        .await
        .expect("publish");
    let mut consumer = bus.subscribe(group, &[topic]).await.expect("subscribe");
    recv(consumer.as_mut()).await.payload[0]
}

/// The consume loop commits a batch only after `apply` succeeded: a batch whose apply
/// failed fatally is delivered again to the next member, which applies and commits it.
pub async fn consume_commits_only_after_apply(bus: &dyn EventBus) {
    let (topic, group) = setup(bus, "consume-commit", 1).await;
    for i in 0..3u8 {
        bus.publish(&topic, Record::new("AAPL", vec![i]))
            .await
            .expect("publish");
    }
    let mut failing = Recorder::new(&group, usize::MAX);
    failing.fatal = true;
    let result = drive(bus, &topic, &mut failing, quick_retry()).await;
    assert!(
        matches!(result, Err(ConsumeError::Apply(ref e)) if e == "fatal"),
        "a fatal apply ends the loop with its error, got {result:?}"
    );
    assert_eq!(failing.commits, 0, "nothing committed after a failed apply");
    assert_eq!(failing.applies.len(), 1, "a fatal failure is not retried");

    let mut working = Recorder::new(&group, 3);
    drive(bus, &topic, &mut working, quick_retry())
        .await
        .expect("loop");
    assert_eq!(
        working.applied(),
        vec![0, 1, 2],
        "the uncommitted batch is delivered again"
    );
    assert_eq!(next_for_group(bus, &topic, &group, 3).await, 3);
}

/// A transient apply failure retries the same prepared batch, which is committed once.
pub async fn consume_retries_transient_failures_and_commits_once(bus: &dyn EventBus) {
    let (topic, group) = setup(bus, "consume-retry", 1).await;
    for i in 0..3u8 {
        bus.publish(&topic, Record::new("AAPL", vec![i]))
            .await
            .expect("publish");
    }
    let mut handler = Recorder::new(&group, 3);
    handler.transient = 2;
    drive(bus, &topic, &mut handler, quick_retry())
        .await
        .expect("loop");
    assert_eq!(handler.retries, 2);
    let first = &handler.applies[0].0;
    assert_eq!(
        handler.applies[..3]
            .iter()
            .map(|(work, ok)| (work, *ok))
            .collect::<Vec<_>>(),
        vec![(first, false), (first, false), (first, true)],
        "the same batch is applied again until it succeeds"
    );
    assert_eq!(handler.applied(), vec![0, 1, 2], "each record applied once");
    assert_eq!(
        handler.commits,
        handler.applies.len() - 2,
        "one commit per batch"
    );
    assert_eq!(next_for_group(bus, &topic, &group, 3).await, 3);
}

/// Dead letters are published once per batch and before `apply` runs, also when `apply`
/// is retried; the batch's other records are applied.
pub async fn consume_publishes_dead_letters_before_apply(bus: &dyn EventBus) {
    let (topic, group) = setup(bus, "consume-dlq", 1).await;
    let dlq = dead_letter_topic(&topic);
    bus.ensure_topic(&dlq, 1).await.expect("ensure dlq");
    for payload in [0, BAD, 1] {
        bus.publish(&topic, Record::new("AAPL", vec![payload]))
            .await
            .expect("publish");
    }
    let mut handler = Recorder::new(&group, 3);
    handler.transient = 1;
    handler.dlq = Some(
        bus.subscribe(&format!("{group}-dlq"), &[&dlq])
            .await
            .expect("subscribe dlq"),
    );
    drive(bus, &topic, &mut handler, quick_retry())
        .await
        .expect("loop");
    assert_eq!(handler.applied(), vec![0, 1]);
    assert_eq!(handler.letters_seen_in_apply.len(), 1);
    let letter = &handler.letters_seen_in_apply[0];
    assert_eq!(letter.payload, vec![BAD]);
    assert_eq!(letter.reason_code, RejectReason::Malformed as i32);
    let mut dlq_consumer = handler.dlq.take().expect("dlq consumer");
    assert_quiet(dlq_consumer.as_mut(), Duration::from_millis(500)).await;
}

/// Shutdown during the wait before a retry ends the loop at once, without committing: the
/// batch goes to the next member.
pub async fn consume_stops_during_retry_wait_without_commit(bus: &dyn EventBus) {
    let (topic, group) = setup(bus, "consume-stop", 1).await;
    bus.publish(&topic, Record::new("AAPL", vec![0]))
        .await
        .expect("publish");
    let mut handler = Recorder::new(&group, usize::MAX);
    handler.transient = usize::MAX;
    handler.stop_on_retry = true;
    // A wait far longer than the loop may take: only shutdown ends it.
    let hour = Duration::from_secs(3600);
    let retry = Backoff::new(hour, hour).expect("backoff");
    drive(bus, &topic, &mut handler, retry)
        .await
        .expect("shutdown is not an error");
    assert_eq!(handler.retries, 1);
    assert_eq!(handler.commits, 0);
    assert_eq!(next_for_group(bus, &topic, &group, 1).await, 0);
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
            consume_commits_only_after_apply,
            consume_retries_transient_failures_and_commits_once,
            consume_publishes_dead_letters_before_apply,
            consume_stops_during_retry_wait_without_commit,
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
