//! The on-disk artifact cache: ONNX bytes by (model, version), verified, bounded in total
//! size, least recently used evicted first. An index file lets a restarted proxy keep
//! serving what it had.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::onnx::hex;
use crate::registry::{Artifact, ArtifactFormat, RegistryError};

/// A verified artifact in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: i64,
    /// Lower-case hex SHA-256 of the ONNX bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Layout it had in the registry.
    pub format: ArtifactFormat,
    /// Milliseconds since epoch when it was downloaded.
    pub fetched_at_ms: i64,
}

/// Why storing an artifact failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading from the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The bytes do not have the SHA-256 the version's `sha256` tag declares.
    #[error(
        "models:/{name}/{version}: artifact SHA-256 {actual} does not match the sha256 tag {expected}; refusing it"
    )]
    ChecksumMismatch {
        /// Model.
        name: String,
        /// Version.
        version: i64,
        /// The tag.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The local disk failed.
    #[error("artifact cache {path}: {error}")]
    Disk {
        /// Where.
        path: String,
        /// What.
        error: String,
    },
}

fn disk(path: &Path, error: impl std::fmt::Display) -> CacheError {
    CacheError::Disk {
        path: path.display().to_string(),
        error: error.to_string(),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    entries: Vec<Cached>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<(String, i64), (Cached, u64)>,
    total: u64,
    tick: u64,
}

/// The artifact cache.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

impl ArtifactCache {
    /// A cache in `dir` (created if missing) holding at most `max_bytes`, reloading the
    /// entries of a previous run whose files are still there.
    pub async fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, CacheError> {
        let dir = dir.into();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| disk(&dir, e))?;
        let mut state = State::default();
        if let Ok(bytes) = tokio::fs::read(dir.join("index.json")).await {
            let index: Index = serde_json::from_slice(&bytes).unwrap_or_default();
            for entry in index.entries {
                let file = dir.join(file_name(&entry));
                let size_ok = tokio::fs::metadata(&file)
                    .await
                    .is_ok_and(|m| m.len() == entry.size);
                if size_ok {
                    state.tick += 1;
                    state.total += entry.size;
                    state
                        .entries
                        .insert((entry.name.clone(), entry.version), (entry, state.tick));
                }
            }
        }
        let cache = Self {
            dir,
            max_bytes,
            state: Mutex::new(state),
        };
        let evicted = cache.evict();
        cache.remove_files(&evicted).await;
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached artifact of `name`/`version`, marked as just used.
    pub fn get(&self, name: &str, version: i64) -> Option<Cached> {
        let mut state = self.lock();
        state.tick += 1;
        let tick = state.tick;
        let (entry, used) = state.entries.get_mut(&(name.to_owned(), version))?;
        *used = tick;
        Some(entry.clone())
    }

    /// Where the bytes of `entry` are.
    pub fn path(&self, entry: &Cached) -> PathBuf {
        self.dir.join(file_name(entry))
    }

    /// Bytes held.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    /// Downloads `artifact` of `name`/`version` into the cache while hashing it, and keeps it
    /// only when it matches `expected_sha256` (when given). An artifact larger than the whole
    /// cache is still returned, from a file that is removed once read.
    pub async fn store(
        &self,
        name: &str,
        version: i64,
        mut artifact: Artifact,
        expected_sha256: Option<&str>,
    ) -> Result<(Cached, PathBuf), CacheError> {
        let tmp = self
            .dir
            .join(format!("download-{}.part", uuid::Uuid::new_v4().simple()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| disk(&tmp, e))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = artifact.body.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(|e| disk(&tmp, e))?;
            }
            file.flush().await.map_err(|e| disk(&tmp, e))?;
            file.sync_all().await.map_err(|e| disk(&tmp, e))?;
            if let Some(announced) = artifact.size_hint
                && announced != size
            {
                return Err(CacheError::Registry(RegistryError::Unavailable(format!(
                    "models:/{name}/{version}: download ended after {size} of {announced} bytes"
                ))));
            }
            let actual = hex(&hasher.finalize());
            if let Some(expected) = expected_sha256
                && !expected.trim().eq_ignore_ascii_case(&actual)
            {
                return Err(CacheError::ChecksumMismatch {
                    name: name.to_owned(),
                    version,
                    expected: expected.trim().to_owned(),
                    actual,
                });
            }
            Ok((actual, size))
        }
        .await;
        let (sha256, size) = match result {
            Ok(done) => done,
            Err(error) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(error);
            }
        };
        let entry = Cached {
            name: name.to_owned(),
            version,
            sha256,
            size,
            format: artifact.format,
            fetched_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let path = self.path(&entry);
        if size > self.max_bytes {
            tracing::warn!(
                model = name,
                version,
                size,
                max = self.max_bytes,
                "artifact larger than the cache; not kept"
            );
            return Ok((entry, tmp));
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| disk(&path, e))?;
        let evicted = {
            let mut state = self.lock();
            state.tick += 1;
            let tick = state.tick;
            if let Some((old, _)) = state
                .entries
                .insert((name.to_owned(), version), (entry.clone(), tick))
            {
                state.total -= old.size;
            }
            state.total += size;
            self.evict_locked(&mut state, Some((name, version)))
        };
        self.remove_files(&evicted).await;
        self.save_index().await;
        crate::metrics::cache_bytes(self.total_bytes());
        Ok((entry, path))
    }

    /// Forgets `name`/`version` (its bytes were found to be wrong).
    pub async fn remove(&self, name: &str, version: i64) {
        let removed = {
            let mut state = self.lock();
            let removed = state.entries.remove(&(name.to_owned(), version));
            if let Some((entry, _)) = &removed {
                state.total -= entry.size;
            }
            removed
        };
        if let Some((entry, _)) = removed {
            self.remove_files(&[entry]).await;
            self.save_index().await;
        }
    }

    fn evict(&self) -> Vec<Cached> {
        let mut state = self.lock();
        self.evict_locked(&mut state, None)
    }

    fn evict_locked(&self, state: &mut State, keep: Option<(&str, i64)>) -> Vec<Cached> {
        let mut evicted = Vec::new();
        while state.total > self.max_bytes {
            let oldest = state
                .entries
                .iter()
                .filter(|((n, v), _)| keep != Some((n.as_str(), *v)))
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            let Some(key) = oldest else { break };
            if let Some((entry, _)) = state.entries.remove(&key) {
                state.total -= entry.size;
                crate::metrics::cache_evicted();
                evicted.push(entry);
            }
        }
        evicted
    }

    async fn remove_files(&self, entries: &[Cached]) {
        for entry in entries {
            // Readers that opened the file keep reading it; new readers miss and refetch.
            let _ = tokio::fs::remove_file(self.path(entry)).await;
        }
    }

    async fn save_index(&self) {
        let index = Index {
            entries: self
                .lock()
                .entries
                .values()
                .map(|(e, _)| e.clone())
                .collect(),
        };
        let path = self.dir.join("index.json");
        let tmp = self
            .dir
            .join(format!("index.{}.tmp", uuid::Uuid::new_v4().simple()));
        let written = async {
            let bytes = serde_json::to_vec(&index).map_err(std::io::Error::other)?;
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(error) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            tracing::warn!(%error, path = %path.display(), "cannot save the artifact cache index");
        }
    }
}

