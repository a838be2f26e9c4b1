//! The model registry proxy's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use stockcast_bus::BusSettings;
use stockcast_runtime::cli::ServiceSettings;
use stockcast_runtime::{ConfigError, Secret, ServerSettings, TelemetrySettings};
use stockcast_sql::DatabaseSettings;

use crate::registry::MlflowSettings;
use crate::registry::mlflow::MAX_RETRIES as MAX_MLFLOW_RETRIES;

/// Everything the proxy reads from configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// How it listens.
    pub server: ServerSettings,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
    /// The registry behind the proxy.
    pub registry: RegistrySettings,
    /// Where the audit log is stored.
    pub storage: DatabaseSettings,
    /// The event bus.
    pub bus: BusSettings,
    /// Topic names.
    pub topics: TopicSettings,
    /// Artifact and resolution caches.
    pub cache: CacheSettings,
    /// Polling the registry for alias changes made behind the proxy's back.
    pub poll: PollSettings,
    /// MLflow registry webhooks, a faster path than polling.
    pub webhook: WebhookSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            telemetry: TelemetrySettings::default(),
            registry: RegistrySettings::default(),
            storage: DatabaseSettings {
                max_connections: 4,
                ..DatabaseSettings::for_schema(crate::SCHEMA)
            },
            bus: BusSettings::default(),
            topics: TopicSettings::default(),
            cache: CacheSettings::default(),
            poll: PollSettings::default(),
            webhook: WebhookSettings::default(),
        }
    }
}

/// The `[webhook]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Where to receive MLflow's deliveries (`POST /mlflow/webhook`); absent turns it off.
    pub listen_addr: Option<std::net::SocketAddr>,
    /// The secret the MLflow webhook was created with (required with `listen_addr`).
    pub secret: Secret,
    /// Oldest delivery accepted, seconds (replay protection).
    pub max_age_s: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            listen_addr: None,
            secret: Secret::new(""),
            max_age_s: 300,
        }
    }
}

/// Which registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryKind {
    /// A local directory (embedded default).
    #[default]
    Local,
    /// An MLflow tracking server.
    Mlflow,
}

/// The `[registry]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// `local` or `mlflow`.
    pub kind: RegistryKind,
    /// Directory of the local registry, used when `kind = "local"`.
    pub local_dir: PathBuf,
    /// The MLflow server, used when `kind = "mlflow"`.
    pub mlflow: MlflowSettings,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            kind: RegistryKind::Local,
            local_dir: PathBuf::from("stockcast-models"),
            mlflow: MlflowSettings::default(),
        }
    }
}

impl RegistrySettings {
    /// Says in the log which registry is in use (at start-up), without credentials.
    pub fn log_choice(&self) {
        match self.kind {
            RegistryKind::Local => tracing::info!(
                registry = "local",
                dir = %self.local_dir.display(),
                "model registry: local directory"
            ),
            RegistryKind::Mlflow => {
                let uri = reqwest::Url::parse(&self.mlflow.tracking_uri).map_or_else(
                    |_| self.mlflow.tracking_uri.clone(),
                    |mut url| {
                        let _ = url.set_password(None);
                        let _ = url.set_username("");
                        url.to_string()
                    },
                );
                tracing::info!(registry = "mlflow", tracking_uri = %uri, "model registry: mlflow");
            }
        }
    }
}

/// The `[topics]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSettings {
    /// Model events (key = model name).
    pub model_events: String,
    /// Partitions when the service creates the topic.
    pub partitions: i32,
}

impl Default for TopicSettings {
    fn default() -> Self {
        Self {
            model_events: "stockcast.registry.model-events.v1".to_owned(),
            partitions: 3,
        }
    }
}

/// The `[cache]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Directory of the artifact cache.
    pub dir: PathBuf,
    /// Largest total size of cached artifacts, bytes; least recently used go first.
    pub max_bytes: u64,
    /// How long a resolution (alias → version) is reused without asking the registry,
    /// milliseconds. When the registry is unreachable, older resolutions are served, marked.
    pub resolution_ttl_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("stockcast-registry-cache"),
            max_bytes: 2 * 1024 * 1024 * 1024,
            resolution_ttl_ms: 5_000,
        }
    }
}

/// The `[poll]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollSettings {
    /// How often the registry's aliases are compared with the recorded ones, milliseconds;
    /// 0 turns polling off.
    pub interval_ms: u64,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            interval_ms: 10_000,
        }
    }
}

