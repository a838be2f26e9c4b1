//! Files of the local registry: every path confined to the registry directory after
//! symlinks are resolved, JSON metadata read and replaced atomically, messages naming paths
//! relative to the registry.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LocalRegistry;
use crate::registry::RegistryError;

/// The path an `MLmodel` `data:` names, if it is a plain relative path that stays inside
/// the model directory: not absolute, no `..`, no NUL.
pub(super) fn relative_data_path(data: &str) -> Option<PathBuf> {
    use std::path::Component;
    let path = Path::new(data);
    let plain = !data.contains('\0')
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (plain && path.components().any(|c| matches!(c, Component::Normal(_))))
        .then(|| path.to_path_buf())
}

pub(super) fn reading_failed(shown: &str, error: std::io::Error) -> RegistryError {
    RegistryError::Unavailable(format!("local registry: reading {shown}: {error}"))
}

impl LocalRegistry {
    /// `path` as messages name it: relative to the registry directory (the server's paths
    /// stay in its logs).
    pub(super) fn shown(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(relative) => relative.display().to_string(),
            Err(_) => "a path outside the registry directory".to_owned(),
        }
    }

    pub(super) fn io(&self, what: &str, path: &Path, error: std::io::Error) -> RegistryError {
        tracing::warn!(path = %path.display(), %error, "local registry: {what} failed");
        RegistryError::Unavailable(format!(
            "local registry: {what} {}: {error}",
            self.shown(path)
        ))
    }

    /// `path` with every symlink resolved, if it stays inside the registry directory;
    /// `None` when it does not exist. Nothing is opened.
    pub(super) async fn confine(&self, path: &Path) -> Result<Option<PathBuf>, RegistryError> {
        match tokio::fs::canonicalize(path).await {
            Ok(real) if real.starts_with(&self.root) => Ok(Some(real)),
            Ok(real) => {
                tracing::warn!(
                    path = %path.display(),
                    real = %real.display(),
                    "local registry: a path leads outside the registry directory; refused"
                );
                Err(RegistryError::FailedPrecondition(format!(
                    "local registry: {} leads outside the registry directory; refusing it",
                    self.shown(path)
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("resolving", path, e)),
        }
    }

    /// Like [`Self::confine`], but a missing path is an error saying what is missing.
    pub(super) async fn confine_existing(
        &self,
        path: &Path,
        what: &str,
    ) -> Result<PathBuf, RegistryError> {
        self.confine(path).await?.ok_or_else(|| {
            RegistryError::FailedPrecondition(format!(
                "local registry: {what} {} is missing",
                self.shown(path)
            ))
        })
    }

    pub(super) async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, RegistryError> {
        let Some(real) = self.confine(path).await? else {
            return Ok(None);
        };
        match tokio::fs::read(&real).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                RegistryError::Internal(format!(
                    "local registry: {} is corrupt: {e}",
                    self.shown(path)
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("reading", path, e)),
        }
    }

    pub(super) async fn write_json<T: Serialize>(
        &self,
        path: &Path,
        value: &T,
    ) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| RegistryError::Internal(format!("encoding {}: {e}", self.shown(path))))?;
        self.write_atomic(path, &bytes).await
    }

    /// Writes `bytes` to `path` through a temporary file and a rename, in a directory
    /// confined to the registry.
    pub(super) async fn write_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let (Some(parent), Some(file)) = (path.parent(), path.file_name()) else {
            return Err(RegistryError::Internal(format!(
                "local registry: {} has no directory",
                self.shown(path)
            )));
        };
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| self.io("creating", parent, e))?;
        let real = self.confine_existing(parent, "directory").await?.join(file);
        let tmp = real.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|e| self.io("writing", path, e))?;
        tokio::fs::rename(&tmp, &real)
            .await
            .map_err(|e| self.io("renaming", path, e))
    }
}
