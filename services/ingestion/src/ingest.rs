//! The path every bar takes: validate, dead-letter what fails, store and publish what passes.
//!
//! Order of effects for one batch, chosen so that an acknowledged batch is durable in both
//! places and a crash at any point loses nothing:
//! 1. rejected bars are published to the dead-letter topic (acked);
//! 2. valid bars are upserted in an open transaction (with the backfill chunk marker, if any);
//! 3. events for new and corrected bars are published (acked);
//! 4. the transaction commits; only then is the batch reported as accepted.
//!
//! A crash between 3 and 4 rolls the rows back while the events are out: the retried batch
//! stores the rows and publishes the same events again (same natural key, revision and values;
//! only `ingested_at` differs), which consumers ignore. Events are at-least-once; rows are
//! exactly-once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use stockcast_bus::{DeadLetter, EventBus, Record, dead_letter_topic};
use stockcast_market::convert::seconds_to_proto;
use stockcast_market::sources::Unreadable;
use stockcast_market::{Bar, Rejection, Validator};
use stockcast_proto::stockcast::events::v1::{ComponentOrigin, IngestPath, MarketBarEvent};
use stockcast_proto::stockcast::types::v1::Bar as ProtoBar;
use stockcast_runtime::clock::SharedClock;
use uuid::Uuid;

use crate::SERVICE;
use crate::error::Error;
use crate::metrics;
use crate::store::BarStore;

/// What storing one bar did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A bar not seen before.
    Inserted,
    /// The same bar with the same values: nothing changed.
    Unchanged,
    /// The same bar with other values: stored as a new revision, the old values recorded.
    Corrected {
        /// The values it replaced.
        previous: Bar,
        /// The new revision, ≥ 1.
        revision: i32,
    },
}

/// Counts of what a batch or a job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// New bars.
    pub accepted: i64,
    /// Bars refused by validation (and sent to the dead-letter topic).
    pub rejected: i64,
    /// Bars already stored with the same values.
    pub duplicate: i64,
    /// Bars stored as corrections.
    pub corrected: i64,
}

impl Counts {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Counts) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.duplicate += other.duplicate;
        self.corrected += other.corrected;
    }

    /// Counts one outcome.
    pub fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Inserted => self.accepted += 1,
            Outcome::Unchanged => self.duplicate += 1,
            Outcome::Corrected { .. } => self.corrected += 1,
        }
    }
}

/// A stored bar with its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBar {
    /// The bar.
    pub bar: Bar,
    /// Source it came from.
    pub source: String,
    /// 0 for the first version, n after n corrections.
    pub revision: i32,
}

/// One input record of a batch.
#[derive(Debug, Clone)]
pub enum Item {
    /// A bar to validate.
    Bar(Bar),
    /// A pushed bar to validate, with the message as the client sent it (dead-lettered byte
    /// for byte if the bar is rejected).
    Pushed(Bar, ProtoBar),
    /// A bar read from input, with the input (dead-lettered as read if rejected).
    Read {
        /// The bar.
        bar: Bar,
        /// The CSV line or JSON entry.
        payload: Vec<u8>,
        /// Its media type.
        payload_type: &'static str,
    },
    /// A record that failed before validation (unparsable input, bad enum), kept intact.
    Invalid {
        /// Original bytes.
        payload: Vec<u8>,
        /// Type of the bytes.
        payload_type: String,
        /// Symbol, when readable.
        symbol: String,
        /// What is wrong.
        rejection: Rejection,
    },
}

impl From<Unreadable> for Item {
    fn from(record: Unreadable) -> Self {
        Item::Invalid {
            payload: record.payload,
            payload_type: record.payload_type.to_owned(),
            symbol: record.symbol,
            rejection: record.rejection,
        }
    }
}

