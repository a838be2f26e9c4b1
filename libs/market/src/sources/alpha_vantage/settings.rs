//! Settings of the Alpha Vantage source.

use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use stockcast_runtime::{ConfigError, Secret};

/// How the service talks to Alpha Vantage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlphaVantageSettings {
    /// Endpoint of the API; tests point it at a local server.
    pub base_url: String,
    /// API key. Never logged; an empty key makes every Alpha Vantage job fail at planning.
    pub api_key: Secret,
    /// Requests allowed in any sliding minute (5 on the free plan).
    pub calls_per_minute: u32,
    /// Requests allowed per UTC day (25 on the free plan).
    pub calls_per_day: u32,
    /// Deadline of one request, body included, milliseconds.
    pub request_timeout_ms: u64,
    /// Retries of a retryable failure within one fetch, after the first attempt.
    pub max_retries: u32,
    /// First retry delay, milliseconds; it doubles per retry (capped at a minute) and is
    /// jittered down to half.
    pub retry_base_ms: u64,
}

impl Default for AlphaVantageSettings {
    fn default() -> Self {
        Self {
            base_url: "https://www.alphavantage.co/query".to_owned(),
            api_key: Secret::default(),
            calls_per_minute: 5,
            calls_per_day: 25,
            request_timeout_ms: 30_000,
            max_retries: 5,
            retry_base_ms: 1_000,
        }
    }
}

impl AlphaVantageSettings {
    /// Checks the values that parse but cannot work; `section` is the settings' key
    /// (e.g. `alpha_vantage`) so the message names the full key at fault.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let key = |name: &str| format!("{section}.{name}");
        match Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            Ok(url) => {
                return Err(ConfigError::invalid(
                    key("base_url"),
                    format!(
                        "{:?} is not an http or https URL (scheme {:?})",
                        self.base_url,
                        url.scheme()
                    ),
                ));
            }
            Err(e) => {
                return Err(ConfigError::invalid(
                    key("base_url"),
                    format!("{:?} is not a URL: {e}", self.base_url),
                ));
            }
        }
        for (name, value) in [
            ("calls_per_minute", u64::from(self.calls_per_minute)),
            ("calls_per_day", u64::from(self.calls_per_day)),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key(name), "must be at least 1"));
            }
        }
        if self.max_retries > MAX_RETRIES {
            return Err(ConfigError::invalid(
                key("max_retries"),
                format!("{} is above the maximum of {MAX_RETRIES}", self.max_retries),
            ));
        }
        if self.retry_base_ms > MAX_BACKOFF.as_millis() as u64 {
            return Err(ConfigError::invalid(
                key("retry_base_ms"),
                format!(
                    "{} is above the maximum of {} ms",
                    self.retry_base_ms,
                    MAX_BACKOFF.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

/// Upper bound of `max_retries`: past it a fetch would hold a job for hours.
const MAX_RETRIES: u32 = 20;
/// Longest single backoff delay.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn settings_name_the_key_at_fault() {
        let ok = AlphaVantageSettings::default();
        assert!(ok.validate("alpha_vantage").is_ok());
        let cases = [
            (
                AlphaVantageSettings {
                    base_url: "ftp://x/".into(),
                    ..AlphaVantageSettings::default()
                },
                "alpha_vantage.base_url",
            ),
            (
                AlphaVantageSettings {
                    base_url: "not a url".into(),
                    ..AlphaVantageSettings::default()
                },
                "alpha_vantage.base_url",
            ),
            (
                AlphaVantageSettings {
                    calls_per_minute: 0,
                    ..AlphaVantageSettings::default()
                },
                "alpha_vantage.calls_per_minute",
            ),
            (
                AlphaVantageSettings {
                    calls_per_day: 0,
                    ..AlphaVantageSettings::default()
                },
                "alpha_vantage.calls_per_day",
            ),
            (
                AlphaVantageSettings {
                    request_timeout_ms: 0,
                    ..AlphaVantageSettings::default()
                },
                "alpha_vantage.request_timeout_ms",
            ),
            (
                AlphaVantageSettings {
                    max_retries: 99,
                    ..AlphaVantageSettings::default()
                },
                "alpha_vantage.max_retries",
            ),
            (
                AlphaVantageSettings {
                    retry_base_ms: 3_600_000,
                    ..AlphaVantageSettings::default()
                },
                "alpha_vantage.retry_base_ms",
            ),
        ];
        for (settings, key) in cases {
            let message = settings.validate("alpha_vantage").unwrap_err().to_string();
            assert!(message.contains(&format!("`{key}`")), "{key}: {message}");
        }
    }

    #[test]
    fn settings_deserialize_with_defaults_and_refuse_unknown_keys() {
        let settings: AlphaVantageSettings =
            serde_json::from_str(r#"{"api_key": "S3CR3T", "calls_per_minute": 75}"#).unwrap();
        assert_eq!(settings.calls_per_minute, 75);
        assert_eq!(settings.calls_per_day, 25);
        assert_eq!(settings.base_url, "https://www.alphavantage.co/query");
        assert_eq!(settings.api_key.expose(), "S3CR3T");
        assert!(!format!("{settings:?}").contains("S3CR3T"));
        assert!(!serde_json::to_string(&settings).unwrap().contains("S3CR3T"));
        assert!(serde_json::from_str::<AlphaVantageSettings>(r#"{"apikey": "x"}"#).is_err());
    }
}
