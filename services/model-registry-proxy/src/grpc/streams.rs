//! The two server streams: an artifact's bytes in chunks, and alias changes.

use std::collections::BTreeSet;

use stockcast_proto::stockcast::registry::v1 as pb;
use stockcast_runtime::Shutdown;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::Streamed;
use crate::aliases::{Event, Watch, to_proto};
use crate::error::Error;
use crate::resolver::Fetch;

/// Streams `fetch` from `offset` in chunks of `chunk` bytes, after a header.
pub(super) async fn artifact(
    fetch: Fetch,
    offset: i64,
    chunk: usize,
) -> Result<Streamed<pb::FetchModelResponse>, Error> {
    let total = fetch.artifact.size;
    if offset < 0 || offset as u64 > total {
        // Returning drops `fetch`, whose guard removes a temporary file.
        return Err(Error::InvalidArgument(format!(
            "offset {offset} must be within 0..={total} (the artifact's size)"
        )));
    }
    let mut file = tokio::fs::File::open(&fetch.path)
        .await
        .map_err(|e| Error::Cache(crate::cache::disk(&fetch.path, e)))?;
    // Unix keeps the open file readable: a temporary file can go now.
    drop(fetch.temporary);
    let header = pb::FetchModelHeader {
        version: Some((&fetch.resolution.view).into()),
        sha256: fetch.artifact.sha256.clone(),
        total_size_bytes: total as i64,
        served_from_cache: fetch.resolution.cached_at_ms.is_some(),
    };
    let offset = offset as u64;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        use pb::fetch_model_response::Payload;
        let send = |payload| pb::FetchModelResponse {
            payload: Some(payload),
        };
        if tx.send(Ok(send(Payload::Header(header)))).await.is_err() {
            return;
        }
        if let Err(e) = file.seek(std::io::SeekFrom::Start(offset)).await {
            let _ = tx
                .send(Err(Status::internal(format!("seeking the artifact: {e}"))))
                .await;
            return;
        }
        let mut position = offset;
        while position < total {
            let want = chunk.min((total - position) as usize);
            let mut data = vec![0u8; want];
            if let Err(e) = file.read_exact(&mut data).await {
                let _ = tx
                    .send(Err(Status::internal(format!("reading the artifact: {e}"))))
                    .await;
                return;
            }
            let message = send(Payload::Chunk(pb::ModelChunk {
                offset: position as i64,
                data,
            }));
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
            crate::metrics::fetched(want as u64);
            position += want as u64;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Streams the snapshot of `watch`, then its changes of `models` (every model when empty),
/// until the client goes, it falls behind, or `shutdown`.
pub(super) fn aliases(
    mut watch: Watch,
    models: BTreeSet<String>,
    shutdown: Shutdown,
) -> Streamed<pb::WatchAliasesResponse> {
    let snapshot = pb::AliasSnapshot::from(&watch);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        use pb::watch_aliases_response::Payload;
        let send = |payload| pb::WatchAliasesResponse {
            payload: Some(payload),
        };
        if tx
            .send(Ok(send(Payload::Snapshot(snapshot))))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let event: Event = tokio::select! {
                () = tx.closed() => return,
                () = shutdown.wait() => {
                    let _ = tx.send(Err(Status::unavailable("the server is stopping; watch again"))).await;
                    return;
                }
                received = watch.changes.recv() => match received {
                    Ok(event) => event,
                    Err(RecvError::Closed) => return,
                    Err(RecvError::Lagged(n)) => {
                        let status: Status = Error::Aborted(format!(
                            "the watch fell {n} changes behind; watch again for a fresh snapshot"
                        )).into();
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                },
            };
            if !models.is_empty() && !models.contains(&event.entry.change.model) {
                continue;
            }
            if tx
                .send(Ok(send(Payload::Event(to_proto(&event)))))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}
