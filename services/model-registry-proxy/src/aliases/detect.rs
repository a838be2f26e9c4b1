//! Changes made in the registry directly (MLflow's UI, its client): found by polling every
//! model's aliases, or by reading one model's aliases back when a webhook says they
//! changed, and recorded as detected changes.

use std::collections::{BTreeMap, BTreeSet};

use super::{AliasManager, DETECTED_ACTOR};
use crate::audit::{Change, ChangeKind, KnownAliases, Origin};
use crate::error::Error;
use crate::registry::RegistryError;
use crate::uri::validate_name;

impl AliasManager {
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
    pub(super) async fn record_differences(
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
                occurred_at_ms: self.clock.now_ms(),
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use stockcast_bus::MemoryBus;

    use stockcast_runtime::clock::{ManualClock, SharedClock};

    use super::*;
    use crate::audit::{AuditStore, ChangeKind, SqliteAudit};
    use crate::cache::ArtifactCache;
    use crate::registry::{Artifact, ModelInfo, NewVersion, Page, Registry, VersionInfo};
    use crate::resolver::Resolver;

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
    ) -> (AliasManager, Arc<dyn AuditStore>) {
        let audit: Arc<dyn AuditStore> =
            Arc::new(SqliteAudit::open("sqlite::memory:").await.unwrap());
        let clock: SharedClock = Arc::new(ManualClock::at_ms(1_000));
        let resolver = Resolver::new(
            Arc::new(Stub {
                listing,
                listed: AtomicUsize::new(0),
            }),
            ArtifactCache::open(dir.path(), 1 << 20).await.unwrap(),
            Duration::from_secs(1),
            clock.clone(),
        );
        let aliases = AliasManager::new(
            Arc::new(resolver),
            audit.clone(),
            Arc::new(MemoryBus::default()),
            "model-events",
            clock,
        );
        (aliases, audit)
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
