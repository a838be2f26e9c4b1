//! The online store: the conformance suite on the in-memory store and on Redis, and what
//! only Redis can do.

mod cases;
mod memory;
mod redis;
