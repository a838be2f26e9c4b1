//! The MLflow Model Registry over its REST API 2.0, with artifacts through the tracking
//! server's proxied artifact API (`--serve-artifacts`).

mod artifacts;
mod breaker;
mod http;
mod json;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use stockcast_runtime::Secret;
use stockcast_runtime::echo::truncate_for_message;

use self::http::{Http, Idempotent};
use self::json::{
    ModelVersionAnswer, ModelVersionJson, RegisteredModelAnswer, RegisteredModelJson, RunAnswer,
    VersionsAnswer,
};
use super::{
    Artifact, ArtifactFormat, ModelInfo, NewVersion, Page, Registry, RegistryError, VersionInfo,
    mlmodel_for, no_alias, no_model, no_version,
};

/// The `[registry.mlflow]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlflowSettings {
    /// Tracking server URL, e.g. `http://mlflow:5000`.
    pub tracking_uri: String,
    /// Bearer token (`MLFLOW_TRACKING_TOKEN`), empty for none.
    pub token: Secret,
    /// Deadline of a REST call, milliseconds.
    pub request_timeout_ms: u64,
    /// Deadline of a TCP connect, milliseconds.
    pub connect_timeout_ms: u64,
    /// Deadline of one artifact download or upload, milliseconds.
    pub artifact_timeout_ms: u64,
    /// Retries of an idempotent call after a transient failure.
    pub retries: u32,
    /// First retry delay, doubled each retry (up to 30 s) and shortened by up to half at
    /// random, milliseconds.
    pub retry_backoff_ms: u64,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the open breaker refuses calls before a trial, milliseconds.
    pub breaker_cooldown_ms: u64,
    /// Experiment whose runs hold the artifacts of versions registered through the proxy.
    pub experiment_id: String,
}

impl Default for MlflowSettings {
    fn default() -> Self {
        Self {
            tracking_uri: "http://127.0.0.1:5000".to_owned(),
            token: Secret::new(""),
            request_timeout_ms: 5_000,
            connect_timeout_ms: 1_000,
            artifact_timeout_ms: 300_000,
            retries: 2,
            retry_backoff_ms: 100,
            breaker_failures: 5,
            breaker_cooldown_ms: 5_000,
            experiment_id: "0".to_owned(),
        }
    }
}

/// Most retries `MlflowSettings::retries` may ask for.
pub const MAX_RETRIES: u32 = 10;

/// The MLflow registry.
#[derive(Debug)]
pub struct MlflowRegistry {
    http: Http,
    experiment_id: String,
}

