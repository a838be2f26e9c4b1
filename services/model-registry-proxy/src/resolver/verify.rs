//! Verified bytes: an artifact is downloaded once into the cache, checked against its
//! `sha256` tag, and read for its ONNX `metadata_props` and input contract.

use std::path::PathBuf;

use stockcast_runtime::sync::unpoisoned;

use super::{Resolver, VersionView};
use crate::cache::{CacheError, Cached, TempFile};
use crate::error::Error;
use crate::onnx::{self, TAG_SHA256};
use crate::registry::VersionInfo;

impl Resolver {
    /// The cached artifact of `info`, downloading (and verifying against the `sha256` tag)
    /// when missing. Returns its path and, when that path is private to the caller, the
    /// guard that removes it.
    pub(super) async fn artifact(
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
            .store(
                &info.name,
                info.version,
                artifact,
                expected.as_deref(),
                self.clock.now_ms(),
            )
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
    pub(super) async fn verify(&self, info: VersionInfo) -> Result<VersionView, Error> {
        let (cached, path, temporary) = self.artifact(&info).await?;
        let key = (info.name.clone(), info.version, cached.sha256.clone());
        let known = unpoisoned(self.metadata.lock()).get(&key).cloned();
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
                unpoisoned(self.metadata.lock()).insert(key, props.clone());
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
            unpoisoned(self.metadata.lock())
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

    /// SHA-256 of the cached bytes of `version` of `model`; empty when not cached (or for
    /// version 0, a deleted alias).
    pub fn known_sha256(&self, model: &str, version: i64) -> String {
        if version < 1 {
            return String::new();
        }
        self.cache
            .get(model, version)
            .map(|c| c.sha256)
            .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
