//! The offline store conformance suite on a real PostgreSQL (`scripts/deps.sh up pg`), one
//! schema per test.

use std::sync::Arc;

use stockcast_feature_store::store::OfflineStore;
use stockcast_feature_store::store::postgres::PostgresOffline;
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_runtime::Shutdown;

use super::cases;

fn settings() -> DatabaseSettings {
    DatabaseSettings {
        url: stockcast_runtime::Secret::new(stockcast_testkit::POSTGRES.require()),
        schema: stockcast_testkit::unique("fs"),
        max_connections: 4,
        acquire_timeout_ms: 10_000,
    }
}

async fn postgres() -> Arc<dyn OfflineStore> {
    open(&settings(), &Shutdown::new()).await.expect("postgres")
}

crate::offline_store_cases!(async postgres);

/// Migrations apply once per schema: connecting again to a migrated schema changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_to_a_migrated_schema_keeps_its_data() {
    let settings = settings();
    let first = PostgresOffline::connect(&settings).await.unwrap();
    let view = cases::view(1);
    assert!(first.register_view(&view, "{}").await.unwrap().new);
    first.close().await;
    let again = PostgresOffline::connect(&settings).await.unwrap();
    let recorded = again.register_view(&view, "{}").await.unwrap();
    assert_eq!((recorded.new, recorded.definition.as_str()), (false, "{}"));
    again.drop_schema().await.unwrap();
}

#[test]
fn a_schema_that_is_not_an_identifier_is_refused() {
    let settings = DatabaseSettings {
        url: stockcast_runtime::Secret::new("postgres://localhost/db"),
        schema: "fs\"; DROP TABLE x; --".to_owned(),
        ..DatabaseSettings::default()
    };
    assert!(PostgresOffline::connect_lazy(&settings).is_err());
}
