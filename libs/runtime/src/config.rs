//! Layered typed configuration: built-in defaults < file < environment
//! (`STOCKCAST_<SERVICE>__SECTION__KEY`) < command-line overrides, validated before any port
//! is bound.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A service's typed settings. Every struct in it carries `#[serde(deny_unknown_fields,
/// default)]`, so a missing key takes its built-in default and a misspelt one is refused.
pub trait Settings: Default + Serialize + DeserializeOwned {
    /// Checks the values that parse but cannot work, naming the key at fault.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Why a configuration cannot be used. Every variant names where the fault is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key holds a value of the wrong type or an unusable value.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key, e.g. `server.request_timeout_ms`.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
    /// The config file cannot be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// The file named by `--config`.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A command-line override is not `key=value`.
    #[error("override {0:?} is not of the form key=value")]
    Override(String),
    /// Anything else the layering reports.
    #[error("config: {0}")]
    Other(String),
}

impl ConfigError {
    /// A value that parsed but cannot work.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Where a service's configuration comes from. Tests build one with their own environment
/// map instead of touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// Service name as in `STOCKCAST_<SERVICE>__…`, e.g. `feature-store`.
    pub service: String,
    /// Optional TOML, YAML or JSON file (by extension; TOML when unknown).
    pub file: Option<PathBuf>,
    /// Environment variables, normally `std::env::vars()`.
    pub env: HashMap<String, String>,
    /// `key=value` overrides from the command line, highest precedence.
    pub overrides: Vec<String>,
    /// `(key, value)` defaults below every other layer, for settings whose built-in default
    /// differs per service (its ports).
    pub defaults: Vec<(String, String)>,
}

impl ConfigSource {
    /// A source for `service` reading the process environment.
    pub fn from_process(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            env: std::env::vars().collect(),
            ..Self::default()
        }
    }

    /// The environment prefix for this service, e.g. `STOCKCAST_FEATURE_STORE`.
    pub fn env_prefix(&self) -> String {
        format!(
            "STOCKCAST_{}",
            self.service.to_ascii_uppercase().replace('-', "_")
        )
    }
}

/// Standard OpenTelemetry variables mapped onto settings keys, below the service's own
/// variables in precedence.
const OTEL_ENV: &[(&str, &str)] = &[("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint")];

/// Loads, layers, deserializes and validates `T`.
pub fn load<T: Settings>(source: &ConfigSource) -> Result<T, ConfigError> {
    // Built-in defaults come from `#[serde(default)]` on every settings struct, not from a
    // serialized layer: a serialized default would carry redacted secrets.
    let mut builder = Config::builder();
    for (key, value) in &source.defaults {
        builder = builder
            .set_default(key.as_str(), value.as_str())
            .map_err(|e| ConfigError::Other(e.to_string()))?;
    }

    if let Some(path) = &source.file {
        builder = builder.add_source(file_source(path)?);
    }

    let mut otel = Config::builder();
    for (var, key) in OTEL_ENV {
        if let Some(value) = source.env.get(*var).filter(|v| !v.is_empty()) {
            otel = otel
                .set_override(*key, value.as_str())
                .map_err(|e| ConfigError::Other(e.to_string()))?;
        }
    }
    builder = builder.add_source(
        otel.build()
            .map_err(|e| ConfigError::Other(e.to_string()))?,
    );

    let service_env: HashMap<String, String> = source
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{}__", source.env_prefix())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    builder = builder.add_source(
        Environment::with_prefix(&source.env_prefix())
            .prefix_separator("__")
            .separator("__")
            .source(Some(service_env)),
    );

    for entry in &source.overrides {
        let (key, value) = entry
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| ConfigError::Override(entry.clone()))?;
        builder = builder
            .set_override(key.trim(), value)
            .map_err(|e| ConfigError::Other(e.to_string()))?;
    }

    let layered = builder.build().map_err(|e| from_config_error(e, None))?;
    let settings: T = serde_path_to_error::deserialize(layered).map_err(|e| {
        let key = e.path().to_string();
        from_config_error(e.into_inner(), Some(key))
    })?;
    settings.validate()?;
    Ok(settings)
}

/// The effective configuration as TOML, secrets redacted, for `--print-config`.
pub fn render<T: Serialize>(settings: &T) -> Result<String, ConfigError> {
    toml::to_string_pretty(settings).map_err(|e| ConfigError::Other(e.to_string()))
}

fn file_source(path: &Path) -> Result<File<config::FileSourceFile, FileFormat>, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::File {
            path: path.to_owned(),
            message: "no such file".to_owned(),
        });
    }
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => FileFormat::Yaml,
        Some("json") => FileFormat::Json,
        _ => FileFormat::Toml,
    };
    Ok(File::from(path).format(format).required(true))
}

