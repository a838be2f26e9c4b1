//! The model library: the one definition of a stockcast model's contract, used by the
//! registry proxy, the trainer and the inference service, and the runtime that loads and
//! runs ONNX models.
//!
//! - [`contract`]: the `stockcast.*` keys (feature view, view version, feature names, target,
//!   horizon, and optionally the output kind) read from ONNX `metadata_props` or registry
//!   version tags.
//! - [`metadata`]: reading an ONNX model's `metadata_props` without loading its graph.
//! - [`train`]: closed-form ridge regression and its ONNX export.
//! - [`Model`] (feature `run`, on by default): `Model::load(bytes)` checks the graph against
//!   the contract; `Model::run(batch)` runs it. Standard-opset graphs run on tract's
//!   optimized path; graphs with ONNX-ML operators (tree ensembles, linear models) run on a
//!   native evaluator.
//!
//! See `docs/models.md`.

pub mod contract;
pub mod metadata;
pub mod proto;
pub mod train;

#[cfg(feature = "run")]
mod engine_tract;
#[cfg(feature = "run")]
mod error;
#[cfg(feature = "run")]
mod model;
#[cfg(feature = "run")]
mod native;
#[cfg(feature = "run")]
mod tensor;

pub use contract::{
    ClassLabels, Contract, KEY_CLASS_LABELS, KEY_FEATURE_NAMES, KEY_FEATURE_VIEW,
    KEY_FEATURE_VIEW_VERSION, KEY_HORIZON_BARS, KEY_OUTPUT, KEY_TARGET, OutputKind, contract_of,
};
#[cfg(feature = "run")]
pub use error::ModelError;
pub use metadata::{encode_model, metadata_props, read_metadata_props};
#[cfg(feature = "run")]
pub use model::{Model, Prediction};
#[cfg(feature = "run")]
pub use tensor::{Tensor, TensorData};
