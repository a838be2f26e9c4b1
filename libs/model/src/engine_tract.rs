//! Standard-opset graphs (linear models and MLPs from skl2onnx or PyTorch) on tract's
//! optimized path, with a symbolic batch dimension.

use tract_onnx::prelude::*;

use crate::error::ModelError;
use crate::tensor::{Tensor as Output, TensorData};

/// A graph optimized by tract for `[batch, n_features]` float32 inputs.
#[derive(Debug, Clone)]
pub(crate) struct TractModel {
    plan: std::sync::Arc<TypedRunnableModel>,
    n_features: usize,
}

impl TractModel {
    /// Loads and optimizes the ONNX `bytes`. tract indexes its maps by the names a graph
    /// uses and panics on some corrupt graphs (a node reading a value nothing defines), so
    /// a panic inside it is caught and refused like any unreadable model: an uploaded file
    /// must not take a service down.
    pub(crate) fn load(bytes: &[u8], n_features: usize) -> Result<Self, ModelError> {
        guarded("reading the model", || {
            Self::load_unguarded(bytes, n_features)
        })
    }

    fn load_unguarded(bytes: &[u8], n_features: usize) -> Result<Self, ModelError> {
        let err = |e: TractError| ModelError::Tract(format!("{e:#}"));
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(err)?;
        let batch = model.symbols.sym("batch");
        model
            .set_input_fact(
                0,
                InferenceFact::dt_shape(
                    f32::datum_type(),
                    tvec![batch.to_dim(), n_features.to_dim()],
                ),
            )
            .map_err(err)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(err)?;
        Ok(Self { plan, n_features })
    }

    /// Runs `x` (`rows` x `n_features`); float outputs in graph order. A panic inside tract
    /// is an error of this call.
    pub(crate) fn run(&self, x: &[f32], rows: usize) -> Result<Vec<Output>, ModelError> {
        guarded("running the model", || self.run_unguarded(x, rows))
    }

    fn run_unguarded(&self, x: &[f32], rows: usize) -> Result<Vec<Output>, ModelError> {
        let err = |e: TractError| ModelError::Tract(format!("{e:#}"));
        let input = tract_ndarray::Array2::from_shape_vec((rows, self.n_features), x.to_vec())
            .map_err(|e| ModelError::Input(e.to_string()))?;
        let outputs = self
            .plan
            .run(tvec!(Tensor::from(input).into()))
            .map_err(err)?;
        outputs
            .iter()
            .map(|t| {
                let shape = t.shape().to_vec();
                let view = t.try_as_plain_ram().map_err(err)?;
                let data = if let Ok(v) = view.as_slice::<f32>() {
                    TensorData::F32(v.to_vec())
                } else if let Ok(v) = view.as_slice::<i64>() {
                    TensorData::I64(v.to_vec())
                } else {
                    return Err(ModelError::Tract(format!(
                        "an output is {:?}, expected float32 or int64",
                        t.datum_type()
                    )));
                };
                Ok(Output { shape, data })
            })
            .collect()
    }
}

/// `f()`, with a panic inside it turned into [`ModelError::Tract`] naming `what` and the
/// panic's message.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, ModelError>) -> Result<T, ModelError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(ModelError::Tract(format!(
            "tract failed {what} (it panicked: {message}); the model is corrupt or uses \
             what tract does not support"
        )))
    })
}
