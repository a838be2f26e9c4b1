//! The model library: the one definition of a stockcast model's contract, used by the
//! registry proxy, the trainer and the inference service.
//!
//! - [`contract`]: the `stockcast.*` keys (feature view, view version, feature names, target,
//!   horizon) read from ONNX `metadata_props` or registry version tags.
//! - [`metadata`]: reading an ONNX model's `metadata_props` without loading its graph.

pub mod contract;
pub mod metadata;

pub use contract::{
    Contract, KEY_FEATURE_NAMES, KEY_FEATURE_VIEW, KEY_FEATURE_VIEW_VERSION, KEY_HORIZON_BARS,
    KEY_TARGET, contract_of,
};
pub use metadata::{encode_model, metadata_props, read_metadata_props};
