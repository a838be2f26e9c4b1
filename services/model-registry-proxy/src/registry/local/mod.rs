//! The embedded registry: a local directory of versioned ONNX files with the same model,
//! version, alias, tag and stage semantics as MLflow.
//!
//! ```text
//! <root>/<model>/model.json             description, tags, aliases, times
//! <root>/<model>/<version>/version.json description, tags, stage, layout, times
//! <root>/<model>/<version>/model.onnx   a plain ONNX file, or
//! <root>/<model>/<version>/model/       MLflow's ONNX flavor (MLmodel + model.onnx)
//! ```
//!
//! Metadata files are replaced atomically (write, then rename), so a crash never leaves a
//! half-written one. Every path is confined to the registry directory after symlinks are
//! resolved: an `MLmodel` naming an absolute path, `..`, or a symlink leading elsewhere is
//! refused before anything outside is opened. Messages name paths relative to the registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

mod files;

use stockcast_runtime::clock::SharedClock;
use stockcast_runtime::echo::truncate_for_message;

use self::files::{reading_failed, relative_data_path};
use super::{
    Artifact, ArtifactFormat, ModelInfo, NewVersion, Page, Registry, RegistryError, VersionInfo,
    canonical_stage, mlmodel_for, no_alias, no_model, no_version, onnx_file_of_mlmodel,
};
use crate::uri::validate_name;

/// A registry in a local directory.
#[derive(Debug)]
pub struct LocalRegistry {
    /// Canonical (symlinks resolved): every path used must stay under it.
    root: PathBuf,
    /// Serializes changes (and the reads they depend on) within this process.
    lock: Mutex<()>,
    /// The time of creations and updates.
    clock: SharedClock,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
struct ModelFile {
    name: String,
    description: String,
    tags: BTreeMap<String, String>,
    aliases: BTreeMap<String, i64>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct VersionFile {
    version: i64,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default = "none_stage")]
    stage: String,
    format: ArtifactFormat,
    created_at_ms: i64,
    updated_at_ms: i64,
}

fn none_stage() -> String {
    "None".to_owned()
}

impl LocalRegistry {
    /// A registry in `root`, created if missing, dating changes by `clock`.
    pub async fn open(root: impl Into<PathBuf>, clock: SharedClock) -> Result<Self, RegistryError> {
        let root = root.into();
        // Start-up errors go to the operator: they may name the directory.
        let unusable = |e: std::io::Error| {
            RegistryError::Unavailable(format!("local registry directory {}: {e}", root.display()))
        };
        tokio::fs::create_dir_all(&root).await.map_err(unusable)?;
        let root = tokio::fs::canonicalize(&root).await.map_err(unusable)?;
        Ok(Self {
            root,
            lock: Mutex::new(()),
            clock,
        })
    }

