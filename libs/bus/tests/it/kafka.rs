//! The bus conformance suite on a real Kafka-protocol broker (`scripts/deps.sh up kafka`).

async fn kafka() -> std::sync::Arc<stockcast_bus::KafkaBus> {
    let brokers = stockcast_testkit::KAFKA.require();
    let settings = stockcast_bus::KafkaSettings {
        brokers,
        client_id: "stockcast-bus-conformance".to_owned(),
        ..Default::default()
    };
    std::sync::Arc::new(stockcast_bus::KafkaBus::new(settings).expect("kafka client"))
}

stockcast_bus::bus_conformance!(kafka());
