//! The ingestion service's settings.

use serde::{Deserialize, Serialize};
use stockcast_bus::BusSettings;
use stockcast_market::ValidationSettings;
use stockcast_runtime::cli::ServiceSettings;
use stockcast_runtime::{ConfigError, ServerSettings, TelemetrySettings};
use stockcast_sql::DatabaseSettings;

/// Everything the ingestion service reads from configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// How it listens.
    pub server: ServerSettings,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
    /// Where bars and jobs are stored.
    pub storage: DatabaseSettings,
    /// The event bus.
    pub bus: BusSettings,
    /// Topic names.
    pub topics: TopicSettings,
    /// Validation rules.
    pub validation: ValidationSettings,
    /// Batching and backfills.
    pub ingest: IngestSettings,
    /// The Alpha Vantage source.
    pub alpha_vantage: stockcast_market::sources::alpha_vantage::AlphaVantageSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            telemetry: TelemetrySettings::default(),
            storage: DatabaseSettings::for_schema(crate::SCHEMA),
            bus: BusSettings::default(),
            topics: TopicSettings::default(),
            validation: ValidationSettings::default(),
            ingest: IngestSettings::default(),
            alpha_vantage: Default::default(),
        }
    }
}

/// The `[topics]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSettings {
    /// Market-bar events; its dead-letter topic is derived (`…bars-dlq.v1`).
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

/// The `[ingest]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Bars stored per transaction.
    pub batch_size: usize,
    /// Backfill jobs running at once.
    pub backfill_concurrency: usize,
    /// Directory CSV backfills may read from; paths outside it are refused (rejected rows are
    /// copied to the dead-letter topic, so this bounds what a client can make the service
    /// publish).
    pub csv_dir: std::path::PathBuf,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            backfill_concurrency: 2,
            csv_dir: std::path::PathBuf::from("."),
        }
    }
}

impl stockcast_runtime::Settings for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")?;
        self.storage.validate("storage")?;
        if self.topics.bars.is_empty() {
            return Err(ConfigError::invalid("topics.bars", "is empty"));
        }
        if self.topics.partitions < 1 {
            return Err(ConfigError::invalid(
                "topics.partitions",
                "must be at least 1",
            ));
        }
        if !(1..=100_000).contains(&self.ingest.batch_size) {
            return Err(ConfigError::invalid(
                "ingest.batch_size",
                "must be within 1..=100000",
            ));
        }
        if self.ingest.backfill_concurrency == 0 {
            return Err(ConfigError::invalid(
                "ingest.backfill_concurrency",
                "must be greater than 0",
            ));
        }
        stockcast_market::Validator::new(&self.validation)
            .map_err(|message| ConfigError::invalid("validation.symbol_pattern", message))?;
        self.alpha_vantage.validate("alpha_vantage")
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
