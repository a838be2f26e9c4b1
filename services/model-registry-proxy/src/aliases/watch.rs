//! Watching aliases: a snapshot of the recorded aliases, then every change after it.

use std::collections::BTreeSet;

use tokio::sync::broadcast;

use super::{AliasManager, Event};
use crate::error::Error;

/// The current aliases of the watched models and the changes that follow.
#[derive(Debug)]
pub struct Watch {
    /// (model, alias, version), ordered by model then alias.
    pub snapshot: Vec<(String, String, i64)>,
    /// When the snapshot was taken, ms since epoch.
    pub as_of_ms: i64,
    /// Changes after the snapshot.
    pub changes: broadcast::Receiver<Event>,
}

impl AliasManager {
    /// Watches the aliases of `models` (every model when empty).
    pub async fn watch(&self, models: &BTreeSet<String>) -> Result<Watch, Error> {
        let changes = self.watchers.subscribe();
        let known = self.audit.known_aliases().await?;
        Ok(Watch {
            snapshot: known
                .into_iter()
                .filter(|((model, _), _)| models.is_empty() || models.contains(model))
                .map(|((model, alias), version)| (model, alias, version))
                .collect(),
            as_of_ms: self.clock.now_ms(),
            changes,
        })
    }
}
