//! The resolver: model URIs to verified versions, and their cached artifacts. It asks the
//! registry, downloads and verifies each artifact once (`verify.rs`), remembers answers for
//! a short TTL and serves them stale while the registry is down (`resolutions.rs`).
//!
//! It knows nothing of alias changes; the alias manager tells it to [`Resolver::forget`] a
//! model whose aliases moved.

mod resolutions;
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stockcast_runtime::clock::SharedClock;
use stockcast_runtime::sync::unpoisoned;

use self::resolutions::{Remembered, Resolutions};
use crate::cache::{ArtifactCache, CacheError, Cached, TempFile};
use crate::error::Error;
use crate::onnx::Contract;
use crate::registry::{ArtifactFormat, ModelInfo, Page, Registry, RegistryError, VersionInfo};
use crate::uri::{ModelUri, Selector};

/// A version with what the proxy verified about it.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionView {
    /// As the registry describes it.
    pub info: VersionInfo,
    /// The input contract; `None` when the model declares none.
    pub contract: Option<Contract>,
    /// Lower-case hex SHA-256 of the ONNX bytes; empty when not known.
    pub sha256: String,
    /// Size of the ONNX bytes; 0 when not known.
    pub size: u64,
    /// Artifact layout, when known.
    pub format: Option<ArtifactFormat>,
}

/// A resolved URI.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The version.
    pub view: VersionView,
    /// When the registry was unreachable: when the cached answer was obtained (ms since epoch).
    pub cached_at_ms: Option<i64>,
}

/// An artifact ready to stream.
#[derive(Debug)]
pub struct Fetch {
    /// The version.
    pub resolution: Resolution,
    /// The verified bytes' description.
    pub artifact: Cached,
    /// Where the bytes are.
    pub path: PathBuf,
    /// The file is private to this fetch (too large for the cache): it is removed when this
    /// guard drops (open the file first).
    pub temporary: Option<TempFile>,
}

/// (model, version, sha256).
type ArtifactKey = (String, i64, String);

/// Resolves URIs and hands out verified artifacts. Its two locks guard plain maps and are
/// never held across an await.
#[derive(Debug)]
pub struct Resolver {
    registry: Arc<dyn Registry>,
    cache: ArtifactCache,
    ttl: Duration,
    clock: SharedClock,
    resolutions: Mutex<Resolutions>,
    /// ONNX `metadata_props` of cached artifacts, by (model, version, sha256).
    metadata: Mutex<HashMap<ArtifactKey, BTreeMap<String, String>>>,
}

impl Resolver {
    /// A resolver over `registry`, caching artifacts in `cache`, reusing resolutions for
    /// `ttl`, telling the time by `clock`.
    pub fn new(
        registry: Arc<dyn Registry>,
        cache: ArtifactCache,
        ttl: Duration,
        clock: SharedClock,
    ) -> Self {
        Self {
            registry,
            cache,
            ttl,
            clock,
            resolutions: Mutex::default(),
            metadata: Mutex::default(),
        }
    }

