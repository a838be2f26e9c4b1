//! Where a service's relational data lives.

use serde::{Deserialize, Serialize};
use stockcast_runtime::{ConfigError, Secret};

use crate::postgres::valid_schema;

/// A service's database: the `[storage]` section (`[offline]` in the feature store).
///
/// The schema defaults to `stockcast`; each service sets its own in its per-service
/// defaults (`storage.schema = "ingestion"`, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite::memory:`, `sqlite://file.db`, or `postgres://user:password@host/db`
    /// (a secret: it may hold a password).
    pub url: Secret,
    /// PostgreSQL schema the service owns (a lower-case identifier).
    pub schema: String,
    /// Connections in the pool (PostgreSQL, and SQLite files; a memory database has one).
    pub max_connections: u32,
    /// Longest wait for a connection, and for a busy SQLite database, milliseconds.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite::memory:"),
            schema: "stockcast".to_owned(),
            max_connections: 8,
            acquire_timeout_ms: 5_000,
        }
    }
}

impl DatabaseSettings {
    /// The defaults with the service's own `schema`.
    pub fn for_schema(schema: &str) -> Self {
        Self {
            schema: schema.to_owned(),
            ..Self::default()
        }
    }

    /// Checks the values that parse but cannot work; `section` is the settings key, e.g.
    /// `storage`.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if Backend::of(self.url.expose()).is_none() {
            return Err(ConfigError::invalid(
                format!("{section}.url"),
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if !valid_schema(&self.schema) {
            return Err(ConfigError::invalid(
                format!("{section}.schema"),
                format!("{:?} must be a lower-case identifier", self.schema),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                format!("{section}.max_connections"),
                "must be greater than 0",
            ));
        }
        if self.acquire_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                format!("{section}.acquire_timeout_ms"),
                "must be greater than 0",
            ));
        }
        Ok(())
    }

    /// The backend the URL names (validated settings always name one).
    pub fn backend(&self) -> Option<Backend> {
        Backend::of(self.url.expose())
    }

    /// The longest wait for a connection.
    pub fn acquire_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.acquire_timeout_ms)
    }
}

/// The backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:`…
    Sqlite,
    /// `postgres://` or `postgresql://`.
    Postgres,
}

impl Backend {
    /// The backend of `url`, or `None` when the scheme is none of the supported ones.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// Its name in logs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let mut s = DatabaseSettings::for_schema("ingestion");
        assert!(s.validate("storage").is_ok());
        s.url = Secret::new("mysql://x");
        let e = s.validate("storage").unwrap_err().to_string();
        assert!(e.contains("storage.url"), "{e}");
        let mut s = DatabaseSettings::for_schema("Bad-Schema");
        let e = s.validate("offline").unwrap_err().to_string();
        assert!(e.contains("offline.schema"), "{e}");
        s.schema = "ok".into();
        s.max_connections = 0;
        assert!(
            s.validate("x")
                .unwrap_err()
                .to_string()
                .contains("x.max_connections")
        );
        s.max_connections = 1;
        s.acquire_timeout_ms = 0;
        assert!(
            s.validate("x")
                .unwrap_err()
                .to_string()
                .contains("x.acquire_timeout_ms")
        );
    }
}
