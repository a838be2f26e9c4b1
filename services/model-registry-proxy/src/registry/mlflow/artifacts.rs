//! Artifacts through the tracking server's proxied artifact API: which file of a version
//! holds the ONNX bytes (a single file, or the one an ONNX flavor's `MLmodel` names), and
//! streaming it.

use bytes::Bytes;
use serde::Deserialize;

use super::MlflowRegistry;
use super::json::FileJson;
use crate::registry::mlmodel::{MAX_MLMODEL_BYTES, MlmodelError};
use crate::registry::{
    Artifact, ArtifactFormat, RegistryError, VersionInfo, no_version, onnx_file_of_mlmodel,
};

impl MlflowRegistry {
    /// The proxied-artifact path of an artifact URI (`mlflow-artifacts:/p`,
    /// `mlflow-artifacts://host:port/p`), resolved against the tracking URI.
    pub(super) fn artifact_path(uri: &str) -> Result<String, RegistryError> {
        let Some(rest) = uri.strip_prefix("mlflow-artifacts:") else {
            return Err(RegistryError::FailedPrecondition(format!(
                "artifact uri {uri:?} is not served by the tracking server: run MLflow with \
                 --serve-artifacts so that artifacts are mlflow-artifacts: URIs"
            )));
        };
        let path = match rest.strip_prefix("//") {
            Some(authority_and_path) => authority_and_path
                .split_once('/')
                .map_or("", |(_, path)| path),
            None => rest,
        };
        Ok(path.trim_matches('/').to_owned())
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<FileJson>, RegistryError> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Listing {
            files: Vec<FileJson>,
        }
        let listing: Listing = self
            .get("api/2.0/mlflow-artifacts/artifacts", &[("path", path)])
            .await?;
        Ok(listing.files)
    }

    /// The bytes of a small file (an `MLmodel`): refused unread when the server announces
    /// more than [`MAX_MLMODEL_BYTES`].
    async fn download_bytes(&self, path: &str) -> Result<Bytes, RegistryError> {
        let response = self.http.download(path).await?;
        if let Some(size) = response
            .content_length()
            .filter(|n| *n > MAX_MLMODEL_BYTES as u64)
        {
            return Err(RegistryError::FailedPrecondition(format!(
                "{path}: {}",
                MlmodelError::TooLarge(usize::try_from(size).unwrap_or(usize::MAX))
            )));
        }
        response
            .bytes()
            .await
            .map_err(|e| RegistryError::Unavailable(format!("reading {path}: {e}")))
    }

    async fn stream(&self, path: &str, format: ArtifactFormat) -> Result<Artifact, RegistryError> {
        let response = self.http.download(path).await?;
        let size_hint = response.content_length();
        let owned = path.to_owned();
        let body = futures::stream::unfold(Some(response), move |state| {
            let path = owned.clone();
            async move {
                let mut response = state?;
                match response.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
                    Ok(None) => None,
                    Err(e) => Some((
                        Err(RegistryError::Unavailable(format!(
                            "downloading {path}: {e}"
                        ))),
                        None,
                    )),
                }
            }
        });
        Ok(Artifact {
            format,
            size_hint,
            body: Box::pin(body),
        })
    }

    /// Opens the ONNX bytes of `version`: a single file, or the file the `MLmodel` of an
    /// ONNX flavor directory names (refusing directories with more files than that).
    pub(super) async fn open(&self, version: &VersionInfo) -> Result<Artifact, RegistryError> {
        #[derive(Deserialize)]
        struct DownloadUri {
            artifact_uri: String,
        }
        let v = version.version.to_string();
        let uri: DownloadUri = match self
            .get(
                "api/2.0/mlflow/model-versions/get-download-uri",
                &[("name", version.name.as_str()), ("version", &v)],
            )
            .await
        {
            Ok(uri) => uri,
            Err(e) => {
                let missing = no_version(&version.name, version.version);
                return Err(self.not_found(e, &version.name, missing).await);
            }
        };
        let path = Self::artifact_path(&uri.artifact_uri)?;
        if path.ends_with(".onnx") {
            return self.stream(&path, ArtifactFormat::OnnxFile).await;
        }
        let files = self.list_dir(&path).await?;
        let base = |f: &FileJson| f.path.rsplit('/').next().unwrap_or_default().to_owned();
        if files.is_empty() {
            // A single file that does not end in `.onnx`.
            return self.stream(&path, ArtifactFormat::OnnxFile).await;
        }
        if files.iter().any(|f| !f.is_dir && base(f) == "MLmodel") {
            let mlmodel = self.download_bytes(&format!("{path}/MLmodel")).await?;
            let data = onnx_file_of_mlmodel(&mlmodel).map_err(|e| {
                RegistryError::FailedPrecondition(format!(
                    "{}: {e} (at {})",
                    version_label(version),
                    uri.artifact_uri
                ))
            })?;
            let extra: Vec<String> = files
                .iter()
                .map(base)
                .filter(|f| *f != data && !MLMODEL_METADATA.contains(&f.as_str()))
                .collect();
            if !extra.is_empty() {
                return Err(RegistryError::FailedPrecondition(format!(
                    "{}: the model directory {} holds {} besides {data} (ONNX external data?); \
                     the proxy serves {data} alone, which could not be loaded without them: \
                     log the model with mlflow.onnx.log_model(..., save_as_external_data=False)",
                    version_label(version),
                    uri.artifact_uri,
                    extra.join(", ")
                )));
            }
            return self
                .stream(&format!("{path}/{data}"), ArtifactFormat::MlflowOnnx)
                .await;
        }
        let onnx: Vec<_> = files
            .iter()
            .filter(|f| !f.is_dir && f.path.ends_with(".onnx"))
            .collect();
        match onnx.as_slice() {
            [one] => {
                self.stream(&format!("{path}/{}", base(one)), ArtifactFormat::OnnxFile)
                    .await
            }
            _ => Err(RegistryError::FailedPrecondition(format!(
                "{}: artifact {} holds no MLmodel and {} .onnx files (expected one)",
                version_label(version),
                uri.artifact_uri,
                onnx.len()
            ))),
        }
    }
}

/// Files MLflow writes next to a flavor's data file that a model does not need to load.
const MLMODEL_METADATA: [&str; 8] = [
    "MLmodel",
    "conda.yaml",
    "python_env.yaml",
    "requirements.txt",
    "input_example.json",
    "serving_input_example.json",
    "registered_model_meta",
    "metadata",
];

fn version_label(v: &VersionInfo) -> String {
    format!("models:/{}/{}", v.name, v.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_resolve_against_the_tracking_server() {
        assert_eq!(
            MlflowRegistry::artifact_path("mlflow-artifacts:/0/abc/artifacts/model").ok(),
            Some("0/abc/artifacts/model".to_owned())
        );
        assert_eq!(
            MlflowRegistry::artifact_path("mlflow-artifacts://mlflow:5000/0/abc/model.onnx").ok(),
            Some("0/abc/model.onnx".to_owned())
        );
        assert!(matches!(
            MlflowRegistry::artifact_path("s3://bucket/model"),
            Err(RegistryError::FailedPrecondition(m)) if m.contains("--serve-artifacts")
        ));
    }
}