/// The input a bar was read from, kept until validation.
enum Original {
    None,
    Pushed(ProtoBar),
    Read(Vec<u8>, &'static str),
}

impl Original {
    /// What a rejected bar is dead-lettered as: the input as received, else the bar itself.
    fn into_payload(self, bar: &Bar, source: &str) -> (Vec<u8>, String) {
        let proto = <ProtoBar as prost::Name>::full_name;
        match self {
            Original::Pushed(original) => (prost::Message::encode_to_vec(&original), proto()),
            Original::Read(payload, payload_type) => (payload, payload_type.to_owned()),
            Original::None => (
                prost::Message::encode_to_vec(&bar.to_proto(source)),
                proto(),
            ),
        }
    }
}

/// Where a batch comes from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Source name written on stored bars and events (`push`, `csv`, `alpha_vantage`, …).
    pub source: String,
    /// Push or backfill.
    pub path: IngestPath,
    /// Input location for dead letters (client, file, request without API key).
    pub location: String,
    /// The backfill job the batch belongs to, if any.
    pub job: Option<Uuid>,
    /// The backfill chunk this batch completes, if any.
    pub chunk: Option<ChunkMark>,
}

/// Marks a backfill chunk done in the same transaction as its last batch.
#[derive(Debug, Clone)]
pub struct ChunkMark {
    /// The job.
    pub job: Uuid,
    /// The chunk's key.
    pub key: String,
    /// Counts of the chunk's earlier batches, added to this batch's.
    pub counts_before: Counts,
}

/// A rejected record, as reported to a pushing client.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Position of the record in its input (stream index, CSV line).
    pub index: i64,
    /// Symbol, when readable.
    pub symbol: String,
    /// What was wrong.
    pub rejection: Rejection,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Counts by outcome.
    pub counts: Counts,
    /// Every rejected record.
    pub rejected: Vec<Rejected>,
}

impl Report {
    /// Adds what `other` did.
    pub fn add(&mut self, other: Report) {
        self.counts.add(&other.counts);
        self.rejected.extend(other.rejected);
    }
}

/// What a status check found: the error of each dependency that did not answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// The database's error.
    pub database: Option<String>,
    /// The event bus's error.
    pub bus: Option<String>,
}

/// Runs batches through validation, the store and the bus. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ingestor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn BarStore>,
    bus: Arc<dyn EventBus>,
    validator: Validator,
    clock: SharedClock,
    topic: String,
    dead_letters: String,
    accepted_total: AtomicI64,
    rejected_total: AtomicI64,
    last_published: AtomicI64,
}

