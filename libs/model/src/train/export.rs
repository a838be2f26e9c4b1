//! The ONNX wrapping shared by the trainer's exports: one ONNX-ML node from the float32
//! input `features` `[batch, n]` to `variable` `[batch, 1]`, the contract in
//! `metadata_props`.

use crate::contract::Contract;
use crate::proto::{
    self, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TypeProto, ValueInfoProto,
};

/// A FLOATS attribute.
pub(crate) fn floats(name: &str, floats: Vec<f32>) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        floats,
        r#type: 6,
        ..AttributeProto::default()
    }
}

/// `values` as the float32 an ONNX attribute stores, or an error naming `name[i]` when one
/// is outside float32's range (it would be stored as an infinity and every prediction with
/// it would be one).
pub(crate) fn float32s(name: &str, values: &[f64]) -> Result<Vec<f32>, String> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let narrowed = v as f32;
            if narrowed.is_finite() {
                Ok(narrowed)
            } else {
                Err(format!(
                    "{name}[{i}] = {v:e} does not fit in float32; rescale that feature \
                     (or use a penalty) before training"
                ))
            }
        })
        .collect()
}

/// An INTS attribute.
pub(crate) fn ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        ints,
        r#type: 7,
        ..AttributeProto::default()
    }
}

/// An INT attribute.
pub(crate) fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        i,
        r#type: 2,
        ..AttributeProto::default()
    }
}

/// A STRING attribute.
pub(crate) fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        s: s.as_bytes().to_vec(),
        r#type: 3,
        ..AttributeProto::default()
    }
}

/// A STRINGS attribute.
pub(crate) fn strings(name: &str, strings: Vec<Vec<u8>>) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        strings,
        r#type: 8,
        ..AttributeProto::default()
    }
}

/// The model bytes of one ai.onnx.ml `op` node (input `features`, output `variable`) on `n`
/// features; an error when the contract names another number of features.
pub(crate) fn model_bytes(
    op: &str,
    attribute: Vec<AttributeProto>,
    n: usize,
    contract: &Contract,
) -> Result<Vec<u8>, String> {
    let node = NodeProto {
        input: vec!["features".to_owned()],
        output: vec!["variable".to_owned()],
        name: op.to_owned(),
        op_type: op.to_owned(),
        domain: "ai.onnx.ml".to_owned(),
        attribute,
    };
    if contract.feature_names.len() != n {
        return Err(format!(
            "the contract names {} features; the model has {n}",
            contract.feature_names.len()
        ));
    }
    let graph = GraphProto {
        name: node.name.clone(),
        node: vec![node],
        input: vec![tensor_value("features", n)],
        output: vec![tensor_value("variable", 1)],
        ..GraphProto::default()
    };
    let model = ModelProto {
        ir_version: 8,
        producer_name: "stockcast".to_owned(),
        producer_version: env!("CARGO_PKG_VERSION").to_owned(),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 15,
            },
            OperatorSetIdProto {
                domain: "ai.onnx.ml".to_owned(),
                version: 1,
            },
        ],
        graph: Some(graph),
        metadata_props: contract
            .to_props()
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
        ..ModelProto::default()
    };
    Ok(prost::Message::encode_to_vec(&model))
}

/// A float32 `[batch, width]` tensor value with a symbolic batch.
fn tensor_value(name: &str, width: usize) -> ValueInfoProto {
    use proto::dimension::Value as Dim;
    let dim = |v: Dim| proto::Dimension { value: Some(v) };
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: proto::FLOAT,
                    shape: Some(proto::TensorShapeProto {
                        dim: vec![
                            dim(Dim::DimParam("batch".to_owned())),
                            dim(Dim::DimValue(width as i64)),
                        ],
                    }),
                },
            )),
        }),
    }
}
