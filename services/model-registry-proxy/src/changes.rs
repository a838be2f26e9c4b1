//! Alias changes: made through the proxy (checked, applied in the registry, audited) or
//! detected by polling the registry; each one is recorded once, in order, then published
//! as a model event (through an outbox cursor, so a failed publish is retried) and sent to
//! watchers.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use stockcast_proto::stockcast::events::v1 as events;
use tokio::sync::broadcast;

use crate::audit::{AuditEntry, AuditFilter, Change, ChangeKind, KnownAliases, Origin};
use crate::error::Error;
use crate::proxy::Proxy;
use crate::registry::RegistryError;
use crate::uri::{validate_alias, validate_name};

/// Actor of changes detected in the registry.
pub const DETECTED_ACTOR: &str = "mlflow";

/// A recorded change, as sent to watchers and published.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The audit entry.
    pub entry: AuditEntry,
    /// SHA-256 of the ONNX bytes of `to_version`, when known.
    pub sha256: String,
}

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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn check(name: &str, alias: &str, reason: &str) -> Result<(), Error> {
    validate_name(name).map_err(|e| Error::InvalidArgument(format!("name: {e}")))?;
    // The alias checker's messages begin with the field's name already.
    validate_alias(alias).map_err(Error::InvalidArgument)?;
    if reason.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "reason is empty: say why the alias changes (it is recorded in the audit log)"
                .to_owned(),
        ));
    }
    Ok(())
}

impl Proxy {
    /// Points `alias` of `name` at `version` for `actor`; with `expected`, only if the alias
    /// points at that version now (0: does not exist).
    pub async fn set_alias(
        &self,
        actor: &str,
        name: &str,
        alias: &str,
        version: i64,
        reason: &str,
        expected: Option<i64>,
    ) -> Result<AuditEntry, Error> {
        check(name, alias, reason)?;
        if version < 1 {
            return Err(Error::InvalidArgument(format!(
                "version {version} must be >= 1"
            )));
        }
        let _guard = self.change_lock.lock().await;
        let model = self.registry.get_model(name).await?;
        self.record_differences(name, model.aliases.clone(), Origin::Poll)
            .await?;
        let current = model.aliases.get(alias).copied().unwrap_or(0);
        if let Some(expected) = expected
            && expected != current
        {
            return Err(Error::FailedPrecondition(match current {
                0 => format!(
                    "alias {alias:?} of {name:?} does not exist, expected version {expected}"
                ),
                _ => format!(
                    "alias {alias:?} of {name:?} points at version {current}, expected {}",
                    if expected == 0 {
                        "no alias".to_owned()
                    } else {
                        format!("version {expected}")
                    }
                ),
            }));
        }
        self.registry.get_version(name, version).await?;
        self.registry.set_alias(name, alias, version).await?;
        let change = Change {
            occurred_at_ms: now_ms(),
            actor: actor.to_owned(),
            kind: ChangeKind::AliasSet,
            model: name.to_owned(),
            alias: alias.to_owned(),
            from_version: current,
            to_version: version,
            reason: reason.trim().to_owned(),
            origin: Origin::Api,
        };
        self.record(change).await
    }

    /// Deletes `alias` of `name` for `actor`.
    pub async fn delete_alias(
        &self,
        actor: &str,
        name: &str,
        alias: &str,
        reason: &str,
    ) -> Result<AuditEntry, Error> {
        check(name, alias, reason)?;
        let _guard = self.change_lock.lock().await;
        let model = self.registry.get_model(name).await?;
        self.record_differences(name, model.aliases.clone(), Origin::Poll)
            .await?;
        let Some(current) = model.aliases.get(alias).copied() else {
            return Err(Error::Registry(RegistryError::NotFound(format!(
                "model {name:?} has no alias {alias:?}"
            ))));
        };
        self.registry.delete_alias(name, alias).await?;
        let change = Change {
            occurred_at_ms: now_ms(),
            actor: actor.to_owned(),
            kind: ChangeKind::AliasDeleted,
            model: name.to_owned(),
            alias: alias.to_owned(),
            from_version: current,
            to_version: 0,
            reason: reason.trim().to_owned(),
            origin: Origin::Api,
        };
        self.record(change).await
    }

