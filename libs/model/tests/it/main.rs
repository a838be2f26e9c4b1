//! Integration tests of stockcast-model, one binary: the correctness matrix against
//! onnxruntime's recorded outputs, load and run errors, and trained models' exports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod errors;
mod matrix;
mod train;
