//! Errors of loading and running models.

/// Why a model could not be loaded or run. Messages name the node, attribute or contract key
/// at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The bytes are not a readable ONNX model.
    #[error("{0}")]
    NotOnnx(String),
    /// The contract is missing or malformed.
    #[error("{0}")]
    Contract(String),
    /// The graph does not match the contract (inputs, outputs, class labels).
    #[error("the graph does not match its contract: {0}")]
    Mismatch(String),
    /// A node is malformed or uses what is not supported.
    #[error("node {node:?} ({op}): {message}")]
    Node {
        /// Node name, or `#index` when it has none.
        node: String,
        /// Operator type.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// The graph as a whole cannot be evaluated (unknown values, unsupported types).
    #[error("graph: {0}")]
    Graph(String),
    /// The batch handed to `run` does not fit the model.
    #[error("input: {0}")]
    Input(String),
    /// tract refused or failed the model.
    #[error("tract: {0}")]
    Tract(String),
}
