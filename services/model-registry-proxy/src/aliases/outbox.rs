//! The outbox: recorded changes are published as model events in order, from a cursor in
//! the audit store, so that a change recorded while the broker was down goes out later.

use sha2::{Digest, Sha256};
use stockcast_proto::stockcast::events::v1 as events;

use super::{AliasManager, Event};
use crate::audit::{ChangeKind, Origin};
use crate::error::Error;

impl AliasManager {
    /// Publishes every recorded change not yet published, in order.
    pub async fn publish_pending(&self) -> Result<usize, Error> {
        let _guard = self.publish_lock.lock().await;
        let mut published = 0;
        loop {
            let pending = self.audit.unpublished(100).await?;
            let Some(last) = pending.last().map(|e| e.id) else {
                return Ok(published);
            };
            for entry in &pending {
                let event = Event {
                    sha256: self
                        .resolver
                        .known_sha256(&entry.change.model, entry.change.to_version),
                    entry: entry.clone(),
                };
                let record = stockcast_bus::Record::proto(
                    entry.change.model.clone().into_bytes(),
                    &to_proto(&event),
                );
                self.bus.publish(&self.topic, record).await?;
                published += 1;
            }
            self.audit.mark_published(last).await?;
        }
    }
}

/// The model event of `event`. Its id is derived from the audit entry, so a republished
/// event keeps its id and consumers can drop the duplicate.
pub fn to_proto(event: &Event) -> events::ModelEvent {
    let change = &event.entry.change;
    let digest = Sha256::digest(
        format!(
            "stockcast.registry/{}/{}/{}/{}",
            event.entry.id, change.occurred_at_ms, change.model, change.alias
        )
        .as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let event_id = uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string();
    events::ModelEvent {
        event_id,
        kind: event_kind(change.kind) as i32,
        model_name: change.model.clone(),
        alias: change.alias.clone(),
        from_version: change.from_version,
        to_version: change.to_version,
        actor: change.actor.clone(),
        reason: change.reason.clone(),
        occurred_at: Some(timestamp(change.occurred_at_ms)),
        sha256: event.sha256.clone(),
        origin: change_origin(change.origin) as i32,
        audit_id: event.entry.id,
    }
}

/// The event kind of a change kind.
pub fn event_kind(kind: ChangeKind) -> events::ModelEventKind {
    match kind {
        ChangeKind::AliasSet => events::ModelEventKind::AliasSet,
        ChangeKind::AliasDeleted => events::ModelEventKind::AliasDeleted,
    }
}

/// The event origin of a change origin.
pub fn change_origin(origin: Origin) -> events::ChangeOrigin {
    match origin {
        Origin::Api => events::ChangeOrigin::Api,
        Origin::Poll => events::ChangeOrigin::MlflowPoll,
        Origin::Webhook => events::ChangeOrigin::MlflowWebhook,
    }
}

/// A protobuf timestamp of `ms` since epoch.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}
