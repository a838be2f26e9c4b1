//! Reading a node's attributes, with errors that name the node and the attribute.

use crate::error::ModelError;
use crate::proto::{self, AttributeProto, NodeProto, TensorProto};

/// A node and its attributes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attrs<'a> {
    node: &'a NodeProto,
    index: usize,
}

impl<'a> Attrs<'a> {
    /// The node at position `index` of the graph.
    pub(crate) fn new(node: &'a NodeProto, index: usize) -> Self {
        Self { node, index }
    }

    /// An error about this node.
    pub(crate) fn error(&self, message: impl Into<String>) -> ModelError {
        ModelError::Node {
            node: if self.node.name.is_empty() {
                format!("#{}", self.index)
            } else {
                self.node.name.clone()
            },
            op: self.node.op_type.clone(),
            message: message.into(),
        }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    /// An integer attribute, or `default`.
    pub(crate) fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    /// A string attribute, or `default`.
    pub(crate) fn string(&self, name: &str, default: &str) -> Result<String, ModelError> {
        match self.get(name) {
            None => Ok(default.to_owned()),
            Some(a) => String::from_utf8(a.s.clone())
                .map_err(|_| self.error(format!("attribute {name} is not UTF-8"))),
        }
    }

    /// An integer-list attribute (empty when absent).
    pub(crate) fn ints(&self, name: &str) -> &'a [i64] {
        self.get(name).map_or(&[], |a| a.ints.as_slice())
    }

    /// A float-list attribute (empty when absent).
    pub(crate) fn floats(&self, name: &str) -> &'a [f32] {
        self.get(name).map_or(&[], |a| a.floats.as_slice())
    }

    /// A string-list attribute (empty when absent).
    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, ModelError> {
        self.get(name)
            .map_or(&[][..], |a| a.strings.as_slice())
            .iter()
            .enumerate()
            .map(|(i, s)| {
                String::from_utf8(s.clone())
                    .map_err(|_| self.error(format!("attribute {name}[{i}] is not UTF-8")))
            })
            .collect()
    }

    /// A tensor attribute.
    pub(crate) fn tensor(&self, name: &str) -> Option<&'a TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }

    /// Values of `name` as f64: from `<name>_as_tensor` (double) when present, else from the
    /// float list. `None` when neither is present.
    pub(crate) fn floats_or_tensor(&self, name: &str) -> Result<Option<Vec<f64>>, ModelError> {
        let tensor_name = format!("{name}_as_tensor");
        if let Some(t) = self.tensor(&tensor_name) {
            return tensor_f64(t)
                .map(Some)
                .map_err(|e| self.error(format!("{tensor_name}: {e}")));
        }
        Ok(self
            .get(name)
            .map(|a| a.floats.iter().map(|&v| f64::from(v)).collect()))
    }

    /// A tensor attribute's elements as f64 (float or double tensors).
    pub(crate) fn tensor_f64(&self, name: &str) -> Result<Option<Vec<f64>>, ModelError> {
        match self.tensor(name) {
            None => Ok(None),
            Some(t) => tensor_f64(t)
                .map(Some)
                .map_err(|e| self.error(format!("attribute {name}: {e}"))),
        }
    }

    /// A tensor attribute's elements as integers (uint8, int32 or int64 tensors).
    pub(crate) fn tensor_ints(&self, name: &str) -> Result<Option<Vec<i64>>, ModelError> {
        match self.tensor(name) {
            None => Ok(None),
            Some(t) => tensor_i64(t)
                .map(Some)
                .map_err(|e| self.error(format!("attribute {name}: {e}"))),
        }
    }

    /// Checks that every list attribute in `names` has `len` elements.
    pub(crate) fn same_len(&self, len: usize, names: &[(&str, usize)]) -> Result<(), ModelError> {
        for &(name, n) in names {
            if n != len {
                return Err(self.error(format!(
                    "attribute {name} has {n} elements, expected {len} (one per entry of {})",
                    names[0].0
                )));
            }
        }
        Ok(())
    }
}

/// Elements of a float or double tensor as f64.
pub(crate) fn tensor_f64(t: &TensorProto) -> Result<Vec<f64>, String> {
    if t.data_location == proto::DATA_LOCATION_EXTERNAL {
        return Err("tensor data is external".to_owned());
    }
    match t.data_type {
        proto::FLOAT if !t.raw_data.is_empty() => Ok(chunks::<4>(&t.raw_data)?
            .map(|b| f64::from(f32::from_le_bytes(b)))
            .collect()),
        proto::FLOAT => Ok(t.float_data.iter().map(|&v| f64::from(v)).collect()),
        proto::DOUBLE if !t.raw_data.is_empty() => {
            Ok(chunks::<8>(&t.raw_data)?.map(f64::from_le_bytes).collect())
        }
        proto::DOUBLE => Ok(t.double_data.clone()),
        other => Err(format!(
            "is a {} tensor, expected float32 or float64",
            proto::type_name(other)
        )),
    }
}

/// Elements of an integer tensor as i64.
pub(crate) fn tensor_i64(t: &TensorProto) -> Result<Vec<i64>, String> {
    if t.data_location == proto::DATA_LOCATION_EXTERNAL {
        return Err("tensor data is external".to_owned());
    }
    match t.data_type {
        proto::UINT8 if !t.raw_data.is_empty() => {
            Ok(t.raw_data.iter().map(|&b| i64::from(b)).collect())
        }
        proto::UINT8 | proto::INT32 if t.raw_data.is_empty() => {
            Ok(t.int32_data.iter().map(|&v| i64::from(v)).collect())
        }
        proto::INT32 => Ok(chunks::<4>(&t.raw_data)?
            .map(|b| i64::from(i32::from_le_bytes(b)))
            .collect()),
        proto::INT64 if !t.raw_data.is_empty() => {
            Ok(chunks::<8>(&t.raw_data)?.map(i64::from_le_bytes).collect())
        }
        proto::INT64 => Ok(t.int64_data.clone()),
        other => Err(format!(
            "is a {} tensor, expected an integer tensor",
            proto::type_name(other)
        )),
    }
}

fn chunks<const N: usize>(raw: &[u8]) -> Result<impl Iterator<Item = [u8; N]> + '_, String> {
    if !raw.len().is_multiple_of(N) {
        return Err(format!(
            "raw_data has {} bytes, not a multiple of {N}",
            raw.len()
        ));
    }
    Ok(raw.chunks_exact(N).map(|c| {
        let mut b = [0u8; N];
        b.copy_from_slice(c);
        b
    }))
}
