//! A loaded model: its contract, its checked input and output, and the engine that runs it.

use std::collections::BTreeMap;

use crate::contract::{self, ClassLabels, Contract, OutputKind};
use crate::engine_tract::TractModel;
use crate::error::ModelError;
use crate::native::{Plan, Role};
use crate::proto::{self, ModelProto, type_proto};
use crate::tensor::{Tensor, TensorData};

/// A model ready to run: `Model::run(batch)` takes row-major float32 features in the
/// contract's order and returns the primary output.
#[derive(Debug, Clone)]
pub struct Model {
    contract: Contract,
    input: String,
    output: OutputKind,
    /// Index of the primary output among the graph's outputs.
    primary: usize,
    output_names: Vec<String>,
    engine: Engine,
}

#[derive(Debug, Clone)]
enum Engine {
    /// Graphs with ONNX-ML nodes.
    Native(Box<Plan>),
    /// Standard-opset graphs.
    Tract(Box<TractModel>),
}

/// The primary output of a run: `rows` x `width` values, row-major. For a regression the
/// values are the predictions; for a classifier, one probability per class in the order of
/// [`OutputKind::Probabilities`]'s labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Rows of the batch.
    pub rows: usize,
    /// Values per row.
    pub width: usize,
    /// `rows * width` values.
    pub values: Vec<f32>,
}

impl Prediction {
    /// The values of row `r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.values[r * self.width..(r + 1) * self.width]
    }
}

impl Model {
    /// Loads ONNX `bytes` whose `metadata_props` declare the contract.
    pub fn load(bytes: &[u8]) -> Result<Self, ModelError> {
        Self::load_with_tags(bytes, &BTreeMap::new())
    }

