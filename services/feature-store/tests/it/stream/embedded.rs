//! The stream processor on the embedded backends: the in-process bus, the in-memory online
//! store and SQLite.

use stockcast_feature_store::store::memory::MemoryOnline;
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_runtime::Shutdown;

use crate::support::stream;

async fn embedded(_case: &str) -> stream::Backends {
    stream::Backends {
        bus: Arc::new(stockcast_bus::MemoryBus::new()),
        online: Arc::new(MemoryOnline::new()),
        offline: open(&DatabaseSettings::default(), &Shutdown::new())
            .await
            .expect("sqlite"),
    }
}

crate::stream_cases!(embedded);