/// `<hex of name>.<version>.<sha256>.onnx`: names are validated, but hex keeps any name safe.
fn file_name(entry: &Cached) -> String {
    format!(
        "{}.{}.{}.onnx",
        hex(entry.name.as_bytes()),
        entry.version,
        entry.sha256
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use bytes::Bytes;

    fn artifact(bytes: &'static [u8]) -> Artifact {
        Artifact {
            format: ArtifactFormat::OnnxFile,
            size_hint: Some(bytes.len() as u64),
            body: Box::pin(futures::stream::iter(vec![
                Ok(Bytes::from_static(&bytes[..bytes.len() / 2])),
                Ok(Bytes::from_static(&bytes[bytes.len() / 2..])),
            ])),
        }
    }

    #[tokio::test]
    async fn evicts_least_recently_used_by_size_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 25).await.unwrap();
        cache.store("a", 1, artifact(&[1; 10]), None).await.unwrap();
        cache.store("b", 1, artifact(&[2; 10]), None).await.unwrap();
        assert!(cache.get("a", 1).is_some()); // a is now more recent than b
        cache.store("c", 1, artifact(&[3; 10]), None).await.unwrap();
        assert!(cache.get("b", 1).is_none(), "b was least recently used");
        assert!(cache.get("a", 1).is_some());
        assert_eq!(cache.total_bytes(), 20);
        drop(cache);
        let reopened = ArtifactCache::open(dir.path(), 25).await.unwrap();
        let a = reopened.get("a", 1).unwrap();
        assert_eq!(std::fs::read(reopened.path(&a)).unwrap(), vec![1; 10]);
        assert!(reopened.get("c", 1).is_some());
    }

    #[tokio::test]
    async fn a_checksum_mismatch_is_refused_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 1 << 20).await.unwrap();
        let error = cache
            .store("a", 1, artifact(b"onnx bytes"), Some(&"0".repeat(64)))
            .await
            .unwrap_err();
        assert!(
            matches!(error, CacheError::ChecksumMismatch { .. }),
            "{error}"
        );
        assert!(cache.get("a", 1).is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let right = hex(&Sha256::digest(b"onnx bytes"));
        let (entry, _) = cache
            .store("a", 1, artifact(b"onnx bytes"), Some(&right))
            .await
            .unwrap();
        assert_eq!(entry.sha256, right);
    }

    #[tokio::test]
    async fn a_short_download_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 1 << 20).await.unwrap();
        let mut short = artifact(b"0123456789");
        short.size_hint = Some(20);
        let error = cache.store("a", 1, short, None).await.unwrap_err();
        assert!(
            error.to_string().contains("after 10 of 20 bytes"),
            "{error}"
        );
        assert!(cache.get("a", 1).is_none());
    }
}