fn from_config_error(error: config::ConfigError, path: Option<String>) -> ConfigError {
    match error {
        config::ConfigError::Type {
            key,
            unexpected,
            expected,
            ..
        } => ConfigError::Invalid {
            key: key.or(path).unwrap_or_default(),
            message: format!("expected {expected}, found {unexpected}"),
        },
        config::ConfigError::FileParse { uri, cause } => ConfigError::File {
            path: PathBuf::from(uri.unwrap_or_default()),
            message: cause.to_string(),
        },
        other => {
            let message = other.to_string();
            match path.filter(|p| !p.is_empty() && p != ".") {
                Some(key) => ConfigError::Invalid { key, message },
                None => ConfigError::Other(message),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{ServerSettings, TelemetrySettings};
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        server: ServerSettings,
        telemetry: TelemetrySettings,
        api_key: crate::Secret,
    }

    impl Settings for Demo {
        fn validate(&self) -> Result<(), ConfigError> {
            self.server.validate("server")?;
            self.telemetry.validate("telemetry")
        }
    }

    fn source(env: &[(&str, &str)], overrides: &[&str]) -> ConfigSource {
        ConfigSource {
            service: "feature-store".to_owned(),
            file: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
            defaults: vec![("server.grpc_addr".to_owned(), "127.0.0.1:50052".to_owned())],
        }
    }

    #[test]
    fn defaults_load_without_any_source() {
        let demo: Demo = load(&source(&[], &[])).unwrap();
        let expected = ServerSettings::on_port(50052);
        assert_eq!(
            demo.server, expected,
            "built-in defaults plus the per-service port"
        );
    }

    #[test]
    fn layers_apply_in_order_file_env_override() {
        let dir = std::env::temp_dir().join(format!("stockcast-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("feature-store.toml");
        std::fs::write(
            &file,
            "[server]\nrequest_timeout_ms = 111\nconcurrency_limit = 7\nshutdown_grace_ms = 5\n",
        )
        .unwrap();
        let mut src = source(
            &[
                ("STOCKCAST_FEATURE_STORE__SERVER__CONCURRENCY_LIMIT", "8"),
                ("STOCKCAST_FEATURE_STORE__SERVER__SHUTDOWN_GRACE_MS", "6"),
                ("STOCKCAST_INGESTION__SERVER__CONCURRENCY_LIMIT", "999"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ],
            &["server.shutdown_grace_ms=7"],
        );
        src.file = Some(file);
        let demo: Demo = load(&src).unwrap();
        assert_eq!(demo.server.request_timeout_ms, 111, "file");
        assert_eq!(demo.server.concurrency_limit, 8, "env beats file");
        assert_eq!(demo.server.shutdown_grace_ms, 7, "override beats env");
        assert_eq!(
            demo.telemetry.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4317")
        );
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = load::<Demo>(&source(
            &[(
                "STOCKCAST_FEATURE_STORE__SERVER__REQUEST_TIMEOUT_MS",
                "soon",
            )],
            &[],
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("server.request_timeout_ms"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let err = load::<Demo>(&source(&[], &["server.grpc_adr=127.0.0.1:1"])).unwrap_err();
        assert!(err.to_string().contains("grpc_adr"), "{err}");
    }

    #[test]
    fn validation_names_its_key() {
        let err = load::<Demo>(&source(&[], &["telemetry.sample_ratio=1.5"])).unwrap_err();
        assert!(err.to_string().contains("telemetry.sample_ratio"), "{err}");
        let err = load::<Demo>(&source(&[], &["server.concurrency_limit=0"])).unwrap_err();
        assert!(
            err.to_string().contains("server.concurrency_limit"),
            "{err}"
        );
    }

    /// Found by `tests/it/config_props.rs`: a limit above what a semaphore holds loaded, then
    /// panicked when the server built its layers.
    #[test]
    fn a_concurrency_limit_above_the_maximum_is_refused_naming_the_key() {
        for value in [usize::MAX.to_string(), "9223372036854775807".to_owned()] {
            let err = load::<Demo>(&source(
                &[],
                &[&format!("server.concurrency_limit={value}")],
            ))
            .unwrap_err();
            assert!(
                err.to_string().contains("server.concurrency_limit"),
                "{err}"
            );
        }
        let max = crate::settings::MAX_CONCURRENCY_LIMIT;
        let demo: Demo = load(&source(&[], &[&format!("server.concurrency_limit={max}")])).unwrap();
        assert_eq!(
            demo.server.concurrency_limit, max,
            "the maximum itself loads"
        );
    }

    #[test]
    fn an_override_without_equals_is_refused() {
        let err = load::<Demo>(&source(&[], &["server.grpc_addr"])).unwrap_err();
        assert!(matches!(err, ConfigError::Override(_)), "{err}");
    }

    #[test]
    fn rendering_redacts_secrets() {
        let demo: Demo = load(&source(
            &[("STOCKCAST_FEATURE_STORE__API_KEY", "s3cr3t")],
            &[],
        ))
        .unwrap();
        assert_eq!(demo.api_key.expose(), "s3cr3t");
        let text = render(&demo).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains(crate::secret::REDACTED), "{text}");
    }
}