    /// Loads ONNX `bytes` whose contract is in `metadata_props` or in registry version
    /// `tags` (both present and different is an error).
    pub fn load_with_tags(
        bytes: &[u8],
        tags: &BTreeMap<String, String>,
    ) -> Result<Self, ModelError> {
        let model: ModelProto = prost::Message::decode(bytes)
            .map_err(|e| ModelError::NotOnnx(format!("not an ONNX model: {e}")))?;
        if model.ir_version < 1 {
            return Err(ModelError::NotOnnx(format!(
                "not an ONNX model: ir_version {} (expected >= 1)",
                model.ir_version
            )));
        }
        let props: BTreeMap<String, String> = model
            .metadata_props
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        let contract = contract::contract_of(Some(&props), tags)
            .map_err(ModelError::Contract)?
            .ok_or_else(|| {
                ModelError::Contract(format!(
                    "the model declares no contract: set {}, {}, {}, {} and {} in its ONNX \
                     metadata_props or version tags",
                    contract::KEY_FEATURE_VIEW,
                    contract::KEY_FEATURE_VIEW_VERSION,
                    contract::KEY_FEATURE_NAMES,
                    contract::KEY_TARGET,
                    contract::KEY_HORIZON_BARS
                ))
            })?;
        let declared = match contract::declared_output(&props, "ONNX metadata_props")
            .map_err(ModelError::Contract)?
        {
            Some(d) => Some(d),
            None => {
                contract::declared_output(tags, "version tags").map_err(ModelError::Contract)?
            }
        };
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| ModelError::NotOnnx("the ONNX model has no graph".to_owned()))?;
        check_tensors(graph)?;
        let n = contract.feature_names.len();
        let input = check_input(graph, n)?;
        let ml = graph.node.iter().any(|node| node.domain == "ai.onnx.ml");
        let (engine, roles) = if ml {
            let plan = Plan::build(graph, &input, n)?;
            let roles: Vec<Role> = plan.outputs.iter().map(|(_, _, r)| r.clone()).collect();
            (Engine::Native(Box::new(plan)), roles)
        } else {
            let roles = graph
                .output
                .iter()
                .map(|o| match tensor_type(o) {
                    Some((proto::FLOAT, dims)) => Ok(Role::Values(match dims.get(1) {
                        Some(Some(w)) => *w,
                        _ => 1,
                    })),
                    Some((proto::INT64, _)) => Ok(Role::Integers(1)),
                    _ => Err(ModelError::Mismatch(format!(
                        "output {:?} is not a float32 or int64 tensor",
                        o.name
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let tract = TractModel::load(bytes, n)?;
            (Engine::Tract(Box::new(tract)), roles)
        };
        let (primary, output) = infer_output(&roles, graph, declared)?;
        Ok(Self {
            contract,
            input,
            output,
            primary,
            output_names: graph.output.iter().map(|o| o.name.clone()).collect(),
            engine,
        })
    }

    /// The model's contract.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// What the primary output holds.
    pub fn output_kind(&self) -> &OutputKind {
        &self.output
    }

    /// Features per row (the contract's feature names, in order).
    pub fn n_features(&self) -> usize {
        self.contract.feature_names.len()
    }

    /// Name of the graph's input.
    pub fn input_name(&self) -> &str {
        &self.input
    }

    /// `"native"` for graphs with ONNX-ML operators, `"tract"` otherwise.
    pub fn engine(&self) -> &'static str {
        match self.engine {
            Engine::Native(_) => "native",
            Engine::Tract(_) => "tract",
        }
    }

    /// Runs `batch`: row-major float32, `n_features` per row. Returns the primary output.
    pub fn run(&self, batch: &[f32]) -> Result<Prediction, ModelError> {
        let rows = self.rows(batch)?;
        let mut outputs = self.run_engine(batch, rows)?;
        let out = outputs.swap_remove(self.primary);
        let width = out.len().checked_div(rows).unwrap_or(0);
        match out.data {
            TensorData::F32(values) => Ok(Prediction {
                rows,
                width,
                values,
            }),
            _ => Err(ModelError::Graph(format!(
                "output {:?} is not float32",
                self.output_names[self.primary]
            ))),
        }
    }

    /// Runs `batch` and returns every graph output by name (labels and probabilities of a
    /// classifier, for instance). ZipMap outputs are their probability rows.
    pub fn run_all(&self, batch: &[f32]) -> Result<Vec<(String, Tensor)>, ModelError> {
        let rows = self.rows(batch)?;
        let outputs = self.run_engine(batch, rows)?;
        Ok(self.output_names.iter().cloned().zip(outputs).collect())
    }

    fn rows(&self, batch: &[f32]) -> Result<usize, ModelError> {
        let n = self.n_features();
        if batch.is_empty() || !batch.len().is_multiple_of(n) {
            return Err(ModelError::Input(format!(
                "{} values are not a whole number of rows of {n} features ({})",
                batch.len(),
                self.contract.feature_names.join(",")
            )));
        }
        Ok(batch.len() / n)
    }

    fn run_engine(&self, batch: &[f32], rows: usize) -> Result<Vec<Tensor>, ModelError> {
        match &self.engine {
            Engine::Native(plan) => plan.run(batch, rows),
            Engine::Tract(t) => t.run(batch, rows),
        }
    }
}

/// (element type, dims: `Some(size)` fixed, `None` symbolic) of a tensor value.
fn tensor_type(v: &proto::ValueInfoProto) -> Option<(i32, Vec<Option<usize>>)> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => Some((
            t.elem_type,
            t.shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(proto::dimension::Value::DimValue(v)) if v > 0 => Some(v as usize),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )),
        _ => None,
    }
}

/// Every initializer and `Constant` tensor must hold the elements its dims declare: tract
/// allocates what the dims say, so a tensor declaring 2^60 elements in a few bytes would
/// take the process down. Each element takes at least one byte of the file, whatever its
/// type, so holding fewer values than declared is refused before tract sees the graph.
fn check_tensors(graph: &proto::GraphProto) -> Result<(), ModelError> {
    let constants = graph
        .node
        .iter()
        .flat_map(|n| n.attribute.iter().filter_map(|a| a.t.as_ref()));
    for t in graph.initializer.iter().chain(constants) {
        let declared = t.dims.iter().try_fold(1u64, |acc, d| {
            u64::try_from(*d).ok().and_then(|d| acc.checked_mul(d))
        });
        let held = t.raw_data.len()
            + t.float_data.len()
            + t.int32_data.len()
            + t.int64_data.len()
            + t.double_data.len()
            + t.string_data.len();
        match declared {
            Some(count) if count <= held as u64 => {}
            _ => {
                return Err(ModelError::NotOnnx(format!(
                    "initializer {}: dims {:?} declare more elements than the {held} values                      it holds",
                    crate::contract::echo(&t.name),
                    &t.dims[..t.dims.len().min(8)]
                )));
            }
        }
    }
    Ok(())
}

/// The graph's one input must be float32 `[batch, n_features]` with a symbolic batch.
fn check_input(graph: &proto::GraphProto, n: usize) -> Result<String, ModelError> {
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&proto::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(&i.name.as_str()))
        .collect();
    let [input] = inputs[..] else {
        return Err(ModelError::Mismatch(format!(
            "the graph has {} inputs ({}); expected one float32 tensor [batch, {n}]",
            inputs.len(),
            inputs
                .iter()
                .map(|i| format!("{:?}", i.name))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let mismatch = |what: String| {
        ModelError::Mismatch(format!(
            "input {:?} {what}; expected a float32 tensor [batch, {n}] with a symbolic batch \
             dimension ({n} features in the contract)",
            input.name
        ))
    };
    let Some((elem, dims)) = tensor_type(input) else {
        return Err(mismatch("is not a tensor".to_owned()));
    };
    if elem != proto::FLOAT {
        return Err(mismatch(format!("is {}", proto::type_name(elem))));
    }
    match dims[..] {
        [None, Some(w)] if w == n => Ok(input.name.clone()),
        [Some(b), _] => Err(mismatch(format!("has a fixed batch dimension of {b}"))),
        [None, Some(w)] => Err(mismatch(format!("has {w} features"))),
        [None, None] => Err(mismatch("has no fixed number of features".to_owned())),
        _ => Err(mismatch(format!("has {} dimensions", dims.len()))),
    }
}

/// The primary output and its kind: class probabilities when the graph makes them, else
/// the one float output. A declared kind must agree with the graph.
fn infer_output(
    roles: &[Role],
    graph: &proto::GraphProto,
    declared: Option<contract::DeclaredOutput>,
) -> Result<(usize, OutputKind), ModelError> {
    let probabilities = roles
        .iter()
        .position(|r| matches!(r, Role::Probabilities(_)));
    let floats: Vec<usize> = roles
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Role::Values(_)))
        .map(|(i, _)| i)
        .collect();
    let (primary, kind) = match (probabilities, &floats[..]) {
        (Some(p), _) => match &roles[p] {
            Role::Probabilities(labels) => (
                p,
                OutputKind::Probabilities {
                    labels: labels.clone(),
                },
            ),
            _ => unreachable_kind()?,
        },
        (None, [f]) => match roles[*f] {
            Role::Values(targets) => (*f, OutputKind::Regression { targets }),
            _ => unreachable_kind()?,
        },
        (None, []) => {
            return Err(ModelError::Mismatch(
                "the graph has no float32 output".to_owned(),
            ));
        }
        (None, many) => {
            let names: Vec<&str> = many
                .iter()
                .map(|&i| graph.output[i].name.as_str())
                .collect();
            // several float outputs and probabilities declared: the first one of labels' width
            match &declared {
                Some((k, Some(labels))) if k == "probabilities" => {
                    let &f = many
                        .iter()
                        .find(|&&i| roles[i] == Role::Values(labels.len()))
                        .ok_or_else(|| {
                            ModelError::Mismatch(format!(
                                "no output of {} columns for the declared class labels",
                                labels.len()
                            ))
                        })?;
                    (
                        f,
                        OutputKind::Probabilities {
                            labels: ClassLabels::Strings(labels.clone()),
                        },
                    )
                }
                _ => {
                    return Err(ModelError::Mismatch(format!(
                        "the graph has {} float32 outputs ({}); which one is the prediction \
                         is ambiguous",
                        many.len(),
                        names.join(", ")
                    )));
                }
            }
        }
    };
    let name = &graph.output[primary].name;
    match (declared, &kind) {
        (None, _) => Ok((primary, kind)),
        (Some((k, _)), OutputKind::Regression { targets }) if k == "regression" => {
            Ok((primary, OutputKind::Regression { targets: *targets }))
        }
        (Some((k, None)), OutputKind::Probabilities { .. }) if k == "probabilities" => {
            Ok((primary, kind))
        }
        (
            Some((k, Some(labels))),
            OutputKind::Probabilities {
                labels: graph_labels,
            },
        ) if k == "probabilities" => {
            if labels == graph_labels.to_strings() {
                Ok((primary, kind))
            } else {
                Err(ModelError::Mismatch(format!(
                    "{} declares class labels [{}] but output {name:?} has {graph_labels}",
                    contract::KEY_CLASS_LABELS,
                    labels.join(", ")
                )))
            }
        }
        (Some((k, Some(labels))), OutputKind::Regression { targets })
            if k == "probabilities" && *targets == labels.len() && *targets >= 2 =>
        {
            Ok((
                primary,
                OutputKind::Probabilities {
                    labels: ClassLabels::Strings(labels),
                },
            ))
        }
        (Some((k, _)), kind) => Err(ModelError::Mismatch(format!(
            "{} declares {k:?} but output {name:?} holds {kind}",
            contract::KEY_OUTPUT
        ))),
    }
}

fn unreachable_kind<T>() -> Result<T, ModelError> {
    Err(ModelError::Graph("inconsistent output roles".to_owned()))
}