    /// Audit entries matching `filter`, newest first.
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, Error> {
        Ok(self.audit.list(filter).await?)
    }

    /// Records `change` (caller holds the change lock), tells watchers, publishes.
    async fn record(&self, change: Change) -> Result<AuditEntry, Error> {
        let entry = self.audit.record(&change).await?;
        self.forget(&change.model);
        crate::metrics::alias_changed(change.origin.as_str());
        tracing::info!(
            model = %change.model, alias = %change.alias, from = change.from_version,
            to = change.to_version, actor = %change.actor, origin = change.origin.as_str(),
            audit_id = entry.id, "alias changed"
        );
        let _ = self.watchers.send(Event {
            sha256: self.known_sha256(&change.model, change.to_version),
            entry: entry.clone(),
        });
        if let Err(error) = self.publish_pending().await {
            // Recorded: the next change or poll publishes it.
            tracing::warn!(%error, audit_id = entry.id, "model event not published yet");
        }
        Ok(entry)
    }

    fn known_sha256(&self, model: &str, version: i64) -> String {
        if version < 1 {
            return String::new();
        }
        self.cache
            .get(model, version)
            .map(|c| c.sha256)
            .unwrap_or_default()
    }

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
                    sha256: self.known_sha256(&entry.change.model, entry.change.to_version),
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

    /// Compares the registry's aliases with the recorded ones and records every difference
    /// as a detected change. Returns how many.
    pub async fn poll_once(&self) -> Result<usize, Error> {
        // Retry what an earlier publish could not send first: the broker may be back while
        // the registry is not.
        let published = self.publish_pending().await;
        // Held while listing: a change made through the API meanwhile would otherwise look
        // like a difference between this (older) listing and the recorded aliases.
        let _guard = self.change_lock.lock().await;
        let mut current: KnownAliases = BTreeMap::new();
        let mut token = String::new();
        let mut seen_tokens = BTreeSet::new();
        loop {
            let page = self.registry.list_models("", 1000, &token).await?;
            for model in page.items {
                for (alias, version) in model.aliases {
                    current.insert((model.name.clone(), alias), version);
                }
            }
            if page.next_token.is_empty() {
                break;
            }
            if !seen_tokens.insert(page.next_token.clone()) {
                // A registry that hands out a page token twice would be listed forever; a
                // partial listing would look like deleted aliases: compare nothing.
                return Err(Error::Registry(RegistryError::Internal(format!(
                    "listing models returned page token {:?} twice; aliases not compared",
                    page.next_token
                ))));
            }
            token = page.next_token;
        }
        let known = self.audit.known_aliases().await?;
        let changes = self.reconcile(&current, &known, Origin::Poll).await?;
        if published.is_err() {
            // Still failing (the changes just recorded tried too): report it.
            self.publish_pending().await?;
        }
        Ok(changes)
    }

    /// Reads the aliases of one model from the registry (a webhook said they changed) and
    /// records every difference. Returns how many.
    pub async fn sync_model(&self, name: &str, origin: Origin) -> Result<usize, Error> {
        validate_name(name).map_err(|e| Error::InvalidArgument(format!("name: {e}")))?;
        let _guard = self.change_lock.lock().await;
        let aliases = match self.registry.get_model(name).await {
            Ok(model) => model.aliases,
            Err(RegistryError::NotFound(_)) => BTreeMap::new(),
            Err(error) => return Err(error.into()),
        };
        self.record_differences(name, aliases, origin).await
    }

