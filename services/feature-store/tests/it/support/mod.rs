//! What the tests share: child processes, the service in-process behind its gRPC API, and
//! bars on the bus for the stream processor.

pub mod process;
pub mod service;
pub mod stream;
