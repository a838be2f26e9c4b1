//! The online-store conformance suite on the embedded in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/online_cases.rs"]
mod online_cases;

use std::sync::Arc;

use stockcast_feature_store::store::OnlineStore;
use stockcast_feature_store::store::memory::MemoryOnline;

async fn memory() -> Arc<dyn OnlineStore> {
    Arc::new(MemoryOnline::new())
}

online_store_cases!(memory());
