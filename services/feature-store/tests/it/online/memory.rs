//! The online-store conformance suite on the embedded in-memory store.

use std::sync::Arc;

use stockcast_feature_store::store::OnlineStore;
use stockcast_feature_store::store::memory::MemoryOnline;

async fn memory() -> Arc<dyn OnlineStore> {
    Arc::new(MemoryOnline::new())
}

crate::online_store_cases!(memory());
