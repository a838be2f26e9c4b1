//! A pushed stream of records, stored in batches while the next batch arrives.
//!
//! Only complete batches received before a break (the client goes away, a message cannot be
//! read) are stored; the open batch is dropped. Whatever stops a push, the caller learns the
//! index from which to resend: every record before it is stored.

use stockcast_proto::stockcast::events::v1::IngestPath;
use tokio_stream::{Stream, StreamExt};

use crate::error::Error;
use crate::ingest::{Ingestor, Item, Origin, Report};

/// Why a push stopped, and where to resend from.
#[derive(Debug)]
pub struct Stopped<E> {
    /// What stopped it.
    pub cause: Cause<E>,
    /// Records before this index are stored; resend from here.
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
    let worker = tokio::spawn(async move {
        let mut total = Report::default();
        let mut stored = 0i64;
        while let Some(batch) = rx.recv().await {
            let first = batch.first().map_or(stored, |(i, _)| *i);
            match worker_ingestor.ingest(batch, &worker_origin).await {
                Ok(report) => {
                    total.add(report);
                    stored = first;
                }
                Err(error) => return Err((error, first)),
            }
        }
        Ok(total)
    });

    // `sent` counts the records of complete batches handed to the worker.
    let mut sent = 0i64;
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
                let size = full.len() as i64;
                if tx.send(full).await.is_err() {
                    break 'receive;
                }
                sent += size;
            }
        }
    }
    drop(tx);
    let mut report = match worker.await {
        Ok(Ok(report)) => report,
        Ok(Err((error, first))) => {
            return Err(Stopped {
                cause: Cause::Store(error),
                resend_from: first,
            });
        }
        Err(join) => {
            return Err(Stopped {
                cause: Cause::Store(Error::Internal(format!("push worker failed: {join}"))),
                resend_from: sent,
            });
        }
    };
    if let Some(error) = input_error {
        return Err(Stopped {
            cause: Cause::Input(error),
            resend_from: sent,
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
                    resend_from: sent,
                });
            }
        }
    }
    Ok(report)
}
