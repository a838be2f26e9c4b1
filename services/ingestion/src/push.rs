//! A pushed stream of records, stored in batches while the next batch arrives.
//!
//! Only complete batches received before a break (the client goes away, a message cannot be
//! read) are stored; the open batch is dropped. Whatever stops a push, the caller learns the
//! index from which to resend, in the records' own numbering (stream position, or the
//! client's line): the index of the first record not stored, so every record received before
//! it is stored and it and every later one are not; or, when every record received is
//! stored, one past the last one's index.

use stockcast_proto::stockcast::events::v1::IngestPath;
use tokio_stream::{Stream, StreamExt};

use crate::error::Error;
use crate::ingest::{Ingestor, Item, Origin, Report};

/// Why a push stopped, and where to resend from.
#[derive(Debug)]
pub struct Stopped<E> {
    /// What stopped it.
    pub cause: Cause<E>,
    /// The index of the first record not stored (records arrive and are stored in order):
    /// resend it and everything after it. One past the last record's index when all that
    /// arrived is stored.
    pub resend_from: i64,
}

/// What stopped a push.
#[derive(Debug)]
pub enum Cause<E> {
    /// Storing a batch failed.
    Store(Error),
    /// The input broke (with the input's own error).
    Input(E),
}

impl Origin {
    /// The origin of bars pushed by the client at `location`.
    pub fn push(location: String) -> Self {
        Origin {
            source: "push".to_owned(),
            path: IngestPath::Push,
            location,
            job: None,
            chunk: None,
        }
    }
}

/// Stores the records of `messages` (each message's records with their indexes) in batches
/// of `batch_size`, and reports what they did.
pub async fn push<E, S>(
    ingestor: &Ingestor,
    batch_size: usize,
    origin: &Origin,
    mut messages: S,
) -> Result<Report, Stopped<E>>
where
    S: Stream<Item = Result<Vec<(i64, Item)>, E>> + Unpin,
{
    let batch_size = batch_size.max(1);
    // Receiving and storing overlap: one batch is stored while the next one arrives.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(i64, Item)>>(2);
    let worker_ingestor = ingestor.clone();
    let worker_origin = origin.clone();
    // Batches the worker has stored, so that a worker that panics leaves a resend point.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker_done = done.clone();
    let worker = tokio::spawn(async move {
        let mut total = Report::default();
        while let Some(batch) = rx.recv().await {
            let first = batch.first().map_or(0, |(i, _)| *i);
            match worker_ingestor.ingest(batch, &worker_origin).await {
                Ok(report) => {
                    total.add(report);
                    worker_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Err(error) => return Err((error, first)),
            }
        }
        Ok(total)
    });

    // The first index of each complete batch handed to the worker, and one past the last
    // index handed over: where to resend from once those are stored. Counting records
    // instead would be wrong as soon as indexes are lines, or unreadable records (numbered
    // by their line) sit among bars numbered by position.
    let mut firsts: Vec<i64> = Vec::new();
    let mut after_sent = 0i64;
    let mut batch = Vec::with_capacity(batch_size);
    let mut input_error = None;
    'receive: while let Some(message) = messages.next().await {
        let items = match message {
            Ok(items) => items,
            Err(error) => {
                input_error = Some(error);
                break;
            }
        };
        for item in items {
            batch.push(item);
            if batch.len() >= batch_size {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                let first = full.first().map_or(after_sent, |(i, _)| *i);
                let after = full.last().map_or(after_sent, |(i, _)| i.saturating_add(1));
                if tx.send(full).await.is_err() {
                    break 'receive;
                }
                firsts.push(first);
                after_sent = after;
            }
        }
    }
    drop(tx);
    // Where to resend from when every complete batch is stored: the open batch's first record.
    let open_first = batch.first().map_or(after_sent, |(i, _)| *i);
    let mut report = match worker.await {
        Ok(Ok(report)) => report,
        Ok(Err((error, first))) => {
            return Err(Stopped {
                cause: Cause::Store(error),
                resend_from: first,
            });
        }
        Err(join) => {
            let stored = done.load(std::sync::atomic::Ordering::SeqCst);
            return Err(Stopped {
                cause: Cause::Store(Error::Internal(format!("push worker failed: {join}"))),
                resend_from: firsts.get(stored).copied().unwrap_or(open_first),
            });
        }
    };
    if let Some(error) = input_error {
        return Err(Stopped {
            cause: Cause::Input(error),
            resend_from: open_first,
        });
    }
    // The open batch is stored here rather than by the worker: if the client cancels after
    // half-closing, this future is dropped and the batch's transaction rolls back.
    if !batch.is_empty() {
        match ingestor.ingest(batch, origin).await {
            Ok(last) => report.add(last),
            Err(error) => {
                return Err(Stopped {
                    cause: Cause::Store(error),
                    resend_from: open_first,
                });
            }
        }
    }
    Ok(report)
}
