//! The registry behind the proxy: MLflow's Model Registry in production, a local directory
//! embedded. Both pass one conformance suite (`tests/it/support/cases`).

pub mod local;
pub mod mlflow;
pub mod mlmodel;

use std::collections::BTreeMap;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use self::local::LocalRegistry;
pub use self::mlflow::{MlflowRegistry, MlflowSettings};
pub use self::mlmodel::{MlmodelError, mlmodel_for, onnx_file_of_mlmodel};

/// Why a registry call failed, classified the way callers act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The model, version or alias does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The registry refused a parameter; the message says which.
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the registry's state refuses it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The registry refused the proxy's credentials.
    #[error("{0}")]
    PermissionDenied(String),
    /// The registry asked for credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The registry rate-limited the proxy.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The registry cannot be reached, timed out, failed with a server error, or its
    /// circuit breaker is open: retry later.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The registry did not answer within the caller's deadline.
    #[error("registry: {0}")]
    DeadlineExceeded(String),
    /// The registry does not support the call.
    #[error("{0}")]
    Unimplemented(String),
    /// The registry answered something the proxy cannot understand.
    #[error("registry: {0}")]
    Internal(String),
}

/// "Not found" in the same words from every registry: the model is missing.
pub(crate) fn no_model(name: &str) -> RegistryError {
    RegistryError::NotFound(format!("model {name:?} does not exist"))
}

/// The model exists but not this version.
pub(crate) fn no_version(name: &str, version: i64) -> RegistryError {
    RegistryError::NotFound(format!("model {name:?} has no version {version}"))
}

/// The model exists but not this alias.
pub(crate) fn no_alias(name: &str, alias: &str) -> RegistryError {
    RegistryError::NotFound(format!("model {name:?} has no alias {alias:?}"))
}

impl RegistryError {
    /// Whether the registry could not be reached or did not answer in time (the cases
    /// where cached answers are served).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RegistryError::Unavailable(_) | RegistryError::DeadlineExceeded(_)
        )
    }
}

/// A registered model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelInfo {
    /// Model name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Aliases and the versions they point at.
    pub aliases: BTreeMap<String, i64>,
    /// Highest version number; 0 when there is none.
    pub latest_version: i64,
    /// Model tags.
    pub tags: BTreeMap<String, String>,
    /// Milliseconds since epoch, UTC.
    pub created_at_ms: i64,
    /// Milliseconds since epoch, UTC.
    pub updated_at_ms: i64,
}

/// One model version as the registry describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VersionInfo {
    /// Model name.
    pub name: String,
    /// Version number, >= 1.
    pub version: i64,
    /// Aliases pointing at this version, sorted.
    pub aliases: Vec<String>,
    /// Version tags.
    pub tags: BTreeMap<String, String>,
    /// Description.
    pub description: String,
    /// Legacy stage (`None`, `Staging`, `Production`, `Archived`).
    pub stage: String,
    /// Artifact location, e.g. `mlflow-artifacts:/1/abc/artifacts/model`.
    pub source: String,
    /// MLflow run, empty if none.
    pub run_id: String,
    /// Milliseconds since epoch, UTC.
    pub created_at_ms: i64,
    /// Milliseconds since epoch, UTC.
    pub updated_at_ms: i64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Token of the next page; empty on the last page.
    pub next_token: String,
}

/// How a version's artifact is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactFormat {
    /// One `.onnx` file.
    OnnxFile,
    /// MLflow's ONNX flavor: a directory whose `MLmodel` names the ONNX file.
    MlflowOnnx,
}

/// Bytes arriving from the registry.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

/// A version's ONNX bytes being read from the registry.
pub struct Artifact {
    /// Layout found in the registry.
    pub format: ArtifactFormat,
    /// Size announced by the registry, when it said.
    pub size_hint: Option<u64>,
    /// The ONNX bytes.
    pub body: ByteStream,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("format", &self.format)
            .field("size_hint", &self.size_hint)
            .finish_non_exhaustive()
    }
}

/// A new version to register.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Layout to store it in.
    pub format: ArtifactFormat,
    /// The ONNX bytes.
    pub onnx: Bytes,
    /// Version tags (the contract, `sha256`, …).
    pub tags: BTreeMap<String, String>,
    /// Description.
    pub description: String,
}

/// The legacy stages, as MLflow spells them.
pub const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

/// The canonical spelling of a stage name (case-insensitive), or `None` if it is not one.
pub fn canonical_stage(stage: &str) -> Option<&'static str> {
    STAGES
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(stage))
}

/// A model registry.
#[async_trait]
pub trait Registry: Send + Sync + std::fmt::Debug {
    /// `mlflow` or `local`, for logs and status.
    fn kind(&self) -> &'static str;

    /// Checks that the registry answers.
    async fn ping(&self) -> Result<(), RegistryError>;

    /// Creates a model; `AlreadyExists` if it does.
    async fn create_model(&self, name: &str, description: &str)
    -> Result<ModelInfo, RegistryError>;

    /// One model with its aliases.
    async fn get_model(&self, name: &str) -> Result<ModelInfo, RegistryError>;

    /// Models whose name starts with `prefix`, ordered by name.
    async fn list_models(
        &self,
        prefix: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<ModelInfo>, RegistryError>;

    /// Registers a new version of model `name` (which must exist), storing its artifact.
    async fn create_version(
        &self,
        name: &str,
        version: NewVersion,
    ) -> Result<VersionInfo, RegistryError>;

    /// One version.
    async fn get_version(&self, name: &str, version: i64) -> Result<VersionInfo, RegistryError>;

    /// Versions of `name`, newest first.
    async fn list_versions(
        &self,
        name: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<VersionInfo>, RegistryError>;

    /// The version `alias` points at.
    async fn version_by_alias(&self, name: &str, alias: &str)
    -> Result<VersionInfo, RegistryError>;

    /// The highest version, or with `stage` the highest version in that stage.
    async fn latest_version(
        &self,
        name: &str,
        stage: Option<&str>,
    ) -> Result<VersionInfo, RegistryError>;

    /// Points `alias` at `version`.
    async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<(), RegistryError>;

    /// Deletes `alias`; `NotFound` if it does not exist.
    async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), RegistryError>;

    /// Sets a version tag.
    async fn set_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
        value: &str,
    ) -> Result<(), RegistryError>;

    /// Moves a version to a legacy stage.
    async fn transition_stage(
        &self,
        name: &str,
        version: i64,
        stage: &str,
    ) -> Result<VersionInfo, RegistryError>;

    /// Opens the ONNX bytes of `version`.
    async fn open_artifact(&self, version: &VersionInfo) -> Result<Artifact, RegistryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_case_insensitive() {
        assert_eq!(canonical_stage("production"), Some("Production"));
        assert_eq!(canonical_stage("STAGING"), Some("Staging"));
        assert_eq!(canonical_stage("prod"), None);
    }
}