impl MlflowRegistry {
    /// A client of the tracking server in `settings` (no connection is made yet).
    pub fn new(settings: &MlflowSettings) -> Result<Self, RegistryError> {
        Ok(Self {
            http: Http::new(settings)?,
            experiment_id: settings.experiment_id.clone(),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, RegistryError> {
        self.http
            .json(Method::GET, path, query, None, Idempotent::Yes)
            .await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
        idempotent: Idempotent,
    ) -> Result<T, RegistryError> {
        self.http
            .json(Method::POST, path, &[], Some(&body), idempotent)
            .await
    }

    /// The registered model `name` as MLflow answers it; a missing one in the project's words.
    async fn registered_model(&self, name: &str) -> Result<RegisteredModelJson, RegistryError> {
        match self
            .get::<RegisteredModelAnswer>("api/2.0/mlflow/registered-models/get", &[("name", name)])
            .await
        {
            Ok(answer) => Ok(answer.registered_model),
            Err(RegistryError::NotFound(raw)) => {
                tracing::debug!(raw, "mlflow: model not found");
                Err(no_model(name))
            }
            Err(error) => Err(error),
        }
    }

    /// MLflow's "not found" about something of model `name` in the project's words: the
    /// model is missing, or else `missing` (its version or alias). MLflow's own text says
    /// neither consistently (a missing alias is an `INVALID_PARAMETER_VALUE` naming no model).
    async fn not_found(
        &self,
        error: RegistryError,
        name: &str,
        missing: RegistryError,
    ) -> RegistryError {
        let RegistryError::NotFound(raw) = error else {
            return error;
        };
        tracing::debug!(raw, "mlflow: not found");
        match self.registered_model(name).await {
            Err(no_such_model @ RegistryError::NotFound(_)) => no_such_model,
            _ => missing,
        }
    }
}

/// Longest page token passed on to MLflow, bytes (its tokens are short base64).
const MAX_PAGE_TOKEN: usize = 4_096;

fn not_issued(token: &str) -> RegistryError {
    RegistryError::InvalidArgument(format!(
        "page_token {:?} is not a token this service issued",
        truncate_for_message(token)
    ))
}

/// Refuses a page token MLflow cannot have issued (its tokens are base64) before it is sent:
/// MLflow answers some (non-ASCII ones) with HTTP 500, which would count towards opening
/// the circuit breaker for everyone.
fn check_token(token: &str) -> Result<(), RegistryError> {
    let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_');
    if token.len() > MAX_PAGE_TOKEN || !token.bytes().all(base64) {
        return Err(not_issued(token));
    }
    Ok(())
}

/// MLflow's refusal of a page token (its words: "Invalid page token, …") as a refusal naming
/// the field, like the local registry's.
fn bad_token(error: RegistryError, token: &str) -> RegistryError {
    match error {
        RegistryError::InvalidArgument(raw)
            if !token.is_empty() && raw.to_ascii_lowercase().contains("page token") =>
        {
            tracing::debug!(raw, "mlflow refused a page token");
            not_issued(token)
        }
        other => other,
    }
}

#[async_trait]
impl Registry for MlflowRegistry {
    fn kind(&self) -> &'static str {
        "mlflow"
    }

    async fn ping(&self) -> Result<(), RegistryError> {
        let _: serde_json::Value = self
            .get(
                "api/2.0/mlflow/registered-models/search",
                &[("max_results", "1")],
            )
            .await?;
        Ok(())
    }

    async fn create_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<ModelInfo, RegistryError> {
        let answer: RegisteredModelAnswer = self
            .post(
                "api/2.0/mlflow/registered-models/create",
                json!({"name": name, "description": description}),
                Idempotent::No,
            )
            .await?;
        Ok(answer.registered_model.into())
    }

    async fn get_model(&self, name: &str) -> Result<ModelInfo, RegistryError> {
        let mut model: ModelInfo = self.registered_model(name).await?.into();
        if model.latest_version == 0 {
            // Registries without stages may leave `latest_versions` empty.
            model.latest_version = match self.latest_version(name, None).await {
                Ok(v) => v.version,
                Err(RegistryError::NotFound(_)) => 0,
                Err(e) => return Err(e),
            };
        }
        Ok(model)
    }

    async fn list_models(
        &self,
        prefix: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<ModelInfo>, RegistryError> {
        check_token(page_token)?;
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Answer {
            registered_models: Vec<RegisteredModelJson>,
            next_page_token: String,
        }
        let max = page_size.to_string();
        // LIKE treats `_` as a wildcard: the answer is filtered again below.
        let filter = format!("name LIKE '{}%'", prefix.replace('\'', "''"));
        let mut query = vec![("max_results", max.as_str()), ("order_by", "name ASC")];
        if !prefix.is_empty() {
            query.push(("filter", filter.as_str()));
        }
        if !page_token.is_empty() {
            query.push(("page_token", page_token));
        }
        let answer: Answer = self
            .get("api/2.0/mlflow/registered-models/search", &query)
            .await
            .map_err(|e| bad_token(e, page_token))?;
        Ok(Page {
            items: answer
                .registered_models
                .into_iter()
                .filter(|m| m.name.starts_with(prefix))
                .map(ModelInfo::from)
                .collect(),
            next_token: answer.next_page_token,
        })
    }

    async fn create_version(
        &self,
        name: &str,
        version: NewVersion,
    ) -> Result<VersionInfo, RegistryError> {
        // MLflow accepts an artifact source only inside a run: one run per upload.
        let run: RunAnswer = self
            .post(
                "api/2.0/mlflow/runs/create",
                json!({
                    "experiment_id": self.experiment_id,
                    // MLflow keeps at most 250 characters of a run name.
                    "run_name": format!(
                        "stockcast-register-{}",
                        name.chars().take(200).collect::<String>()
                    ),
                    "start_time": chrono::Utc::now().timestamp_millis(),
                }),
                Idempotent::No,
            )
            .await?;
        let info = run.run.info;
        let root = Self::artifact_path(&info.artifact_uri)?;
        let source = match version.format {
            ArtifactFormat::OnnxFile => {
                self.http
                    .upload(&format!("{root}/model.onnx"), version.onnx.clone())
                    .await?;
                format!("{}/model.onnx", info.artifact_uri)
            }
            ArtifactFormat::MlflowOnnx => {
                self.http
                    .upload(&format!("{root}/model/model.onnx"), version.onnx.clone())
                    .await?;
                self.http
                    .upload(
                        &format!("{root}/model/MLmodel"),
                        Bytes::from(mlmodel_for("model.onnx")),
                    )
                    .await?;
                format!("{}/model", info.artifact_uri)
            }
        };
        let _: serde_json::Value = self
            .post(
                "api/2.0/mlflow/runs/update",
                json!({"run_id": info.run_id, "status": "FINISHED",
                       "end_time": chrono::Utc::now().timestamp_millis()}),
                Idempotent::Yes,
            )
            .await?;
        let tags: Vec<_> = version
            .tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let answer: ModelVersionAnswer = self
            .post(
                "api/2.0/mlflow/model-versions/create",
                json!({"name": name, "source": source, "run_id": info.run_id,
                       "tags": tags, "description": version.description}),
                Idempotent::No,
            )
            .await?;
        answer.model_version.try_into()
    }

    async fn get_version(&self, name: &str, version: i64) -> Result<VersionInfo, RegistryError> {
        let v = version.to_string();
        let answer: ModelVersionAnswer = match self
            .get(
                "api/2.0/mlflow/model-versions/get",
                &[("name", name), ("version", &v)],
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) => return Err(self.not_found(e, name, no_version(name, version)).await),
        };
        answer.model_version.try_into()
    }

    async fn list_versions(
        &self,
        name: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<VersionInfo>, RegistryError> {
        check_token(page_token)?;
        // A missing model is NOT_FOUND, not an empty list.
        self.registered_model(name).await?;
        let max = page_size.to_string();
        let filter = format!("name='{}'", name.replace('\'', "''"));
        let mut query = vec![
            ("filter", filter.as_str()),
            ("max_results", max.as_str()),
            ("order_by", "version_number DESC"),
        ];
        if !page_token.is_empty() {
            query.push(("page_token", page_token));
        }
        let answer: VersionsAnswer = self
            .get("api/2.0/mlflow/model-versions/search", &query)
            .await
            .map_err(|e| bad_token(e, page_token))?;
        Ok(Page {
            items: answer
                .model_versions
                .into_iter()
                .map(VersionInfo::try_from)
                .collect::<Result<_, _>>()?,
            next_token: answer.next_page_token,
        })
    }

    async fn version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<VersionInfo, RegistryError> {
        let answer: ModelVersionAnswer = match self
            .get(
                "api/2.0/mlflow/registered-models/alias",
                &[("name", name), ("alias", alias)],
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) => return Err(self.not_found(e, name, no_alias(name, alias)).await),
        };
        answer.model_version.try_into()
    }

    async fn latest_version(
        &self,
        name: &str,
        stage: Option<&str>,
    ) -> Result<VersionInfo, RegistryError> {
        let versions: Vec<ModelVersionJson> = match stage {
            Some(stage) => {
                let answer: VersionsAnswer = self
                    .post(
                        "api/2.0/mlflow/registered-models/get-latest-versions",
                        json!({"name": name, "stages": [stage]}),
                        Idempotent::Yes,
                    )
                    .await
                    .map_err(|e| match e {
                        RegistryError::NotFound(_) => no_model(name),
                        e => e,
                    })?;
                answer.model_versions
            }
            None => self.list_versions(name, 1, "").await.map(|page| {
                page.items
                    .into_iter()
                    .map(|v| ModelVersionJson {
                        version: v.version,
                        ..ModelVersionJson::default()
                    })
                    .collect()
            })?,
        };
        let Some(newest) = versions.iter().map(|v| v.version).max() else {
            return Err(RegistryError::NotFound(match stage {
                Some(stage) => format!("model {name:?} has no version in stage {stage}"),
                None => format!("model {name:?} has no versions"),
            }));
        };
        self.get_version(name, newest).await
    }

    async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<(), RegistryError> {
        let set: Result<serde_json::Value, _> = self
            .post(
                "api/2.0/mlflow/registered-models/alias",
                json!({"name": name, "alias": alias, "version": version.to_string()}),
                Idempotent::Yes,
            )
            .await;
        match set {
            Ok(_) => Ok(()),
            Err(e) => Err(self.not_found(e, name, no_version(name, version)).await),
        }
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), RegistryError> {
        let body = json!({"name": name, "alias": alias});
        let deleted: Result<serde_json::Value, _> = self
            .http
            .json(
                Method::DELETE,
                "api/2.0/mlflow/registered-models/alias",
                &[],
                Some(&body),
                Idempotent::Yes,
            )
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) => Err(self.not_found(e, name, no_alias(name, alias)).await),
        }
    }

    async fn set_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
        value: &str,
    ) -> Result<(), RegistryError> {
        let _: serde_json::Value = self
            .post(
                "api/2.0/mlflow/model-versions/set-tag",
                json!({"name": name, "version": version.to_string(), "key": key, "value": value}),
                Idempotent::Yes,
            )
            .await?;
        Ok(())
    }

    async fn transition_stage(
        &self,
        name: &str,
        version: i64,
        stage: &str,
    ) -> Result<VersionInfo, RegistryError> {
        let answer: ModelVersionAnswer = self
            .post(
                "api/2.0/mlflow/model-versions/transition-stage",
                json!({"name": name, "version": version.to_string(), "stage": stage,
                       "archive_existing_versions": false}),
                Idempotent::Yes,
            )
            .await?;
        answer.model_version.try_into()
    }

    async fn open_artifact(&self, version: &VersionInfo) -> Result<Artifact, RegistryError> {
        self.open(version).await
    }
}