impl stockcast_runtime::Settings for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")?;
        self.storage.validate("storage")?;
        match self.registry.kind {
            RegistryKind::Local if self.registry.local_dir.as_os_str().is_empty() => {
                return Err(ConfigError::invalid("registry.local_dir", "is empty"));
            }
            // An MLflow server named while the local registry is in use is a contradiction:
            // serving an empty local directory instead would look like a working proxy.
            RegistryKind::Local
                if self.registry.mlflow.tracking_uri != MlflowSettings::default().tracking_uri =>
            {
                return Err(ConfigError::invalid(
                    "registry.mlflow.tracking_uri",
                    format!(
                        "is set ({:?}) but registry.kind is \"local\": set registry.kind = \
                         \"mlflow\" to use that MLflow server, or remove \
                         registry.mlflow.tracking_uri",
                        stockcast_runtime::echo::truncate_for_message(
                            &self.registry.mlflow.tracking_uri
                        )
                    ),
                ));
            }
            RegistryKind::Mlflow => {
                let uri = &self.registry.mlflow.tracking_uri;
                if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                    return Err(ConfigError::invalid(
                        "registry.mlflow.tracking_uri",
                        format!(
                            "{:?} must start with http:// or https://",
                            stockcast_runtime::echo::truncate_for_message(uri)
                        ),
                    ));
                }
                for (key, value) in [
                    (
                        "request_timeout_ms",
                        self.registry.mlflow.request_timeout_ms,
                    ),
                    (
                        "connect_timeout_ms",
                        self.registry.mlflow.connect_timeout_ms,
                    ),
                    (
                        "artifact_timeout_ms",
                        self.registry.mlflow.artifact_timeout_ms,
                    ),
                ] {
                    if value == 0 {
                        return Err(ConfigError::invalid(
                            format!("registry.mlflow.{key}"),
                            "must be greater than 0",
                        ));
                    }
                }
                let retries = self.registry.mlflow.retries;
                if retries > MAX_MLFLOW_RETRIES {
                    return Err(ConfigError::invalid(
                        "registry.mlflow.retries",
                        format!("{retries} is more than the maximum of {MAX_MLFLOW_RETRIES}"),
                    ));
                }
            }
            RegistryKind::Local => {}
        }
        if self.topics.model_events.is_empty() {
            return Err(ConfigError::invalid("topics.model_events", "is empty"));
        }
        if self.topics.partitions < 1 {
            return Err(ConfigError::invalid(
                "topics.partitions",
                "must be at least 1",
            ));
        }
        if self.webhook.listen_addr.is_some() && self.webhook.secret.is_empty() {
            return Err(ConfigError::invalid(
                "webhook.secret",
                "is empty: deliveries must be signed when webhook.listen_addr is set",
            ));
        }
        if self.cache.dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("cache.dir", "is empty"));
        }
        if self.cache.max_bytes < 1024 * 1024 {
            return Err(ConfigError::invalid(
                "cache.max_bytes",
                format!("{} is below the minimum of 1 MiB", self.cache.max_bytes),
            ));
        }
        Ok(())
    }
}

impl ServiceSettings for Settings {
    fn server(&self) -> &ServerSettings {
        &self.server
    }

    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockcast_runtime::Settings as _;

    fn invalid(configure: impl FnOnce(&mut Settings)) -> String {
        let mut settings = Settings::default();
        configure(&mut settings);
        settings
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn errors_name_the_key() {
        let e = invalid(|s| {
            s.registry.kind = RegistryKind::Mlflow;
            s.registry.mlflow.tracking_uri = "mlflow:5000".into();
        });
        assert!(
            e.contains("registry.mlflow.tracking_uri") && e.contains("http://"),
            "{e}"
        );
        let e = invalid(|s| {
            s.registry.kind = RegistryKind::Mlflow;
            s.registry.mlflow.request_timeout_ms = 0;
        });
        assert!(e.contains("registry.mlflow.request_timeout_ms"), "{e}");
        let e = invalid(|s| {
            s.registry.kind = RegistryKind::Mlflow;
            s.registry.mlflow.retries = u32::MAX;
        });
        assert!(
            e.contains("registry.mlflow.retries") && e.contains("maximum of 10"),
            "{e}"
        );
        let e = invalid(|s| s.registry.mlflow.tracking_uri = "http://mlflow:5000".into());
        assert!(
            e.contains("registry.mlflow.tracking_uri")
                && e.contains("registry.kind")
                && e.contains("mlflow:5000"),
            "{e}"
        );
        let e = invalid(|s| s.storage.url = Secret::new("mysql://x"));
        assert!(e.contains("storage.url"), "{e}");
        let e = invalid(|s| s.storage.schema = "Registry".into());
        assert!(e.contains("storage.schema"), "{e}");
        let e = invalid(|s| s.cache.max_bytes = 10);
        assert!(e.contains("cache.max_bytes") && e.contains("1 MiB"), "{e}");
        let e = invalid(|s| s.topics.model_events.clear());
        assert!(e.contains("topics.model_events"), "{e}");
    }
}
