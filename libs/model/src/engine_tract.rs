//! Standard-opset graphs (linear models and MLPs from skl2onnx or PyTorch) on tract's
//! optimized path.
//!
//! The graph is loaded with a symbolic batch dimension, decluttered once, and optimized again
//! for each batch size it is run with (up to [`MAX_PLANS`] of them, built on first use): with a
//! concrete batch tract picks matrix kernels for that shape and resolves no symbols per call.
//! Other batch sizes run on the plan optimized for the symbolic batch.
//!
//! Each call runs on a run state of its own (`SimplePlan::run`), which it builds and drops on
//! the calling thread. Keeping states between calls would save a few hundred nanoseconds, but
//! tract keeps each state's matrix-kernel scratch in the thread-local storage of every thread
//! the state ran on and frees it only on the thread that drops the state: states pooled across
//! the runtime's worker threads would leak that scratch whenever one is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tract_onnx::prelude::*;

use crate::error::ModelError;
use crate::tensor::{Tensor as Output, TensorData};

/// Batch sizes that get a plan of their own; later ones run on the symbolic-batch plan. Each
/// plan holds its own packed copy of the weight matrices.
const MAX_PLANS: usize = 8;

/// A graph optimized by tract for `[batch, n_features]` float32 inputs.
#[derive(Debug, Clone)]
pub(crate) struct TractModel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The decluttered graph with the symbolic batch, optimized again per batch size.
    decluttered: TypedModel,
    batch: Symbol,
    n_features: usize,
    /// The plan for any batch size.
    any_batch: Arc<TypedRunnableModel>,
    /// Plans for one batch size each, at most [`MAX_PLANS`].
    by_batch: Mutex<HashMap<usize, Arc<TypedRunnableModel>>>,
}

fn tract_error(e: TractError) -> ModelError {
    ModelError::Tract(format!("{e:#}"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn optimize(model: TypedModel) -> Result<Arc<TypedRunnableModel>, ModelError> {
    model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(tract_error)
}

impl TractModel {
    /// Loads, declutters and optimizes the ONNX `bytes`. tract indexes its maps by the names
    /// a graph uses and panics on some corrupt graphs (a node reading a value nothing
    /// defines), so a panic inside it is caught and refused like any unreadable model: an
    /// uploaded file must not take a service down.
    pub(crate) fn load(bytes: &[u8], n_features: usize) -> Result<Self, ModelError> {
        guarded("reading the model", || {
            Self::load_unguarded(bytes, n_features)
        })
    }

    fn load_unguarded(bytes: &[u8], n_features: usize) -> Result<Self, ModelError> {
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(tract_error)?;
        let batch = model.symbols.sym("batch");
        model
            .set_input_fact(
                0,
                InferenceFact::dt_shape(
                    f32::datum_type(),
                    tvec![batch.to_dim(), n_features.to_dim()],
                ),
            )
            .map_err(tract_error)?;
        let decluttered = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .map_err(tract_error)?;
        let any_batch = optimize(decluttered.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                decluttered,
                batch,
                n_features,
                any_batch,
                by_batch: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Runs `x` (`rows` x `n_features`); float outputs in graph order. A panic inside tract
    /// is an error of this call.
    pub(crate) fn run(&self, x: &[f32], rows: usize) -> Result<Vec<Output>, ModelError> {
        guarded("running the model", || self.run_unguarded(x, rows))
    }

    fn run_unguarded(&self, x: &[f32], rows: usize) -> Result<Vec<Output>, ModelError> {
        let inner = &self.inner;
        let input = Tensor::from_shape(&[rows, inner.n_features], x)
            .map_err(|e| ModelError::Input(e.to_string()))?;
        let plan = self
            .plan_for(rows)?
            .unwrap_or_else(|| Arc::clone(&inner.any_batch));
        let outputs = plan.run(tvec!(input.into_tvalue())).map_err(tract_error)?;
        outputs.iter().map(output).collect()
    }

    /// The plan for batch size `rows`, built on first use; `None` once [`MAX_PLANS`] other batch
    /// sizes have one.
    fn plan_for(&self, rows: usize) -> Result<Option<Arc<TypedRunnableModel>>, ModelError> {
        let inner = &self.inner;
        {
            let plans = lock(&inner.by_batch);
            if let Some(plan) = plans.get(&rows) {
                return Ok(Some(Arc::clone(plan)));
            }
            if plans.len() >= MAX_PLANS {
                return Ok(None);
            }
        }
        // Built outside the lock, so calls with other batch sizes do not wait for it; when two
        // calls build the same one, the first inserted is kept.
        let concrete = inner
            .decluttered
            .set_symbols(&HashMap::from([(inner.batch.clone(), rows.to_dim())]))
            .map_err(tract_error)?;
        let built = optimize(concrete)?;
        let mut plans = lock(&inner.by_batch);
        if plans.len() >= MAX_PLANS && !plans.contains_key(&rows) {
            return Ok(Some(built));
        }
        Ok(Some(Arc::clone(plans.entry(rows).or_insert(built))))
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

/// One tract output as a float32 or int64 tensor.
fn output(t: &TValue) -> Result<Output, ModelError> {
    let view = t.try_as_plain_ram().map_err(tract_error)?;
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
    Ok(Output {
        shape: t.shape().to_vec(),
        data,
    })
}