    /// Records every difference between `aliases` (model `name` in the registry now) and the
    /// record of that model. The caller holds the change lock. Returns how many.
    async fn record_differences(
        &self,
        name: &str,
        aliases: BTreeMap<String, i64>,
        origin: Origin,
    ) -> Result<usize, Error> {
        let current: KnownAliases = aliases
            .into_iter()
            .map(|(alias, version)| ((name.to_owned(), alias), version))
            .collect();
        let known: KnownAliases = self
            .audit
            .known_aliases()
            .await?
            .into_iter()
            .filter(|((model, _), _)| model == name)
            .collect();
        self.reconcile(&current, &known, origin).await
    }

    /// Records, as detected changes, every difference between `current` (the registry) and
    /// `known` (the record). The caller holds the change lock.
    async fn reconcile(
        &self,
        current: &KnownAliases,
        known: &KnownAliases,
        origin: Origin,
    ) -> Result<usize, Error> {
        let keys: BTreeSet<_> = current.keys().chain(known.keys()).cloned().collect();
        let mut changes = 0;
        for key in keys {
            let (before, after) = (
                known.get(&key).copied().unwrap_or(0),
                current.get(&key).copied().unwrap_or(0),
            );
            if before == after {
                continue;
            }
            let (model, alias) = key;
            let change = Change {
                occurred_at_ms: now_ms(),
                actor: DETECTED_ACTOR.to_owned(),
                kind: if after == 0 {
                    ChangeKind::AliasDeleted
                } else {
                    ChangeKind::AliasSet
                },
                model,
                alias,
                from_version: before,
                to_version: after,
                reason: String::new(),
                origin,
            };
            self.record(change).await?;
            changes += 1;
        }
        Ok(changes)
    }

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
            as_of_ms: now_ms(),
            changes,
        })
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
        kind: match change.kind {
            ChangeKind::AliasSet => events::ModelEventKind::AliasSet,
            ChangeKind::AliasDeleted => events::ModelEventKind::AliasDeleted,
        } as i32,
        model_name: change.model.clone(),
        alias: change.alias.clone(),
        from_version: change.from_version,
        to_version: change.to_version,
        actor: change.actor.clone(),
        reason: change.reason.clone(),
        occurred_at: Some(timestamp(change.occurred_at_ms)),
        sha256: event.sha256.clone(),
        origin: match change.origin {
            Origin::Api => events::ChangeOrigin::Api,
            Origin::Poll => events::ChangeOrigin::MlflowPoll,
            Origin::Webhook => events::ChangeOrigin::MlflowWebhook,
        } as i32,
        audit_id: event.entry.id,
    }
}

