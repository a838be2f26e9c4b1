//! The proxy's domain: resolve URIs to verified versions, hand out cached artifacts, list,
//! and (in `changes.rs`) change aliases with audit and events.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stockcast_bus::EventBus;
use tokio::sync::broadcast;

use crate::audit::AuditStore;
use crate::cache::{ArtifactCache, CacheError, Cached, TempFile};
use crate::error::Error;
use crate::onnx::{self, Contract, TAG_SHA256};
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

#[derive(Debug, Clone)]
struct Remembered {
    view: VersionView,
    at: Instant,
    at_ms: i64,
}

/// Resolutions remembered for a short TTL (and served stale while the registry is down),
/// with a generation per model that every alias change bumps. A resolve notes the
/// generation before asking the registry and stores its answer only if the generation is
/// still the same: an answer read before a change, arriving after it, is not remembered.
#[derive(Debug, Default)]
struct Resolutions {
    entries: HashMap<ModelUri, Remembered>,
    generations: HashMap<String, u64>,
}

impl Resolutions {
    fn generation(&self, model: &str) -> u64 {
        self.generations.get(model).copied().unwrap_or(0)
    }

    /// Remembers `remembered` for `uri` if no change of its model happened since
    /// `generation` was read. Returns whether it was remembered.
    fn remember(&mut self, uri: &ModelUri, generation: u64, remembered: Remembered) -> bool {
        if self.generation(&uri.name) != generation {
            return false;
        }
        self.entries.insert(uri.clone(), remembered);
        true
    }

    fn forget(&mut self, model: &str) {
        self.entries.retain(|uri, _| uri.name != model);
        let generation = self.generations.entry(model.to_owned()).or_insert(0);
        *generation = generation.wrapping_add(1);
    }
}

