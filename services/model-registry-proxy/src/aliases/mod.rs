//! The alias manager: alias changes made through the proxy (checked, applied in the
//! registry, audited) or detected in the registry (`detect.rs`: polls and webhooks); each
//! one is recorded once, in order, then published as a model event (`outbox.rs`, through an
//! outbox cursor, so a failed publish is retried) and sent to watchers (`watch.rs`).
//!
//! It tells the resolver to forget a model whose aliases moved; the resolver knows nothing
//! of it.

mod detect;
mod outbox;
mod watch;

use std::sync::Arc;

use stockcast_bus::EventBus;
use stockcast_runtime::clock::SharedClock;
use tokio::sync::{Mutex, broadcast};

pub use self::outbox::{change_origin, event_kind, timestamp, to_proto};
pub use self::watch::Watch;
use crate::audit::{AuditEntry, AuditFilter, AuditStore, Change, ChangeKind, Origin};
use crate::error::Error;
use crate::registry::{Registry, RegistryError};
use crate::resolver::Resolver;
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

/// Changes aliases, records them in the audit log and publishes them.
#[derive(Debug)]
pub struct AliasManager {
    registry: Arc<dyn Registry>,
    audit: Arc<dyn AuditStore>,
    bus: Arc<dyn EventBus>,
    topic: String,
    resolver: Arc<Resolver>,
    clock: SharedClock,
    /// Serializes alias changes and polls, so that a change is recorded once.
    change_lock: Mutex<()>,
    /// Serializes publishing of the outbox.
    publish_lock: Mutex<()>,
    watchers: broadcast::Sender<Event>,
}

/// Longest `reason` of a change, characters (after trimming): it is recorded in the audit log
/// and sent with every event.
pub const MAX_REASON_CHARS: usize = 1_024;

fn check(name: &str, alias: &str, reason: &str) -> Result<(), Error> {
    validate_name(name).map_err(|e| Error::InvalidArgument(format!("name: {e}")))?;
    // The alias checker's messages begin with the field's name already.
    validate_alias(alias).map_err(Error::InvalidArgument)?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::InvalidArgument(
            "reason is empty: say why the alias changes (it is recorded in the audit log)"
                .to_owned(),
        ));
    }
    // PostgreSQL cannot store NUL, and no audit reader wants control characters.
    if let Some(bad) = reason
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(Error::InvalidArgument(format!(
            "reason contains {bad:?}; control characters other than newline and tab are not \
             allowed"
        )));
    }
    let length = reason.chars().count();
    if length > MAX_REASON_CHARS {
        return Err(Error::InvalidArgument(format!(
            "reason has {length} characters, at most {MAX_REASON_CHARS}"
        )));
    }
    Ok(())
}

impl AliasManager {
    /// Aliases of the models of `resolver`'s registry, recorded in `audit`, published on
    /// `topic` of `bus`, dated by `clock`.
    pub fn new(
        resolver: Arc<Resolver>,
        audit: Arc<dyn AuditStore>,
        bus: Arc<dyn EventBus>,
        topic: &str,
        clock: SharedClock,
    ) -> Self {
        Self {
            registry: resolver.registry().clone(),
            audit,
            bus,
            topic: topic.to_owned(),
            resolver,
            clock,
            change_lock: Mutex::new(()),
            publish_lock: Mutex::new(()),
            watchers: broadcast::channel(1024).0,
        }
    }

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
            occurred_at_ms: self.clock.now_ms(),
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
            occurred_at_ms: self.clock.now_ms(),
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

    /// Records `change` (caller holds the change lock), tells the resolver and watchers,
    /// publishes.
    async fn record(&self, change: Change) -> Result<AuditEntry, Error> {
        let entry = self.audit.record(&change).await?;
        self.resolver.forget(&change.model);
        crate::metrics::alias_changed(change.origin.as_str());
        tracing::info!(
            model = %change.model, alias = %change.alias, from = change.from_version,
            to = change.to_version, actor = %change.actor, origin = change.origin.as_str(),
            audit_id = entry.id, "alias changed"
        );
        let _ = self.watchers.send(Event {
            sha256: self.resolver.known_sha256(&change.model, change.to_version),
            entry: entry.clone(),
        });
        if let Err(error) = self.publish_pending().await {
            // Recorded: the next change or poll publishes it.
            tracing::warn!(%error, audit_id = entry.id, "model event not published yet");
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use stockcast_bus::MemoryBus;
    use stockcast_runtime::clock::ManualClock;

    use super::*;
    use crate::audit::SqliteAudit;
    use crate::cache::ArtifactCache;
    use crate::registry::{ArtifactFormat, LocalRegistry, NewVersion};

    #[tokio::test]
    async fn changes_and_registry_files_are_dated_by_the_clock_passed_in() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at_ms(1_700_000_000_000);
        let shared: SharedClock = Arc::new(clock.clone());
        let registry: Arc<dyn Registry> = Arc::new(
            LocalRegistry::open(dir.path().join("models"), shared.clone())
                .await
                .unwrap(),
        );
        let model = registry.create_model("daily-return", "").await.unwrap();
        assert_eq!(model.created_at_ms, 1_700_000_000_000);
        registry
            .create_version(
                "daily-return",
                NewVersion {
                    format: ArtifactFormat::OnnxFile,
                    onnx: Bytes::from_static(b"not read here"),
                    tags: Default::default(),
                    description: String::new(),
                },
            )
            .await
            .unwrap();
        let resolver = Arc::new(Resolver::new(
            registry,
            ArtifactCache::open(dir.path().join("cache"), 1 << 20)
                .await
                .unwrap(),
            Duration::ZERO,
            shared.clone(),
        ));
        let audit: Arc<dyn AuditStore> =
            Arc::new(SqliteAudit::open("sqlite::memory:").await.unwrap());
        let aliases = AliasManager::new(
            resolver,
            audit,
            Arc::new(MemoryBus::default()),
            "model-events",
            shared,
        );
        clock.advance_ms(5_000);
        let set = aliases
            .set_alias("alice", "daily-return", "champion", 1, "first", None)
            .await
            .unwrap();
        assert_eq!(set.change.occurred_at_ms, 1_700_000_005_000);
        clock.advance_ms(-60_000);
        let deleted = aliases
            .delete_alias("alice", "daily-return", "champion", "undo")
            .await
            .unwrap();
        // Whatever the clock says, even earlier than before: the record keeps it.
        assert_eq!(deleted.change.occurred_at_ms, 1_699_999_945_000);
        let watch = aliases.watch(&Default::default()).await.unwrap();
        assert_eq!(watch.as_of_ms, 1_699_999_945_000);
    }
}
