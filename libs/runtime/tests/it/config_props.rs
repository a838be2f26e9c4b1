//! Configuration loading fed arbitrary values (#11): every known key of the shared settings,
//! through each layer (TOML file, environment, `--set` override), with random and extreme
//! values. Loading never panics; it gives settings that validate, print (`--print-config`)
//! and build the server's layers, or an error naming the key.

use std::collections::HashMap;

use proptest::prelude::*;
use stockcast_runtime::config::{ConfigSource, load};
use stockcast_runtime::grpc::GrpcMiddlewareLayer;
use stockcast_runtime::settings::BasicSettings;
use stockcast_testkit::hostile;

/// Every key of [`BasicSettings`] (what every service embeds).
const KEYS: [&str; 12] = [
    "server.grpc_addr",
    "server.metrics_addr",
    "server.request_timeout_ms",
    "server.concurrency_limit",
    "server.max_message_bytes",
    "server.shutdown_delay_ms",
    "server.shutdown_grace_ms",
    "server.readiness_interval_ms",
    "telemetry.log_format",
    "telemetry.log_filter",
    "telemetry.otlp_endpoint",
    "telemetry.sample_ratio",
];

const SERVICE: &str = "props";

/// Text a person or a deployment puts in an environment variable or a `--set`: numbers at
/// every edge (as text), addresses, enum names, and hostile strings.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile::string(),
        hostile::int64().prop_map(|v| v.to_string()),
        hostile::float().prop_map(|v| v.to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_owned()),
        Just("340282366920938463463374607431768211456".to_owned()),
        Just("-1".to_owned()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("0x10".to_owned()),
        Just(" 7 ".to_owned()),
        Just("true".to_owned()),
        Just("[1, 2]".to_owned()),
        Just("127.0.0.1:99999".to_owned()),
        Just("[::1]:0".to_owned()),
        Just("localhost:50051".to_owned()),
        Just("JSON".to_owned()),
        Just("http://".to_owned()),
        Just("https://127.0.0.1:4317".to_owned()),
    ]
}

/// Any TOML value: every scalar type at its edges, arrays and tables.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let scalar = prop_oneof![
        hostile::int64().prop_map(toml::Value::Integer),
        hostile::float().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        text().prop_map(toml::Value::String),
        Just(toml::Value::Datetime(
            "1979-05-27T07:32:00Z".parse().expect("a TOML datetime")
        )),
    ];
    scalar.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

fn source() -> ConfigSource {
    ConfigSource {
        service: SERVICE.to_owned(),
        ..ConfigSource::default()
    }
}

/// Loads and checks the contract: settings that validate, or an error naming `key`.
fn check(key: &str, source: &ConfigSource, shown: &str) -> Result<(), TestCaseError> {
    match load::<BasicSettings>(source) {
        Ok(settings) => {
            let valid = stockcast_runtime::config::Settings::validate(&settings);
            prop_assert!(
                valid.is_ok(),
                "{key} = {shown}: loaded but invalid: {valid:?}"
            );
            let printed = stockcast_runtime::config::render(&settings);
            prop_assert!(
                printed.is_ok(),
                "{key} = {shown}: cannot print: {printed:?}"
            );
            // What `GrpcServer::serve` builds from the server section.
            let _layer = GrpcMiddlewareLayer::new("props", settings.server.concurrency_limit)
                .with_message_limit(settings.server.max_message_bytes);
        }
        Err(error) => {
            let message = error.to_string();
            prop_assert!(
                message.contains(key),
                "{key} = {shown}: the error does not name the key: {message}"
            );
        }
    }
    Ok(())
}

fn short(value: &str) -> String {
    value.chars().take(80).collect()
}

proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 512, ..hostile::config() })]

    #[test]
    fn any_environment_or_override_value_loads_or_names_its_key(
        key in prop::sample::select(&KEYS[..]),
        value in text(),
        from_environment in any::<bool>(),
    ) {
        let source = if from_environment {
            let var = format!(
                "STOCKCAST_PROPS__{}",
                key.to_ascii_uppercase().replace('.', "__")
            );
            ConfigSource {
                env: HashMap::from([(var, value.clone())]),
                ..source()
            }
        } else {
            ConfigSource {
                overrides: vec![format!("{key}={value}")],
                ..source()
            }
        };
        check(key, &source, &short(&value))?;
    }

    #[test]
    fn any_toml_value_in_the_file_loads_or_names_its_key(
        key in prop::sample::select(&KEYS[..]),
        value in toml_value(),
    ) {
        let (section, name) = key.split_once('.').expect("section.key");
        let mut table = toml::Table::new();
        table.insert(name.to_owned(), value.clone());
        let mut document = toml::Table::new();
        document.insert(section.to_owned(), toml::Value::Table(table));
        let text = toml::to_string(&document).expect("any TOML value serializes");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("props.toml");
        std::fs::write(&file, &text).expect("write the config file");
        let source = ConfigSource {
            file: Some(file),
            ..source()
        };
        check(key, &source, &short(&text))?;
    }
}