/// The proxy's domain.
#[derive(Debug)]
pub struct Proxy {
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) audit: Arc<dyn AuditStore>,
    pub(crate) cache: ArtifactCache,
    pub(crate) bus: Arc<dyn EventBus>,
    pub(crate) topic: String,
    ttl: Duration,
    resolutions: Mutex<Resolutions>,
    /// ONNX `metadata_props` of cached artifacts, by (model, version, sha256).
    metadata: Mutex<HashMap<ArtifactKey, BTreeMap<String, String>>>,
    /// Serializes alias changes and polls, so that a change is recorded once.
    pub(crate) change_lock: tokio::sync::Mutex<()>,
    /// Serializes publishing of the outbox.
    pub(crate) publish_lock: tokio::sync::Mutex<()>,
    pub(crate) watchers: broadcast::Sender<crate::changes::Event>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proxy {
    /// A proxy over `registry`, recording in `audit`, caching in `cache`, publishing model
    /// events on `topic` of `bus`, reusing resolutions for `ttl`.
    pub fn new(
        registry: Arc<dyn Registry>,
        audit: Arc<dyn AuditStore>,
        cache: ArtifactCache,
        bus: Arc<dyn EventBus>,
        topic: &str,
        ttl: Duration,
    ) -> Self {
        Self {
            registry,
            audit,
            cache,
            bus,
            topic: topic.to_owned(),
            ttl,
            resolutions: Mutex::default(),
            metadata: Mutex::default(),
            change_lock: tokio::sync::Mutex::new(()),
            publish_lock: tokio::sync::Mutex::new(()),
            watchers: broadcast::channel(1024).0,
        }
    }

    /// The registry behind the proxy.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// Resolves `uri`: from the short-TTL cache, else the registry (downloading and
    /// verifying the artifact once), else, when the registry is unreachable, the last answer.
    pub async fn resolve(&self, uri: &ModelUri) -> Result<Resolution, Error> {
        let generation = {
            let resolutions = lock(&self.resolutions);
            if let Some(fresh) = resolutions
                .entries
                .get(uri)
                .filter(|r| r.at.elapsed() < self.ttl)
            {
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
                let remembered = lock(&self.resolutions).remember(
                    uri,
                    generation,
                    Remembered {
                        view: view.clone(),
                        at: Instant::now(),
                        at_ms: chrono::Utc::now().timestamp_millis(),
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
                let stale = lock(&self.resolutions).entries.get(uri).cloned();
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
    pub(crate) fn forget(&self, model: &str) {
        lock(&self.resolutions).forget(model);
    }

    async fn lookup(&self, uri: &ModelUri) -> Result<VersionInfo, RegistryError> {
        match &uri.selector {
            Selector::Version(v) => self.registry.get_version(&uri.name, *v).await,
            Selector::Alias(a) => self.registry.version_by_alias(&uri.name, a).await,
            Selector::Latest => self.registry.latest_version(&uri.name, None).await,
            Selector::Stage(s) => self.registry.latest_version(&uri.name, Some(s)).await,
        }
    }

    /// The cached artifact of `info`, downloading (and verifying against the `sha256` tag)
    /// when missing. Returns its path and, when that path is private to the caller, the
    /// guard that removes it.
    async fn artifact(
        &self,
        info: &VersionInfo,
    ) -> Result<(Cached, PathBuf, Option<TempFile>), Error> {
        let expected = match info.tags.get(TAG_SHA256) {
            None => None,
            Some(tag) => Some(declared_sha256(tag).ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "models:/{}/{}: the sha256 tag {tag:?} is not a SHA-256: expected 64 hex \
                     digits, optionally prefixed \"sha256:\"",
                    info.name, info.version
                ))
            })?),
        };
        if let Some(cached) = self.cache.get(&info.name, info.version) {
            match &expected {
                Some(tag) if *tag != cached.sha256 => {
                    // The tag changed after the download: trust neither until re-verified.
                    self.cache.remove(&info.name, info.version).await;
                }
                _ => {
                    let path = self.cache.path(&cached);
                    return Ok((cached, path, None));
                }
            }
        }
        let artifact = self.registry.open_artifact(info).await?;
        match self
            .cache
            .store(&info.name, info.version, artifact, expected.as_deref())
            .await
        {
            Ok(stored) => Ok(stored),
            Err(error @ CacheError::ChecksumMismatch { .. }) => {
                crate::metrics::checksum_mismatch();
                Err(error.into())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Downloads and verifies the artifact of `info` if needed, and reads its contract.
    async fn verify(&self, info: VersionInfo) -> Result<VersionView, Error> {
        let (cached, path, temporary) = self.artifact(&info).await?;
        let key = (info.name.clone(), info.version, cached.sha256.clone());
        let known = lock(&self.metadata).get(&key).cloned();
        let props = match known {
            Some(props) => props,
            None => {
                let file = path.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let file = std::fs::File::open(&file).map_err(|e| {
                        format!("reading the cached artifact {}: {e}", file.display())
                    })?;
                    onnx::read_metadata_props(std::io::BufReader::new(file))
                })
                .await;
                drop(temporary);
                let read = match read {
                    Ok(Ok(props)) => Ok(props),
                    Ok(Err(e)) => Err(Error::FailedPrecondition(format!(
                        "models:/{}/{}: {e}",
                        info.name, info.version
                    ))),
                    Err(e) => Err(Error::FailedPrecondition(format!("reading ONNX: {e}"))),
                };
                let props = match read {
                    Ok(props) => props,
                    Err(error) => {
                        // Bytes that are not a readable model are not kept: a later request
                        // downloads (and checks) them again.
                        self.cache.remove(&info.name, info.version).await;
                        return Err(error);
                    }
                };
                lock(&self.metadata).insert(key, props.clone());
                props
            }
        };
        let contract = onnx::contract_of(Some(&props), &info.tags).map_err(|e| {
            Error::FailedPrecondition(format!(
                "models:/{}/{} declares an unusable contract: {e}",
                info.name, info.version
            ))
        })?;
        Ok(VersionView {
            info,
            contract,
            sha256: cached.sha256,
            size: cached.size,
            format: Some(cached.format),
        })
    }

    /// What is known about `info` without downloading: tags, and the cache.
    pub fn view_of(&self, info: VersionInfo) -> VersionView {
        let cached = self.cache.get(&info.name, info.version);
        let props = cached.as_ref().and_then(|c| {
            lock(&self.metadata)
                .get(&(info.name.clone(), info.version, c.sha256.clone()))
                .cloned()
        });
        let contract = onnx::contract_of(props.as_ref(), &info.tags).unwrap_or_else(|error| {
            tracing::debug!(model = %info.name, version = info.version, error, "unusable contract");
            None
        });
        let sha256 = cached
            .as_ref()
            .map(|c| c.sha256.clone())
            .or_else(|| info.tags.get(TAG_SHA256).and_then(|t| declared_sha256(t)))
            .unwrap_or_default();
        VersionView {
            contract,
            sha256,
            size: cached.as_ref().map_or(0, |c| c.size),
            format: cached.map(|c| c.format),
            info,
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

/// The lower-case hex SHA-256 a `sha256` tag declares: 64 hex digits in any case,
/// optionally prefixed `sha256:`; `None` when the tag is not that.
fn declared_sha256(tag: &str) -> Option<String> {
    let tag = tag.trim();
    let hex = match tag.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &tag[7..],
        _ => tag,
    };
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

fn unavailable(error: &Error) -> bool {
    match error {
        Error::Registry(e) | Error::Cache(CacheError::Registry(e)) => e.is_unavailable(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered(version: i64) -> Remembered {
        Remembered {
            view: VersionView {
                info: VersionInfo {
                    name: "daily-return".to_owned(),
                    version,
                    ..VersionInfo::default()
                },
                contract: None,
                sha256: String::new(),
                size: 0,
                format: None,
            },
            at: Instant::now(),
            at_ms: 0,
        }
    }

    fn uri(text: &str) -> ModelUri {
        ModelUri::parse(text).unwrap()
    }

    #[test]
    fn a_lookup_that_began_before_an_alias_change_is_not_remembered() {
        let mut resolutions = Resolutions::default();
        let champion = uri("models:/daily-return@champion");
        // A resolve begins and reads the registry (version 1)...
        let generation = resolutions.generation("daily-return");
        // ...meanwhile the alias moves to version 2 and the model's resolutions are forgotten...
        resolutions.forget("daily-return");
        // ...then the slow resolve finishes with what it read before the change.
        assert!(!resolutions.remember(&champion, generation, remembered(1)));
        assert!(!resolutions.entries.contains_key(&champion));
        // A resolve that begins after the change is remembered.
        let generation = resolutions.generation("daily-return");
        assert!(resolutions.remember(&champion, generation, remembered(2)));
        assert_eq!(
            resolutions
                .entries
                .get(&champion)
                .map(|r| r.view.info.version),
            Some(2)
        );
    }

    #[test]
    fn sha256_tags_may_carry_a_prefix_and_must_be_64_hex_digits() {
        let digest = "ab".repeat(32);
        assert_eq!(declared_sha256(&digest), Some(digest.clone()));
        assert_eq!(
            declared_sha256(&format!(" sha256:{} ", digest.to_uppercase())),
            Some(digest.clone())
        );
        assert_eq!(
            declared_sha256(&format!("SHA256:{digest}")),
            Some(digest.clone())
        );
        assert_eq!(declared_sha256(&digest[..63]), None);
        assert_eq!(declared_sha256(&format!("{}zz", &digest[..62])), None);
        assert_eq!(declared_sha256(&format!("md5:{digest}")), None);
        assert_eq!(declared_sha256(""), None);
        assert_eq!(declared_sha256("sha256:é"), None);
    }

    #[test]
    fn a_change_of_another_model_does_not_discard_a_lookup() {
        let mut resolutions = Resolutions::default();
        let champion = uri("models:/daily-return@champion");
        let generation = resolutions.generation("daily-return");
        resolutions.forget("volatility");
        assert!(resolutions.remember(&champion, generation, remembered(1)));
        assert!(resolutions.entries.contains_key(&champion));
    }

    #[test]
    fn forgetting_a_model_drops_its_resolutions_only() {
        let mut resolutions = Resolutions::default();
        let daily = uri("models:/daily-return/1");
        let other = uri("models:/volatility/3");
        assert!(resolutions.remember(&daily, 0, remembered(1)));
        assert!(resolutions.remember(&other, 0, remembered(3)));
        resolutions.forget("daily-return");
        assert!(!resolutions.entries.contains_key(&daily));
        assert!(resolutions.entries.contains_key(&other));
    }
}
