//! The settings of the Redis online store.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stockcast_runtime::{ConfigError, Secret};

/// The `[online.redis]`-style settings of the Redis online store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`, or `redis-cluster://host:port` for Redis
    /// Cluster (a secret: it may hold a password). `rediss` for TLS.
    pub url: Secret,
    /// Prefix of every key the service writes; see the module doc for the layout.
    pub key_prefix: String,
    /// Connections in the pool (each one multiplexes many calls).
    pub pool_size: usize,
    /// Longest wait for one call (connect, read or write batch), milliseconds.
    pub timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("redis://127.0.0.1:6379"),
            key_prefix: "stockcast:fs".to_owned(),
            pool_size: 4,
            timeout_ms: 1_000,
        }
    }
}

impl RedisSettings {
    /// Checks the values that parse but cannot work; `section` names where they sit.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let url = self.url.expose();
        const SCHEMES: [&str; 4] = [
            "redis://",
            "rediss://",
            "redis-cluster://",
            "rediss-cluster://",
        ];
        if !SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
            return Err(ConfigError::invalid(
                format!("{section}.url"),
                "must start with redis://, rediss://, redis-cluster:// or rediss-cluster://",
            ));
        }
        if self.key_prefix.is_empty() {
            return Err(ConfigError::invalid(
                format!("{section}.key_prefix"),
                "is empty",
            ));
        }
        if self.pool_size == 0 {
            return Err(ConfigError::invalid(
                format!("{section}.pool_size"),
                "must be greater than 0",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::invalid(
                format!("{section}.timeout_ms"),
                "must be greater than 0",
            ));
        }
        Ok(())
    }

    /// The call timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_and_refuse_unknown_keys() {
        let settings: RedisSettings = serde_json::from_str(r#"{"pool_size": 8}"#).unwrap();
        assert_eq!(settings.pool_size, 8);
        assert_eq!(settings.key_prefix, "stockcast:fs");
        assert_eq!(settings.timeout(), Duration::from_secs(1));
        assert_eq!(settings.url.expose(), "redis://127.0.0.1:6379");
        settings.validate("online.redis").unwrap();
        assert!(serde_json::from_str::<RedisSettings>(r#"{"poolsize": 8}"#).is_err());
    }

    #[test]
    fn settings_hide_the_url_and_name_the_bad_key() {
        let settings = RedisSettings {
            url: Secret::new("redis://:hunter2@cache:6379"),
            ..RedisSettings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert!(
            !serde_json::to_string(&settings)
                .unwrap()
                .contains("hunter2")
        );
        let bad = RedisSettings {
            timeout_ms: 0,
            ..RedisSettings::default()
        };
        let message = bad.validate("online.redis").unwrap_err().to_string();
        assert!(message.contains("online.redis.timeout_ms"), "{message}");
        let bad = RedisSettings {
            url: Secret::new("postgres://x"),
            ..RedisSettings::default()
        };
        let message = bad.validate("online.redis").unwrap_err().to_string();
        assert!(message.contains("online.redis.url"), "{message}");
    }
}
