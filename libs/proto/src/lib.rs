//! Generated code for every stockcast contract: the five service APIs
//! (`stockcast.<svc>.v1`), the Kafka payloads (`stockcast.events.v1`) and the KServe v2
//! Open Inference Protocol (`inference`).
//!
//! Module paths follow the protobuf packages, e.g. `stockcast_proto::stockcast::events::v1`.
//! [`FILE_DESCRIPTOR_SET`] feeds gRPC server reflection.

#![allow(missing_docs, clippy::all, missing_debug_implementations)]

include!(concat!(env!("OUT_DIR"), "/_includes.rs"));

/// Encoded `google.protobuf.FileDescriptorSet` of every contract, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