    /// The registry behind the resolver.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// Resolves `uri`: from the short-TTL cache, else the registry (downloading and
    /// verifying the artifact once), else, when the registry is unreachable, the last answer.
    pub async fn resolve(&self, uri: &ModelUri) -> Result<Resolution, Error> {
        let generation = {
            let resolutions = unpoisoned(self.resolutions.lock());
            if let Some(fresh) = resolutions.get(uri).filter(|r| r.at.elapsed() < self.ttl) {
                crate::metrics::resolved("ttl_cache");
                return Ok(Resolution {
                    view: fresh.view.clone(),
                    cached_at_ms: None,
                });
            }
            resolutions.generation(&uri.name)
        };
        let looked_up = async {
            let info = self.lookup(uri).await?;
            self.verify(info).await
        };
        // Within the request's budget, so that the cached answer below still goes out.
        let looked_up = match crate::deadline::current() {
            Some(budget) => tokio::time::timeout(budget.remaining(), looked_up)
                .await
                .unwrap_or_else(|_| Err(budget.spent("asking the registry").into())),
            None => looked_up.await,
        };
        match looked_up {
            Ok(view) => {
                let remembered = unpoisoned(self.resolutions.lock()).remember(
                    uri,
                    generation,
                    Remembered {
                        view: view.clone(),
                        at: Instant::now(),
                        at_ms: self.clock.now_ms(),
                    },
                );
                if !remembered {
                    tracing::debug!(uri = %uri, "aliases changed during the lookup; not caching it");
                }
                crate::metrics::resolved("registry");
                Ok(Resolution {
                    view,
                    cached_at_ms: None,
                })
            }
            Err(error) if unavailable(&error) => {
                let stale = unpoisoned(self.resolutions.lock()).get(uri).cloned();
                match stale {
                    Some(stale) => {
                        tracing::warn!(uri = %uri, %error, "registry unreachable; serving the cached resolution");
                        crate::metrics::resolved("stale_cache");
                        Ok(Resolution {
                            view: stale.view,
                            cached_at_ms: Some(stale.at_ms),
                        })
                    }
                    None => match self.resolve_from_artifact_cache(uri).await {
                        Some(resolution) => {
                            tracing::warn!(uri = %uri, %error, "registry unreachable; serving the cached artifact");
                            crate::metrics::resolved("stale_cache");
                            Ok(resolution)
                        }
                        None => Err(error),
                    },
                }
            }
            Err(error) => Err(error),
        }
    }

    /// A pinned version known only from the artifact cache (the proxy restarted while the
    /// registry is down): the verified bytes and their contract, without registry metadata.
    async fn resolve_from_artifact_cache(&self, uri: &ModelUri) -> Option<Resolution> {
        let Selector::Version(version) = uri.selector else {
            return None;
        };
        let cached = self.cache.get(&uri.name, version)?;
        let info = VersionInfo {
            name: uri.name.clone(),
            version,
            ..VersionInfo::default()
        };
        let view = self.verify(info).await.ok()?;
        Some(Resolution {
            view,
            cached_at_ms: Some(cached.fetched_at_ms),
        })
    }

    /// Resolves `uri` and opens its verified artifact.
    pub async fn fetch(&self, uri: &ModelUri) -> Result<Fetch, Error> {
        let resolution = self.resolve(uri).await?;
        let (artifact, path, temporary) = self.artifact(&resolution.view.info).await?;
        Ok(Fetch {
            resolution,
            artifact,
            path,
            temporary,
        })
    }

    /// Forgets every resolution of `model` (its aliases changed), including those being
    /// looked up now: they will not be remembered.
    pub fn forget(&self, model: &str) {
        unpoisoned(self.resolutions.lock()).forget(model);
    }

    async fn lookup(&self, uri: &ModelUri) -> Result<VersionInfo, RegistryError> {
        match &uri.selector {
            Selector::Version(v) => self.registry.get_version(&uri.name, *v).await,
            Selector::Alias(a) => self.registry.version_by_alias(&uri.name, a).await,
            Selector::Latest => self.registry.latest_version(&uri.name, None).await,
            Selector::Stage(s) => self.registry.latest_version(&uri.name, Some(s)).await,
        }
    }

    /// Models whose names start with `prefix`.
    pub async fn list_models(
        &self,
        prefix: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<ModelInfo>, Error> {
        Ok(self
            .registry
            .list_models(prefix, page_size, page_token)
            .await?)
    }

    /// Versions of `name`, newest first.
    pub async fn list_versions(
        &self,
        name: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<VersionView>, Error> {
        let page = self
            .registry
            .list_versions(name, page_size, page_token)
            .await?;
        Ok(Page {
            items: page.items.into_iter().map(|v| self.view_of(v)).collect(),
            next_token: page.next_token,
        })
    }
}

fn unavailable(error: &Error) -> bool {
    match error {
        Error::Registry(e) | Error::Cache(CacheError::Registry(e)) => e.is_unavailable(),
        _ => false,
    }
}