impl Ingestor {
    /// An ingestor publishing bars on `topic` and rejects on its dead-letter topic; `clock`
    /// dates ingestion and decides which bars are still unfinished.
    pub fn new(
        store: Arc<dyn BarStore>,
        bus: Arc<dyn EventBus>,
        validator: Validator,
        topic: &str,
        clock: SharedClock,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                bus,
                validator,
                clock,
                topic: topic.to_owned(),
                dead_letters: dead_letter_topic(topic),
                accepted_total: AtomicI64::new(0),
                rejected_total: AtomicI64::new(0),
                last_published: AtomicI64::new(0),
            }),
        }
    }

    /// The bars topic.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// The dead-letter topic.
    pub fn dead_letter_topic(&self) -> &str {
        &self.inner.dead_letters
    }

    /// The store.
    pub(crate) fn store(&self) -> &Arc<dyn BarStore> {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Whether the database and the bus answer: the error of each that does not.
    pub async fn health(&self) -> Health {
        let (database, bus) = tokio::join!(self.inner.store.ping(), self.inner.bus.ping());
        Health {
            database: database.err().map(|e| e.to_string()),
            bus: bus.err().map(|e| e.to_string()),
        }
    }

    /// Totals since start: (accepted incl. corrections, rejected, last publish time in s).
    pub fn totals(&self) -> (i64, i64, i64) {
        (
            self.inner.accepted_total.load(Ordering::Relaxed),
            self.inner.rejected_total.load(Ordering::Relaxed),
            self.inner.last_published.load(Ordering::Relaxed),
        )
    }

    /// Processes one batch; `first_index` is the input position of `items[0]`. Returns once
    /// every effect is durable. On error nothing of the batch's bars is stored.
    pub async fn ingest(&self, items: Vec<(i64, Item)>, origin: &Origin) -> Result<Report, Error> {
        let inner = &self.inner;
        let now = inner.clock.now_seconds();
        let mut report = Report::default();
        let mut valid = Vec::with_capacity(items.len());
        let mut dead = Vec::new();
        for (index, item) in items {
            let (bar, original) = match item {
                Item::Bar(bar) => (bar, Original::None),
                Item::Pushed(bar, original) => (bar, Original::Pushed(original)),
                Item::Read {
                    bar,
                    payload,
                    payload_type,
                } => (bar, Original::Read(payload, payload_type)),
                Item::Invalid {
                    payload,
                    payload_type,
                    symbol,
                    rejection,
                } => {
                    dead.push(self.dead_letter(
                        index,
                        &symbol,
                        &rejection,
                        payload,
                        payload_type,
                        origin,
                    ));
                    report.rejected.push(Rejected {
                        index,
                        symbol: stockcast_market::cut(&symbol).to_owned(),
                        rejection,
                    });
                    continue;
                }
            };
            let Err(rejection) = inner.validator.check(&bar, now) else {
                valid.push(bar);
                continue;
            };
            let (payload, payload_type) = original.into_payload(&bar, &origin.source);
            dead.push(self.dead_letter(
                index,
                &bar.symbol,
                &rejection,
                payload,
                payload_type,
                origin,
            ));
            report.rejected.push(Rejected {
                index,
                symbol: stockcast_market::cut(&bar.symbol).to_owned(),
                rejection,
            });
        }
        report.counts.rejected = report.rejected.len() as i64;
        for rejected in &report.rejected {
            metrics::rejected(rejected.rejection.code);
        }
        if !dead.is_empty() {
            inner.bus.publish_batch(&inner.dead_letters, dead).await?;
        }

        let mut tx = inner.store.begin().await?;
        let outcomes = if valid.is_empty() {
            Vec::new()
        } else {
            tx.upsert(&valid, &origin.source).await?
        };
        let ingested_at = seconds_to_proto(now);
        let job_id = origin.job.map(|id| id.to_string()).unwrap_or_default();
        let mut events = Vec::with_capacity(valid.len());
        for (bar, outcome) in valid.iter().zip(&outcomes) {
            report.counts.count(outcome);
            let (revision, previous) = match outcome {
                Outcome::Inserted => (0, None),
                Outcome::Unchanged => continue,
                Outcome::Corrected { previous, revision } => {
                    (*revision, Some(previous.to_proto(&origin.source)))
                }
            };
            let event = MarketBarEvent {
                bar: Some(bar.to_proto(&origin.source)),
                ingested_at: Some(ingested_at),
                ingest_path: origin.path as i32,
                backfill_job_id: job_id.clone(),
                revision,
                previous,
            };
            events.push(Record::proto(bar.symbol.clone(), &event));
        }
        if let Some(mark) = &origin.chunk {
            let mut counts = mark.counts_before;
            counts.add(&report.counts);
            tx.chunk_done(mark.job, &mark.key, &counts).await?;
        }
        if !events.is_empty() {
            inner.bus.publish_batch(&inner.topic, events).await?;
            inner.last_published.store(now, Ordering::Relaxed);
        }
        tx.commit().await?;

        metrics::counted(&report.counts, origin.path);
        inner.accepted_total.fetch_add(
            report.counts.accepted + report.counts.corrected,
            Ordering::Relaxed,
        );
        inner
            .rejected_total
            .fetch_add(report.counts.rejected, Ordering::Relaxed);
        Ok(report)
    }

    fn dead_letter(
        &self,
        index: i64,
        symbol: &str,
        rejection: &Rejection,
        payload: Vec<u8>,
        payload_type: impl Into<String>,
        origin: &Origin,
    ) -> Record {
        let input = match origin.path {
            IngestPath::Push => "push",
            _ => origin.source.as_str(),
        };
        let component = ComponentOrigin {
            input: input.to_owned(),
            location: origin.location.clone(),
            index,
            backfill_job_id: origin.job.map(|id| id.to_string()).unwrap_or_default(),
        };
        DeadLetter::new(SERVICE, rejection.code, rejection.reason.clone())
            .field(rejection.field)
            .symbol(stockcast_market::cut(symbol))
            .for_input(component, payload, &payload_type.into())
    }
}
