//! The store conformance suite on a real PostgreSQL (`scripts/deps.sh up pg`), one schema per
//! test.

use std::sync::Arc;
use std::time::Duration;

use stockcast_ingestion::store::{BarStore, PostgresStore};

async fn postgres() -> Arc<dyn BarStore> {
    let url = stockcast_testkit::POSTGRES.require();
    let schema = stockcast_testkit::unique("ingest");
    let store = PostgresStore::from(
        stockcast_sql::SchemaPool::connect_lazy(&url, &schema, 4, Duration::from_secs(10))
            .expect("pool"),
    );
    store.migrate().await.expect("migrate");
    Arc::new(store)
}

crate::store_conformance!(postgres());