    /// Where the registry lives.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn model_dir(&self, name: &str) -> Result<PathBuf, RegistryError> {
        validate_name(name).map_err(RegistryError::InvalidArgument)?;
        Ok(self.root.join(name))
    }

    async fn model(&self, name: &str) -> Result<ModelFile, RegistryError> {
        let path = self.model_dir(name)?.join("model.json");
        self.read_json(&path).await?.ok_or_else(|| no_model(name))
    }

    async fn version_file(&self, name: &str, version: i64) -> Result<VersionFile, RegistryError> {
        let path = self
            .model_dir(name)?
            .join(version.to_string())
            .join("version.json");
        match self.read_json(&path).await? {
            Some(v) => Ok(v),
            None => {
                self.model(name).await?;
                Err(no_version(name, version))
            }
        }
    }

    async fn version_numbers(&self, name: &str) -> Result<Vec<i64>, RegistryError> {
        let dir = self.model_dir(name)?;
        let real = self.confine_existing(&dir, "model directory").await?;
        let mut entries = tokio::fs::read_dir(&real)
            .await
            .map_err(|e| self.io("listing", &dir, e))?;
        let mut versions = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| self.io("listing", &dir, e))?
        {
            if let Some(v) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i64>().ok())
                && tokio::fs::try_exists(entry.path().join("version.json"))
                    .await
                    .unwrap_or(false)
            {
                versions.push(v);
            }
        }
        versions.sort_unstable_by(|a, b| b.cmp(a));
        Ok(versions)
    }

    fn info(&self, model: &ModelFile, v: VersionFile) -> VersionInfo {
        let dir = self.root.join(&model.name).join(v.version.to_string());
        let source = match v.format {
            ArtifactFormat::OnnxFile => dir.join("model.onnx"),
            ArtifactFormat::MlflowOnnx => dir.join("model"),
        };
        VersionInfo {
            name: model.name.clone(),
            version: v.version,
            aliases: model
                .aliases
                .iter()
                .filter(|(_, to)| **to == v.version)
                .map(|(a, _)| a.clone())
                .collect(),
            tags: v.tags,
            description: v.description,
            stage: v.stage,
            source: format!("file://{}", source.display()),
            run_id: String::new(),
            created_at_ms: v.created_at_ms,
            updated_at_ms: v.updated_at_ms,
        }
    }

    async fn model_info(&self, model: ModelFile) -> Result<ModelInfo, RegistryError> {
        let latest = self
            .version_numbers(&model.name)
            .await?
            .first()
            .copied()
            .unwrap_or(0);
        Ok(ModelInfo {
            name: model.name,
            description: model.description,
            aliases: model.aliases,
            latest_version: latest,
            tags: model.tags,
            created_at_ms: model.created_at_ms,
            updated_at_ms: model.updated_at_ms,
        })
    }
}

#[async_trait]
impl Registry for LocalRegistry {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn ping(&self) -> Result<(), RegistryError> {
        tokio::fs::metadata(&self.root)
            .await
            .map(|_| ())
            .map_err(|e| self.io("reading", &self.root, e))
    }

    async fn create_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<ModelInfo, RegistryError> {
        let _guard = self.lock.lock().await;
        let path = self.model_dir(name)?.join("model.json");
        if self.read_json::<ModelFile>(&path).await?.is_some() {
            return Err(RegistryError::AlreadyExists(format!(
                "model {name:?} already exists"
            )));
        }
        let now = self.clock.now_ms();
        let model = ModelFile {
            name: name.to_owned(),
            description: description.to_owned(),
            created_at_ms: now,
            updated_at_ms: now,
            ..ModelFile::default()
        };
        self.write_json(&path, &model).await?;
        self.model_info(model).await
    }

    async fn get_model(&self, name: &str) -> Result<ModelInfo, RegistryError> {
        let model = self.model(name).await?;
        self.model_info(model).await
    }

