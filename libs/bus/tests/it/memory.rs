//! The bus conformance suite on the in-process bus.

stockcast_bus::bus_conformance!(async { std::sync::Arc::new(stockcast_bus::MemoryBus::new()) });
