//! The batch consume loop every consuming service runs: read a batch, prepare it, publish
//! its dead letters, apply it, commit its offsets — at least once, and stopped by shutdown.
//!
//! [`consume_batches`] drives a [`BatchHandler`]:
//!
//! 1. wait for the first record, then take more until `batch_max` records or `batch_wait`
//!    passed (a read error ends the batch early; it shows again on the next read);
//! 2. [`BatchHandler::prepare`] turns the records into work and dead letters (records that
//!    can never be processed: they are not retried);
//! 3. the dead letters are published, one acknowledged publish per dead-letter topic, once
//!    per batch and before any effect of the batch, retried until the bus takes them;
//! 4. [`BatchHandler::apply`] makes the batch's effects; a [`ApplyError::Transient`] failure
//!    retries the same prepared batch as a whole, a [`ApplyError::Fatal`] one ends the loop
//!    without committing;
//! 5. the offsets of the whole batch are committed. A failed commit is logged and the batch
//!    is delivered again later, so `apply` must be idempotent.
//!
//! Retries wait with the [`Backoff`] of [`ConsumeSettings`]. Shutdown is honoured at every
//! wait (for records, before a retry) and never inside `apply`: the batch in hand is
//! finished and committed, or — when shutdown comes during a retry wait — left uncommitted
//! for the next member of the group.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::trace::TraceContextExt as _;
use stockcast_runtime::Shutdown;
use stockcast_runtime::retry::{Backoff, sleep_unless};
use tokio::time::Instant;
use tracing::{Instrument as _, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::record::{Message, Offsets, Record};
use crate::{BusError, Consumer, DeadLetter, EventBus, dead_letter_topic};

/// How [`consume_batches`] batches and retries.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeSettings {
    /// Most records per batch.
    pub batch_max: usize,
    /// Longest wait for a batch to fill once its first record arrived.
    pub batch_wait: Duration,
    /// Waits before retrying a read, a dead-letter publish or a transient apply failure.
    pub retry: Backoff,
}

/// A prepared batch: the handler's work and the records to dead-letter, by topic.
#[derive(Debug, Default)]
pub struct Prepared<W> {
    /// What [`BatchHandler::apply`] gets.
    pub work: W,
    /// Dead-letter records by dead-letter topic.
    pub dead_letters: BTreeMap<String, Vec<Record>>,
}

impl<W> Prepared<W> {
    /// A batch of `work` with no dead letters yet.
    pub fn new(work: W) -> Self {
        Self {
            work,
            dead_letters: BTreeMap::new(),
        }
    }

    /// Dead-letters the consumed `message` on its topic's dead-letter topic.
    pub fn dead_letter(&mut self, message: &Message, letter: DeadLetter, group: &str) {
        self.dead_letters
            .entry(dead_letter_topic(&message.topic))
            .or_default()
            .push(letter.for_consumed(message, group));
    }

    /// Number of dead letters.
    pub fn dead_letter_count(&self) -> usize {
        self.dead_letters.values().map(Vec::len).sum()
    }
}

/// Why applying a batch failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyError<E> {
    /// Worth retrying: the batch is applied again, as a whole, after a backoff.
    Transient(E),
    /// Not worth retrying: the loop ends with this error, the batch uncommitted.
    Fatal(E),
}

/// How [`consume_batches`] ended other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError<E> {
    /// The consumer was closed.
    #[error("event bus: {0}")]
    Bus(BusError),
    /// `apply` failed fatally.
    #[error("applying a batch: {0}")]
    Apply(E),
}

/// What a consuming service does with a batch. The hooks let it keep its own metrics.
#[async_trait]
pub trait BatchHandler: Send {
    /// The prepared form of a batch, applied (possibly several times) by [`Self::apply`].
    type Work: Send + Sync;
    /// Why `apply` failed.
    type Error: std::fmt::Display + Send;

    /// Decodes and checks a batch: the work, and the records that go to dead-letter topics.
    fn prepare(&mut self, batch: &[Message]) -> Prepared<Self::Work>;

    /// Makes the batch's effects durable. Must be idempotent: a batch may be applied again
    /// after a transient failure, a failed commit or a crash.
    async fn apply(&mut self, work: &Self::Work) -> Result<(), ApplyError<Self::Error>>;

    /// The span the dead-letter publish and `apply` run in; [`batch_span_parent`] parents
    /// it on the records' producers. None by default.
    fn span(&self, _batch: &[Message]) -> tracing::Span {
        tracing::Span::none()
    }

