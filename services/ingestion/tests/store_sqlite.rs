//! The store conformance suite on embedded SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use stockcast_ingestion::store::{BarStore, SqliteStore};

async fn sqlite() -> Arc<dyn BarStore> {
    Arc::new(SqliteStore::open("sqlite::memory:").await.expect("sqlite"))
}

store_conformance!(sqlite());
