//! What the tests share: the service in-process behind its gRPC API, and bars on the bus
//! for the stream processor (child processes are held by `stockcast_testkit::process`).

pub mod service;
pub mod stream;
