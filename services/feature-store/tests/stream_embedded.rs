//! The stream processor on the embedded backends: the in-process bus, the in-memory online
//! store and SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/stream_cases.rs"]
mod stream_cases;

use stockcast_feature_store::store::memory::MemoryOnline;
use stockcast_feature_store::store::offline::{DatabaseSettings, open};

async fn embedded(_case: &str) -> stream_cases::Backends {
    stream_cases::Backends {
        bus: Arc::new(stockcast_bus::MemoryBus::new()),
        online: Arc::new(MemoryOnline::new()),
        offline: open(&DatabaseSettings::default()).await.expect("sqlite"),
    }
}

stream_cases!(embedded);