    /// Reading records failed (they stay in the group; the read is retried).
    fn consume_failed(&mut self, _error: &BusError) {}

    /// A transient `apply` failure is about to be retried.
    fn apply_retried(&mut self, _error: &Self::Error) {}

    /// A batch of `records` records was committed.
    fn committed(&mut self, _records: usize) {}
}

/// Consumes with `consumer` into `handler` until `shutdown` fires (`Ok`), the consumer is
/// closed or `apply` fails fatally. Dead letters are published on `bus`.
pub async fn consume_batches<H: BatchHandler + ?Sized>(
    bus: &dyn EventBus,
    consumer: &mut dyn Consumer,
    handler: &mut H,
    settings: &ConsumeSettings,
    shutdown: &Shutdown,
) -> Result<(), ConsumeError<H::Error>> {
    let mut read_failures: u32 = 0;
    loop {
        let batch = tokio::select! {
            biased;
            () = shutdown.wait() => return Ok(()),
            batch = next_batch(consumer, settings) => batch,
        };
        let batch = match batch {
            Ok(batch) => {
                read_failures = 0;
                batch
            }
            Err(BusError::Closed) => return Err(ConsumeError::Bus(BusError::Closed)),
            Err(e) => {
                // Broker trouble: nothing was taken from the consumer, so nothing is lost;
                // wait and read again.
                handler.consume_failed(&e);
                let wait = settings.retry.delay(read_failures);
                read_failures = read_failures.saturating_add(1);
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "consuming failed; retrying");
                if !sleep_unless(shutdown, wait).await {
                    return Ok(());
                }
                continue;
            }
        };
        let span = handler.span(&batch);
        let prepared = handler.prepare(&batch);
        let mut attempt: u32 = 0;
        while !prepared.dead_letters.is_empty() {
            match publish_dead_letters(bus, &prepared.dead_letters)
                .instrument(span.clone())
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    let wait = settings.retry.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "dead-letter publish failed; retrying");
                    if !sleep_unless(shutdown, wait).await {
                        return Ok(());
                    }
                }
            }
        }
        let mut attempt: u32 = 0;
        loop {
            match handler.apply(&prepared.work).instrument(span.clone()).await {
                Ok(()) => break,
                Err(ApplyError::Fatal(e)) => return Err(ConsumeError::Apply(e)),
                Err(ApplyError::Transient(e)) => {
                    handler.apply_retried(&e);
                    let wait = settings.retry.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "applying a batch failed; retrying");
                    if !sleep_unless(shutdown, wait).await {
                        return Ok(());
                    }
                }
            }
        }
        let mut offsets = Offsets::new();
        for m in &batch {
            offsets.track(m);
        }
        // A failed commit redelivers the batch; applying it again changes nothing.
        match consumer.commit(&offsets).await {
            Ok(()) => handler.committed(batch.len()),
            Err(e) => warn!(error = %e, "offset commit failed; the batch will be redelivered"),
        }
    }
}

/// The first record, then more until `batch_max` or `batch_wait` after the first.
async fn next_batch(
    consumer: &mut dyn Consumer,
    settings: &ConsumeSettings,
) -> Result<Vec<Message>, BusError> {
    let first = consumer.recv().await?;
    let mut batch = vec![first];
    let deadline = Instant::now() + settings.batch_wait;
    while batch.len() < settings.batch_max && Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(m),
            // Process what was taken; the error shows again on the next read.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Ok(batch)
}

/// One acknowledged publish per dead-letter topic.
async fn publish_dead_letters(
    bus: &dyn EventBus,
    letters: &BTreeMap<String, Vec<Record>>,
) -> Result<(), BusError> {
    for (topic, records) in letters {
        bus.publish_batch(topic, records.clone()).await?;
    }
    Ok(())
}

/// Most producer traces linked from one batch's span.
const MAX_LINKS: usize = 32;

/// Makes `span` a child of the first record's producer trace (so a trace shows the hop from
/// producer to consumer) and links it to the other records' traces (at most 32).
pub fn batch_span_parent(span: &tracing::Span, batch: &[Message]) {
    let mut seen = std::collections::HashSet::new();
    for (i, message) in batch.iter().enumerate() {
        let cx = message.trace_context();
        let remote = cx.span().span_context().clone();
        if !remote.is_valid() || !seen.insert(remote.trace_id()) {
            continue;
        }
        if i == 0 {
            let _ = span.set_parent(cx);
        } else if seen.len() <= MAX_LINKS {
            span.add_link(remote);
        }
    }
}
