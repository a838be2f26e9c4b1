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

/// A disk failure, named by the file's name in the cache (the server's paths stay in its
/// log).
pub(crate) fn disk(path: &Path, error: impl std::fmt::Display) -> CacheError {
    tracing::warn!(path = %path.display(), %error, "artifact cache: disk operation failed");
    CacheError::Disk {
        path: path
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
        error: error.to_string(),
    }
}

/// A download in progress, or an artifact too large to keep: the file is removed when this
/// is dropped, so a cancelled download or an abandoned fetch leaves nothing behind.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> Self {
        Self { path, armed: true }
    }

    /// Where the bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file became permanent (renamed into the cache): keep it.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // Unix keeps a file readable by whoever opened it before.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Prefix and suffix of download files; any left in the directory when the cache opens are
/// from a process that stopped mid-download.
const PART_PREFIX: &str = "download-";
const PART_SUFFIX: &str = ".part";

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
        sweep_partial_downloads(&dir).await;
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
    /// cache is still returned, from a temporary file removed when the returned guard drops.
    /// `fetched_at_ms` (ms since epoch, from the caller's clock) is recorded with it.
    pub async fn store(
        &self,
        name: &str,
        version: i64,
        mut artifact: Artifact,
        expected_sha256: Option<&str>,
        fetched_at_ms: i64,
    ) -> Result<(Cached, PathBuf, Option<TempFile>), CacheError> {
        let guard = TempFile::new(self.dir.join(format!(
            "{PART_PREFIX}{}{PART_SUFFIX}",
            uuid::Uuid::new_v4().simple()
        )));
        let tmp = guard.path().to_path_buf();
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
        // On error the guard removes the partial file.
        let (sha256, size) = result?;
        let entry = Cached {
            name: name.to_owned(),
            version,
            sha256,
            size,
            format: artifact.format,
            fetched_at_ms,
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
            return Ok((entry, tmp, Some(guard)));
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| disk(&path, e))?;
        guard.disarm();
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
        Ok((entry, path, None))
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

/// Removes the download files a stopped process left in `dir`.
async fn sweep_partial_downloads(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with(PART_PREFIX) && name.ends_with(PART_SUFFIX) {
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => tracing::info!(file = name, "removed an unfinished download"),
                Err(error) => {
                    tracing::warn!(file = name, %error, "cannot remove an unfinished download")
                }
            }
        }
    }
}

/// Longest name whose hex spells its cache file name; longer ones are hashed, so that every
/// file name stays far below the file system's 255 bytes.
const MAX_HEX_NAME: usize = 64;

/// `<hex of name>.<version>.<sha256>.onnx` (`sha256-<SHA-256 of name>.…` for names longer
/// than 64 bytes): names are validated, but hex keeps any name safe.
fn file_name(entry: &Cached) -> String {
    let name = if entry.name.len() <= MAX_HEX_NAME {
        hex(entry.name.as_bytes())
    } else {
        format!("sha256-{}", hex(&Sha256::digest(entry.name.as_bytes())))
    };
    format!("{name}.{}.{}.onnx", entry.version, entry.sha256)
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
        cache
            .store("a", 1, artifact(&[1; 10]), None, 1_234)
            .await
            .unwrap();
        cache
            .store("b", 1, artifact(&[2; 10]), None, 0)
            .await
            .unwrap();
        assert!(cache.get("a", 1).is_some()); // a is now more recent than b
        cache
            .store("c", 1, artifact(&[3; 10]), None, 0)
            .await
            .unwrap();
        assert!(cache.get("b", 1).is_none(), "b was least recently used");
        assert!(cache.get("a", 1).is_some());
        assert_eq!(cache.total_bytes(), 20);
        drop(cache);
        let reopened = ArtifactCache::open(dir.path(), 25).await.unwrap();
        let a = reopened.get("a", 1).unwrap();
        assert_eq!(std::fs::read(reopened.path(&a)).unwrap(), vec![1; 10]);
        // The time given by the caller's clock, kept across the restart.
        assert_eq!(a.fetched_at_ms, 1_234);
        assert!(reopened.get("c", 1).is_some());
    }

    #[tokio::test]
    async fn a_checksum_mismatch_is_refused_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 1 << 20).await.unwrap();
        let error = cache
            .store("a", 1, artifact(b"onnx bytes"), Some(&"0".repeat(64)), 0)
            .await
            .unwrap_err();
        assert!(
            matches!(error, CacheError::ChecksumMismatch { .. }),
            "{error}"
        );
        assert!(cache.get("a", 1).is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let right = hex(&Sha256::digest(b"onnx bytes"));
        let (entry, _, _) = cache
            .store("a", 1, artifact(b"onnx bytes"), Some(&right), 0)
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
        let error = cache.store("a", 1, short, None, 0).await.unwrap_err();
        assert!(
            error.to_string().contains("after 10 of 20 bytes"),
            "{error}"
        );
        assert!(cache.get("a", 1).is_none());
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn unfinished_downloads_of_a_stopped_process_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 1 << 20).await.unwrap();
        let (kept, _, _) = cache
            .store("a", 1, artifact(b"kept"), None, 0)
            .await
            .unwrap();
        drop(cache);
        std::fs::write(dir.path().join("download-0123abcd.part"), b"half").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
        let reopened = ArtifactCache::open(dir.path(), 1 << 20).await.unwrap();
        let names = files_in(dir.path());
        assert!(!names.iter().any(|n| n.ends_with(".part")), "{names:?}");
        assert!(names.contains(&"notes.txt".to_owned()), "{names:?}");
        assert!(reopened.get("a", 1).is_some());
        assert!(reopened.path(&kept).exists());
    }

    #[tokio::test]
    async fn a_cancelled_download_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 1 << 20).await.unwrap();
        // A body that sends one chunk, says when the next is asked for, and never ends.
        let asked = std::sync::Arc::new(tokio::sync::Notify::new());
        let signal = asked.clone();
        let rest = futures::stream::once(async move {
            signal.notify_one();
            futures::future::pending::<Result<Bytes, RegistryError>>().await
        });
        let body = futures::stream::iter(vec![Ok(Bytes::from_static(b"first chunk"))]).chain(rest);
        let stalled = Artifact {
            format: ArtifactFormat::OnnxFile,
            size_hint: None,
            body: Box::pin(body),
        };
        let mut download = Box::pin(cache.store("a", 1, stalled, None, 0));
        tokio::select! {
            _ = asked.notified() => {}
            done = &mut download => panic!("a body that never ends finished: {done:?}"),
        }
        // The first chunk is on disk, in a download file.
        let part_seen = files_in(dir.path()).iter().any(|n| n.ends_with(".part"));
        assert!(part_seen, "the download never started");
        // The client left: the download is dropped mid-way.
        drop(download);
        assert_eq!(files_in(dir.path()), Vec::<String>::new());
        assert!(cache.get("a", 1).is_none());
    }

    #[tokio::test]
    async fn an_artifact_larger_than_the_cache_is_removed_when_its_guard_drops() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 4).await.unwrap();
        let (_, path, guard) = cache
            .store("a", 1, artifact(b"0123456789"), None, 0)
            .await
            .unwrap();
        let guard = guard.expect("a temporary file");
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
        drop(guard);
        assert!(!path.exists());
        assert!(cache.get("a", 1).is_none());
    }
}
