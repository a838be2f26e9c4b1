//! The values a model's outputs hold.

/// A dense row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions; the first is the batch.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: TensorData,
}

/// Elements of a [`Tensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// float32.
    F32(Vec<f32>),
    /// int64 (class labels).
    I64(Vec<i64>),
    /// strings (class labels).
    Str(Vec<String>),
}

impl Tensor {
    /// A float tensor.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            data: TensorData::F32(data),
        }
    }

    /// Number of elements the shape holds.
    pub fn len(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Str(v) => v.len(),
        }
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The float elements, if float.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Size of the last dimension (1 for a vector).
    pub fn cols(&self) -> usize {
        if self.shape.len() >= 2 {
            self.shape[self.shape.len() - 1]
        } else {
            1
        }
    }

    /// Name of the element type, for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.data {
            TensorData::F32(_) => "float32",
            TensorData::I64(_) => "int64",
            TensorData::Str(_) => "string",
        }
    }
}