    async fn list_models(
        &self,
        prefix: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<ModelInfo>, RegistryError> {
        let mut entries = tokio::fs::read_dir(&self.root)
            .await
            .map_err(|e| self.io("listing", &self.root, e))?;
        let mut names = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| self.io("listing", &self.root, e))?
        {
            if let Some(name) = entry.file_name().to_str()
                && name.starts_with(prefix)
                && name > page_token
                && tokio::fs::try_exists(entry.path().join("model.json"))
                    .await
                    .unwrap_or(false)
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        let more = names.len() > page_size;
        names.truncate(page_size);
        let mut items = Vec::with_capacity(names.len());
        for name in &names {
            match self.get_model(name).await {
                Ok(model) => items.push(model),
                // One unusable entry (a symlink leading out, a bad name) does not hide the
                // others, nor stop the poller; it is logged where it is refused.
                Err(RegistryError::FailedPrecondition(_) | RegistryError::InvalidArgument(_)) => {
                    tracing::warn!(model = name, "local registry: model skipped in a listing");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(Page {
            next_token: if more {
                names.last().cloned().unwrap_or_default()
            } else {
                String::new()
            },
            items,
        })
    }

    async fn create_version(
        &self,
        name: &str,
        version: NewVersion,
    ) -> Result<VersionInfo, RegistryError> {
        let _guard = self.lock.lock().await;
        let model = self.model(name).await?;
        let number = self
            .version_numbers(name)
            .await?
            .first()
            .copied()
            .unwrap_or(0)
            + 1;
        let dir = self.model_dir(name)?.join(number.to_string());
        match version.format {
            ArtifactFormat::OnnxFile => {
                self.write_atomic(&dir.join("model.onnx"), &version.onnx)
                    .await?
            }
            ArtifactFormat::MlflowOnnx => {
                self.write_atomic(&dir.join("model").join("model.onnx"), &version.onnx)
                    .await?;
                self.write_atomic(
                    &dir.join("model").join("MLmodel"),
                    mlmodel_for("model.onnx").as_bytes(),
                )
                .await?;
            }
        }
        let now = self.clock.now_ms();
        let file = VersionFile {
            version: number,
            description: version.description,
            tags: version.tags,
            stage: none_stage(),
            format: version.format,
            created_at_ms: now,
            updated_at_ms: now,
        };
        // version.json last: a version exists once its metadata does.
        self.write_json(&dir.join("version.json"), &file).await?;
        Ok(self.info(&model, file))
    }

    async fn get_version(&self, name: &str, version: i64) -> Result<VersionInfo, RegistryError> {
        let file = self.version_file(name, version).await?;
        let model = self.model(name).await?;
        Ok(self.info(&model, file))
    }

    async fn list_versions(
        &self,
        name: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<VersionInfo>, RegistryError> {
        let model = self.model(name).await?;
        let below = if page_token.is_empty() {
            i64::MAX
        } else {
            page_token.parse::<i64>().map_err(|_| {
                RegistryError::InvalidArgument(format!(
                    "page_token {:?} is not a token this service issued",
                    truncate_for_message(page_token)
                ))
            })?
        };
        let numbers: Vec<i64> = self
            .version_numbers(name)
            .await?
            .into_iter()
            .filter(|v| *v < below)
            .collect();
        let more = numbers.len() > page_size;
        let mut items = Vec::new();
        for number in numbers.into_iter().take(page_size) {
            let file = self.version_file(name, number).await?;
            items.push(self.info(&model, file));
        }
        Ok(Page {
            next_token: match (more, items.last()) {
                (true, Some(last)) => last.version.to_string(),
                _ => String::new(),
            },
            items,
        })
    }

    async fn version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<VersionInfo, RegistryError> {
        let model = self.model(name).await?;
        let Some(version) = model.aliases.get(alias).copied() else {
            return Err(no_alias(name, alias));
        };
        self.get_version(name, version).await
    }

    async fn latest_version(
        &self,
        name: &str,
        stage: Option<&str>,
    ) -> Result<VersionInfo, RegistryError> {
        let model = self.model(name).await?;
        for number in self.version_numbers(name).await? {
            let file = self.version_file(name, number).await?;
            if stage.is_none_or(|s| s.eq_ignore_ascii_case(&file.stage)) {
                return Ok(self.info(&model, file));
            }
        }
        Err(RegistryError::NotFound(match stage {
            Some(stage) => format!("model {name:?} has no version in stage {stage}"),
            None => format!("model {name:?} has no versions"),
        }))
    }

    async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<(), RegistryError> {
        let _guard = self.lock.lock().await;
        self.version_file(name, version).await?;
        let mut model = self.model(name).await?;
        model.aliases.insert(alias.to_owned(), version);
        model.updated_at_ms = self.clock.now_ms();
        self.write_json(&self.model_dir(name)?.join("model.json"), &model)
            .await
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), RegistryError> {
        let _guard = self.lock.lock().await;
        let mut model = self.model(name).await?;
        if model.aliases.remove(alias).is_some() {
            model.updated_at_ms = self.clock.now_ms();
            self.write_json(&self.model_dir(name)?.join("model.json"), &model)
                .await?;
        }
        Ok(())
    }

    async fn set_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
        value: &str,
    ) -> Result<(), RegistryError> {
        if key.is_empty() {
            return Err(RegistryError::InvalidArgument(
                "tag key is empty".to_owned(),
            ));
        }
        let _guard = self.lock.lock().await;
        let mut file = self.version_file(name, version).await?;
        file.tags.insert(key.to_owned(), value.to_owned());
        file.updated_at_ms = self.clock.now_ms();
        let path = self
            .model_dir(name)?
            .join(version.to_string())
            .join("version.json");
        self.write_json(&path, &file).await
    }

    async fn transition_stage(
        &self,
        name: &str,
        version: i64,
        stage: &str,
    ) -> Result<VersionInfo, RegistryError> {
        let Some(stage) = canonical_stage(stage) else {
            return Err(RegistryError::InvalidArgument(format!(
                "stage {stage:?} is not one of None, Staging, Production, Archived"
            )));
        };
        {
            let _guard = self.lock.lock().await;
            let mut file = self.version_file(name, version).await?;
            file.stage = stage.to_owned();
            file.updated_at_ms = self.clock.now_ms();
            let path = self
                .model_dir(name)?
                .join(version.to_string())
                .join("version.json");
            self.write_json(&path, &file).await?;
        }
        self.get_version(name, version).await
    }

    async fn open_artifact(&self, version: &VersionInfo) -> Result<Artifact, RegistryError> {
        let file = self.version_file(&version.name, version.version).await?;
        let label = format!("models:/{}/{}", version.name, version.version);
        let dir = self
            .model_dir(&version.name)?
            .join(version.version.to_string());
        let path = match file.format {
            ArtifactFormat::OnnxFile => dir.join("model.onnx"),
            ArtifactFormat::MlflowOnnx => {
                let mlmodel_path = dir.join("model").join("MLmodel");
                let real = self.confine_existing(&mlmodel_path, "file").await?;
                let mlmodel = tokio::fs::read(&real)
                    .await
                    .map_err(|e| self.io("reading", &mlmodel_path, e))?;
                let data = onnx_file_of_mlmodel(&mlmodel)
                    .map_err(|e| RegistryError::FailedPrecondition(format!("{label}: {e}")))?;
                let relative = relative_data_path(&data).ok_or_else(|| {
                    tracing::warn!(model = %version.name, version = version.version, data, "local registry: MLmodel names a file outside its directory");
                    // The value is not repeated: it may name a file on the server.
                    RegistryError::FailedPrecondition(format!(
                        "{label}: its MLmodel names a file that is not a relative path inside \
                         the model directory (an absolute path, `..` or NUL); refusing it"
                    ))
                })?;
                dir.join("model").join(relative)
            }
        };
        let real = self.confine_existing(&path, "artifact").await?;
        // A FIFO or device would block or never end: only regular files are read.
        match tokio::fs::metadata(&real).await {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(RegistryError::FailedPrecondition(format!(
                    "{label}: the artifact {} is not a regular file; refusing it",
                    self.shown(&path)
                )));
            }
            Err(e) => return Err(self.io("reading", &path, e)),
        }
        let handle = tokio::fs::File::open(&real)
            .await
            .map_err(|e| self.io("opening", &path, e))?;
        let size_hint = handle.metadata().await.ok().map(|m| m.len());
        let path = self.shown(&path);
        let body = futures::stream::unfold(Some((handle, path)), |state| async move {
            let (mut handle, path) = state?;
            let mut buffer = BytesMut::with_capacity(256 * 1024);
            match handle.read_buf(&mut buffer).await {
                Ok(0) => None,
                Ok(_) => Some((Ok(buffer.freeze()), Some((handle, path)))),
                Err(e) => Some((Err(reading_failed(&path, e)), None)),
            }
        });
        Ok(Artifact {
            format: file.format,
            size_hint,
            body: Box::pin(body),
        })
    }
}
