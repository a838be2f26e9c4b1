//! The stream processor on the production backends: Kafka (tansu), Redis and PostgreSQL
//! (`scripts/deps.sh up`); each test has its own topic, group, key prefix and schema.

use stockcast_bus::{KafkaBus, KafkaSettings};
use stockcast_feature_store::store::redis::{RedisOnline, RedisSettings};
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_runtime::Secret;

use crate::support::stream;

async fn real(case: &str) -> stream::Backends {
    let bus = KafkaBus::new(KafkaSettings {
        brokers: stockcast_testkit::KAFKA.require(),
        ..KafkaSettings::default()
    })
    .expect("kafka bus");
    let online = RedisOnline::connect(&RedisSettings {
        url: Secret::new(stockcast_testkit::REDIS.require()),
        key_prefix: stockcast_testkit::unique(case),
        ..RedisSettings::default()
    })
    .await
    .expect("redis");
    let settings = DatabaseSettings {
        url: Secret::new(stockcast_testkit::POSTGRES.require()),
        schema: stockcast_testkit::unique("fs"),
        max_connections: 4,
        acquire_timeout_ms: 10_000,
    };
    let offline = open(&settings, &stockcast_runtime::Shutdown::new())
        .await
        .expect("postgres");
    stream::Backends {
        bus: Arc::new(bus),
        online: Arc::new(online),
        offline,
    }
}

crate::stream_cases!(real);