/// A protobuf timestamp of `ms` since epoch.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use stockcast_bus::MemoryBus;

    use super::*;
    use crate::audit::{AuditStore, SqliteAudit};
    use crate::cache::ArtifactCache;
    use crate::registry::{Artifact, ModelInfo, NewVersion, Page, Registry, VersionInfo};

    /// A registry whose model listing is `listing` (called with the page token) and whose
    /// every other call fails as unreachable.
    #[derive(Debug)]
    struct Stub {
        listing: fn(&str) -> Result<Page<ModelInfo>, RegistryError>,
        listed: AtomicUsize,
    }

    fn down<T>() -> Result<T, RegistryError> {
        Err(RegistryError::Unavailable("registry down (test)".into()))
    }

    #[async_trait]
    impl Registry for Stub {
        fn kind(&self) -> &'static str {
            "stub"
        }
        async fn ping(&self) -> Result<(), RegistryError> {
            down()
        }
        async fn create_model(&self, _: &str, _: &str) -> Result<ModelInfo, RegistryError> {
            down()
        }
        async fn get_model(&self, _: &str) -> Result<ModelInfo, RegistryError> {
            down()
        }
        async fn list_models(
            &self,
            _: &str,
            _: usize,
            token: &str,
        ) -> Result<Page<ModelInfo>, RegistryError> {
            if self.listed.fetch_add(1, Ordering::SeqCst) >= 100 {
                return Err(RegistryError::Internal("listed 100 pages (test)".into()));
            }
            (self.listing)(token)
        }
        async fn create_version(
            &self,
            _: &str,
            _: NewVersion,
        ) -> Result<VersionInfo, RegistryError> {
            down()
        }
        async fn get_version(&self, _: &str, _: i64) -> Result<VersionInfo, RegistryError> {
            down()
        }
        async fn list_versions(
            &self,
            _: &str,
            _: usize,
            _: &str,
        ) -> Result<Page<VersionInfo>, RegistryError> {
            down()
        }
        async fn version_by_alias(&self, _: &str, _: &str) -> Result<VersionInfo, RegistryError> {
            down()
        }
        async fn latest_version(
            &self,
            _: &str,
            _: Option<&str>,
        ) -> Result<VersionInfo, RegistryError> {
            down()
        }
        async fn set_alias(&self, _: &str, _: &str, _: i64) -> Result<(), RegistryError> {
            down()
        }
        async fn delete_alias(&self, _: &str, _: &str) -> Result<(), RegistryError> {
            down()
        }
        async fn set_version_tag(
            &self,
            _: &str,
            _: i64,
            _: &str,
            _: &str,
        ) -> Result<(), RegistryError> {
            down()
        }
        async fn transition_stage(
            &self,
            _: &str,
            _: i64,
            _: &str,
        ) -> Result<VersionInfo, RegistryError> {
            down()
        }
        async fn open_artifact(&self, _: &VersionInfo) -> Result<Artifact, RegistryError> {
            down()
        }
    }

    async fn proxy_on(
        listing: fn(&str) -> Result<Page<ModelInfo>, RegistryError>,
        dir: &tempfile::TempDir,
    ) -> (Proxy, Arc<dyn AuditStore>) {
        let audit: Arc<dyn AuditStore> =
            Arc::new(SqliteAudit::open("sqlite::memory:").await.unwrap());
        let proxy = Proxy::new(
            Arc::new(Stub {
                listing,
                listed: AtomicUsize::new(0),
            }),
            audit.clone(),
            ArtifactCache::open(dir.path(), 1 << 20).await.unwrap(),
            Arc::new(MemoryBus::default()),
            "model-events",
            Duration::from_secs(1),
        );
        (proxy, audit)
    }

    #[tokio::test]
    async fn the_poller_publishes_pending_events_while_the_registry_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let (proxy, audit) = proxy_on(|_| down(), &dir).await;
        // A change recorded while the broker was down: in the outbox, not published.
        audit
            .record(&Change {
                occurred_at_ms: 1,
                actor: "alice".into(),
                kind: ChangeKind::AliasSet,
                model: "daily-return".into(),
                alias: "champion".into(),
                from_version: 0,
                to_version: 1,
                reason: "first".into(),
                origin: Origin::Api,
            })
            .await
            .unwrap();
        assert_eq!(audit.unpublished(10).await.unwrap().len(), 1);
        let error = proxy.poll_once().await.unwrap_err();
        assert!(error.to_string().contains("registry down"), "{error}");
        assert_eq!(audit.unpublished(10).await.unwrap(), Vec::new());
    }

    #[tokio::test]
    async fn the_poller_stops_on_a_page_token_seen_before() {
        let dir = tempfile::tempdir().unwrap();
        let (proxy, audit) = proxy_on(
            |token| {
                Ok(Page {
                    items: Vec::new(),
                    next_token: if token == "b" { "a" } else { "b" }.to_owned(),
                })
            },
            &dir,
        )
        .await;
        let error = proxy.poll_once().await.unwrap_err();
        assert!(
            error.to_string().contains("page token \"b\" twice"),
            "{error}"
        );
        assert!(audit.known_aliases().await.unwrap().is_empty());
    }
}
