//! The feature store's settings.

use serde::{Deserialize, Serialize};
use stockcast_bus::BusSettings;
use stockcast_market::ValidationSettings;
use stockcast_runtime::cli::ServiceSettings;
use stockcast_runtime::{ConfigError, ServerSettings, TelemetrySettings};

use crate::materialize::MaterializeSettings;
use crate::store::redis::RedisSettings;
use crate::store::sql::DatabaseSettings;
use crate::stream::StreamSettings;
use crate::view::{Catalog, ViewSpec, default_view};

/// Everything the feature store reads from configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// How it listens.
    pub server: ServerSettings,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
    /// The online store.
    pub online: OnlineSettings,
    /// The offline store (bars consumed, feature rows, state, jobs).
    pub offline: DatabaseSettings,
    /// The event bus.
    pub bus: BusSettings,
    /// Topic names.
    pub topics: TopicSettings,
    /// The stream processor.
    pub stream: StreamSettings,
    /// Checks applied to consumed bars (the ingestion service's rules).
    pub validation: ValidationSettings,
    /// Materialization jobs.
    pub materialize: MaterializeSettings,
    /// The served feature views (`[[views]]`); the built-in `default` view when not given.
    pub views: Vec<ViewSpec>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            telemetry: TelemetrySettings::default(),
            online: OnlineSettings::default(),
            offline: DatabaseSettings::for_schema(crate::SCHEMA),
            bus: BusSettings::default(),
            topics: TopicSettings::default(),
            stream: StreamSettings::default(),
            validation: ValidationSettings::default(),
            materialize: MaterializeSettings::default(),
            views: vec![default_view()],
        }
    }
}

/// Which online store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnlineKind {
    /// In this process (the embedded default; lost on restart).
    #[default]
    Memory,
    /// Redis.
    Redis,
}

/// The `[online]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineSettings {
    /// `memory` or `redis`.
    pub kind: OnlineKind,
    /// Redis, used when `kind = "redis"`.
    pub redis: RedisSettings,
}

/// The `[topics]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSettings {
    /// Market-bar events consumed; rejects go to its dead-letter topic (`…bars-dlq.v1`).
    pub bars: String,
    /// Partitions when the service creates the topics.
    pub partitions: i32,
}

impl Default for TopicSettings {
    fn default() -> Self {
        Self {
            bars: "stockcast.market.bars.v1".to_owned(),
            partitions: 6,
        }
    }
}

impl stockcast_runtime::Settings for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")?;
        if self.online.kind == OnlineKind::Redis {
            self.online.redis.validate("online.redis")?;
        }
        self.offline.validate("offline")?;
        if self.topics.bars.is_empty() {
            return Err(ConfigError::invalid("topics.bars", "is empty"));
        }
        if self.topics.partitions < 1 {
            return Err(ConfigError::invalid(
                "topics.partitions",
                "must be at least 1",
            ));
        }
        if self.stream.group.is_empty() {
            return Err(ConfigError::invalid("stream.group", "is empty"));
        }
        if !(1..=100_000).contains(&self.stream.batch_max) {
            return Err(ConfigError::invalid(
                "stream.batch_max",
                "must be within 1..=100000",
            ));
        }
        if self.stream.replay_page == 0 {
            return Err(ConfigError::invalid(
                "stream.replay_page",
                "must be greater than 0",
            ));
        }
        if self.materialize.chunk_bars < 1 {
            return Err(ConfigError::invalid(
                "materialize.chunk_bars",
                "must be at least 1",
            ));
        }
        if self.materialize.page == 0 || self.materialize.concurrency == 0 {
            return Err(ConfigError::invalid(
                "materialize",
                "page and concurrency must be greater than 0",
            ));
        }
        stockcast_market::Validator::new(&self.validation)
            .map_err(|message| ConfigError::invalid("validation.symbol_pattern", message))?;
        if self.views.is_empty() {
            return Err(ConfigError::invalid("views", "at least one view is needed"));
        }
        Catalog::new(&self.views).map_err(|e| ConfigError::invalid("views", e.to_string()))?;
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
