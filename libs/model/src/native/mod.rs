//! Native evaluation of graphs that contain ONNX-ML operators: the nodes are checked and
//! turned into a plan of typed steps once, at load; a run walks the plan.
//!
//! Supported: `TreeEnsembleRegressor`, `TreeEnsembleClassifier`, `TreeEnsemble` (opset 5),
//! `LinearRegressor`, `LinearClassifier`, `Scaler`, `Normalizer`, `ZipMap`,
//! `ArrayFeatureExtractor`, and the standard `Identity` and `Cast` that exporters put
//! around them. Any other node is refused at load with its name and operator.

mod arith;
pub(crate) mod attrs;
mod linear;
pub(crate) mod post;
mod tree;

use std::collections::HashMap;

use attrs::Attrs;
use linear::{LinearClassifier, LinearRegressor, Normalizer, Scaler};
use tree::{TreeClassifier, TreeRegressor};

use crate::contract::ClassLabels;
use crate::error::ModelError;
use crate::proto::{self, GraphProto};
use crate::tensor::{Tensor, TensorData};

/// Operators this evaluator runs, for messages.
pub(crate) const SUPPORTED: &str = "TreeEnsembleRegressor, TreeEnsembleClassifier, \
    TreeEnsemble, LinearRegressor, LinearClassifier, Scaler, Normalizer, ZipMap, \
    ArrayFeatureExtractor (ai.onnx.ml) and Identity, Cast, Add, Sub, Mul, Div";

#[derive(Debug, Clone)]
enum Op {
    TreeRegressor(Box<TreeRegressor>),
    TreeClassifier(Box<TreeClassifier>),
    LinearRegressor(Box<LinearRegressor>),
    LinearClassifier(Box<LinearClassifier>),
    Scaler(Box<Scaler>),
    Normalizer(Normalizer),
    /// Cast to float32 (`true`) or int64.
    Cast(bool),
    /// Identity and ZipMap: the value passes through (ZipMap's maps are the probability
    /// rows, keyed by the class labels).
    Pass,
    /// Columns of the last axis.
    Extract(Vec<usize>),
    /// Elementwise arithmetic with a constant, or with the step's second input.
    Arith(arith::Kind, Option<Vec<f32>>),
}

#[derive(Debug, Clone)]
struct Step {
    op: Op,
    inputs: Vec<usize>,
    /// Output slots; `None` for an output nobody names.
    outputs: Vec<Option<usize>>,
}

/// What a value is, known at load.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Role {
    /// Float scores or features, this many per row.
    Values(usize),
    /// Class probabilities, one column per label.
    Probabilities(ClassLabels),
    /// The chosen class label per row.
    Labels(ClassLabels),
    /// Integers (a cast or extracted values).
    Integers(usize),
}

/// A checked, evaluable graph.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    steps: Vec<Step>,
    slots: usize,
    n_features: usize,
    /// Graph outputs: name, slot, role.
    pub(crate) outputs: Vec<(String, usize, Role)>,
}

impl Plan {
    /// Checks `graph`, whose one input `input` has `n_features` columns, and plans it.
    pub(crate) fn build(
        graph: &GraphProto,
        input: &str,
        n_features: usize,
    ) -> Result<Self, ModelError> {
        let initializers: HashMap<&str, &proto::TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut slot_of: HashMap<String, usize> = HashMap::from([(input.to_owned(), 0)]);
        let mut roles: Vec<Role> = vec![Role::Values(n_features)];
        let mut steps = Vec::with_capacity(graph.node.len());
        for (i, node) in graph.node.iter().enumerate() {
            let a = Attrs::new(node, i);
            let domain = match node.domain.as_str() {
                "" | "ai.onnx" => "",
                "ai.onnx.ml" => "ml",
                other => {
                    return Err(a.error(format!("operator domain {other:?} is not supported")));
                }
            };
            let mut inputs = Vec::new();
            let mut constant = None;
            for (k, name) in node.input.iter().enumerate() {
                if name.is_empty() {
                    continue;
                }
                match slot_of.get(name) {
                    Some(&s) => inputs.push(s),
                    None if k > 0 && initializers.contains_key(name.as_str()) => {
                        constant = initializers.get(name.as_str()).copied();
                    }
                    None => {
                        return Err(a.error(format!(
                            "input {k} {name:?} is not the graph input nor made by an earlier node"
                        )));
                    }
                }
            }
            let Some(&first) = inputs.first() else {
                return Err(a.error("has no computed input"));
            };
            let role = roles[first].clone();
            let float_width = |what: &str| -> Result<usize, ModelError> {
                match &role {
                    Role::Values(w) => Ok(*w),
                    Role::Probabilities(l) => Ok(l.len()),
                    _ => Err(a.error(format!("{what} needs a float input, got class labels"))),
                }
            };
            let (op, out_roles): (Op, Vec<Role>) = match (domain, node.op_type.as_str()) {
                ("ml", "TreeEnsembleRegressor") | ("ml", "TreeEnsemble") => {
                    let width = float_width("a tree ensemble")?;
                    let t = if node.op_type == "TreeEnsemble" {
                        TreeRegressor::unified(&a)?
                    } else {
                        TreeRegressor::legacy(&a)?
                    };
                    check_features(&a, t.ensemble.features, width)?;
                    let targets = t.targets();
                    (Op::TreeRegressor(Box::new(t)), vec![Role::Values(targets)])
                }
                ("ml", "TreeEnsembleClassifier") => {
                    let width = float_width("a tree ensemble")?;
                    let t = TreeClassifier::legacy(&a)?;
                    check_features(&a, t.ensemble.features, width)?;
                    if t.classes() < 2 {
                        return Err(a.error("needs at least two class labels"));
                    }
                    let labels = t.labels.clone();
                    (
                        Op::TreeClassifier(Box::new(t)),
                        vec![Role::Labels(labels.clone()), Role::Probabilities(labels)],
                    )
                }
                ("ml", "LinearRegressor") => {
                    let width = float_width("LinearRegressor")?;
                    let l = LinearRegressor::new(&a)?;
                    check_width(&a, "coefficients", l.features, width)?;
                    let targets = l.targets;
                    (
                        Op::LinearRegressor(Box::new(l)),
                        vec![Role::Values(targets)],
                    )
                }
                ("ml", "LinearClassifier") => {
                    let width = float_width("LinearClassifier")?;
                    let l = LinearClassifier::new(&a)?;
                    check_width(&a, "coefficients", l.features, width)?;
                    let labels = l.labels.clone();
                    let probabilities = if l.width() == labels.len() {
                        Role::Probabilities(labels.clone())
                    } else {
                        Role::Values(l.width())
                    };
                    (
                        Op::LinearClassifier(Box::new(l)),
                        vec![Role::Labels(labels), probabilities],
                    )
                }
                ("ml", "Scaler") => {
                    let width = float_width("Scaler")?;
                    (
                        Op::Scaler(Box::new(Scaler::new(&a, width)?)),
                        vec![Role::Values(width)],
                    )
                }
                ("ml", "Normalizer") => {
                    float_width("Normalizer")?;
                    (Op::Normalizer(Normalizer::new(&a)?), vec![role.clone()])
                }
                ("ml", "ZipMap") => {
                    let labels =
                        tree::class_labels(&a, "classlabels_int64s", "classlabels_strings")?;
                    let width = float_width("ZipMap")?;
                    if width != labels.len() {
                        return Err(a.error(format!(
                            "has {} class labels for {width} probability columns",
                            labels.len()
                        )));
                    }
                    if let Role::Probabilities(from) = &role
                        && *from != labels
                    {
                        return Err(a.error(format!(
                            "class labels {labels} differ from the classifier's {from}"
                        )));
                    }
                    (Op::Pass, vec![Role::Probabilities(labels)])
                }
                ("ml", "ArrayFeatureExtractor") => {
                    let indices = constant
                        .ok_or_else(|| a.error("input 1 (indices) must be an initializer"))
                        .and_then(|t| {
                            attrs::tensor_i64(t).map_err(|e| a.error(format!("indices {e}")))
                        })?;
                    let width = match &role {
                        Role::Values(w) | Role::Integers(w) => *w,
                        Role::Probabilities(l) => l.len(),
                        Role::Labels(_) => 1,
                    };
                    let indices = indices
                        .iter()
                        .map(|&k| usize::try_from(k).ok().filter(|&k| k < width))
                        .collect::<Option<Vec<usize>>>()
                        .ok_or_else(|| {
                            a.error(format!(
                                "indices {indices:?} reach past the {width} columns"
                            ))
                        })?;
                    let out = match &role {
                        Role::Integers(_) => Role::Integers(indices.len()),
                        Role::Labels(_) => {
                            return Err(a.error("extracting from class labels is not supported"));
                        }
                        _ => Role::Values(indices.len()),
                    };
                    (Op::Extract(indices), vec![out])
                }
                ("", op) if arith::Kind::parse(op).is_some() => {
                    let kind = arith::Kind::parse(op).ok_or_else(|| a.error("arithmetic"))?;
                    let width = float_width("arithmetic")?;
                    let other = match (constant, inputs.get(1)) {
                        (Some(t), None) => {
                            let c = attrs::tensor_f64(t)
                                .map_err(|e| a.error(format!("input 1 {e}")))?;
                            if c.len() != 1 && c.len() != width {
                                return Err(a.error(format!(
                                    "input 1 has {} values; one, or one per column ({width}), \
                                     is supported",
                                    c.len()
                                )));
                            }
                            Some(c.iter().map(|&v| v as f32).collect())
                        }
                        (None, Some(&b)) if roles[b] == Role::Values(width) || roles[b] == role => {
                            None
                        }
                        _ => {
                            return Err(a.error(format!(
                                "needs a constant or a computed input of {width} float columns \
                                 as input 1"
                            )));
                        }
                    };
                    (Op::Arith(kind, other), vec![Role::Values(width)])
                }
                ("", "Identity") => (Op::Pass, vec![role.clone()]),
                ("", "Cast") => {
                    let to = a.int("to", 0) as i32;
                    match (to, &role) {
                        (proto::FLOAT, Role::Labels(_)) => {
                            return Err(a.error("casting class labels to float is not supported"));
                        }
                        (proto::FLOAT, Role::Integers(w)) => {
                            (Op::Cast(true), vec![Role::Values(*w)])
                        }
                        (proto::FLOAT, _) => (Op::Pass, vec![role.clone()]),
                        (proto::INT64, Role::Labels(ClassLabels::Int64(_))) => {
                            (Op::Pass, vec![role.clone()])
                        }
                        (proto::INT64, Role::Integers(_)) => (Op::Pass, vec![role.clone()]),
                        (proto::INT64, Role::Values(w)) => {
                            (Op::Cast(false), vec![Role::Integers(*w)])
                        }
                        (to, _) => {
                            return Err(a.error(format!(
                                "attribute to: casting to {} is not supported here",
                                proto::type_name(to)
                            )));
                        }
                    }
                }
                (_, op) => {
                    return Err(a.error(format!(
                        "operator {}{op} is not supported in a graph with ONNX-ML operators \
                         (supported: {SUPPORTED})",
                        if domain == "ml" { "ai.onnx.ml." } else { "" }
                    )));
                }
            };
            let mut outputs = Vec::new();
            for (k, name) in node.output.iter().enumerate() {
                if name.is_empty() || k >= out_roles.len() {
                    outputs.push(None);
                    continue;
                }
                if slot_of.contains_key(name) {
                    return Err(a.error(format!("output {name:?} is produced twice")));
                }
                slot_of.insert(name.clone(), roles.len());
                outputs.push(Some(roles.len()));
                roles.push(out_roles[k].clone());
            }
            steps.push(Step {
                op,
                inputs,
                outputs,
            });
        }
        let mut outputs = Vec::new();
        for o in &graph.output {
            let &slot = slot_of.get(&o.name).ok_or_else(|| {
                ModelError::Graph(format!("output {:?} is made by no node", o.name))
            })?;
            outputs.push((o.name.clone(), slot, roles[slot].clone()));
        }
        Ok(Self {
            steps,
            slots: roles.len(),
            n_features,
            outputs,
        })
    }

    /// Evaluates the plan on `x` (`rows` x `n_features`); the graph's outputs in order.
    pub(crate) fn run(&self, x: &[f32], rows: usize) -> Result<Vec<Tensor>, ModelError> {
        let mut values: Vec<Option<Tensor>> = vec![None; self.slots];
        let nf = self.n_features;
        for step in &self.steps {
            let input = step.inputs[0];
            let (data, width): (&[f32], usize) = if input == 0 {
                (x, nf)
            } else {
                let v = values[input]
                    .as_ref()
                    .ok_or_else(|| ModelError::Graph(format!("slot {input} has no value")))?;
                (v.as_f32().unwrap_or(&[]), v.cols())
            };
            let out: Vec<Tensor> = match &step.op {
                Op::TreeRegressor(t) => vec![t.run(data, rows, width)],
                Op::TreeClassifier(t) => {
                    let (l, p) = t.run(data, rows, width);
                    vec![l, p]
                }
                Op::LinearRegressor(l) => vec![l.run(data, rows, width)],
                Op::LinearClassifier(l) => {
                    let (labels, p) = l.run(data, rows, width);
                    vec![labels, p]
                }
                Op::Scaler(s) => vec![s.run(data, rows, width)],
                Op::Normalizer(n) => vec![n.run(data, rows, width)],
                Op::Pass => vec![self.value(&values, input, x, rows)?],
                Op::Arith(kind, constant) => {
                    let out = match constant {
                        Some(c) => kind.run(data, c),
                        None => {
                            let b = self.value(&values, step.inputs[1], x, rows)?;
                            kind.run(data, b.as_f32().unwrap_or(&[]))
                        }
                    };
                    vec![Tensor::f32(vec![rows, width], out)]
                }
                Op::Cast(to_float) => {
                    let v = self.value(&values, input, x, rows)?;
                    let data = match (v.data, to_float) {
                        (TensorData::I64(d), true) => {
                            TensorData::F32(d.iter().map(|&i| i as f32).collect())
                        }
                        (TensorData::F32(d), false) => {
                            TensorData::I64(d.iter().map(|&f| f as i64).collect())
                        }
                        (d, _) => d,
                    };
                    vec![Tensor {
                        shape: v.shape,
                        data,
                    }]
                }
                Op::Extract(indices) => {
                    let v = self.value(&values, input, x, rows)?;
                    let cols = v.cols();
                    let pick =
                        |n: usize| (0..n).flat_map(|r| indices.iter().map(move |&k| r * cols + k));
                    let n = v.len() / cols.max(1);
                    let data = match &v.data {
                        TensorData::F32(d) => TensorData::F32(pick(n).map(|i| d[i]).collect()),
                        TensorData::I64(d) => TensorData::I64(pick(n).map(|i| d[i]).collect()),
                        TensorData::Str(d) => {
                            TensorData::Str(pick(n).map(|i| d[i].clone()).collect())
                        }
                    };
                    vec![Tensor {
                        shape: vec![n, indices.len()],
                        data,
                    }]
                }
            };
            for (slot, value) in step.outputs.iter().zip(out) {
                if let Some(s) = slot {
                    values[*s] = Some(value);
                }
            }
        }
        self.outputs
            .iter()
            .map(|(name, slot, _)| {
                self.value(&values, *slot, x, rows)
                    .map_err(|_| ModelError::Graph(format!("output {name:?} was not computed")))
            })
            .collect()
    }

    fn value(
        &self,
        values: &[Option<Tensor>],
        slot: usize,
        x: &[f32],
        rows: usize,
    ) -> Result<Tensor, ModelError> {
        if slot == 0 {
            return Ok(Tensor::f32(vec![rows, self.n_features], x.to_vec()));
        }
        values[slot]
            .clone()
            .ok_or_else(|| ModelError::Graph(format!("slot {slot} has no value")))
    }
}

fn check_features(a: &Attrs<'_>, used: usize, width: usize) -> Result<(), ModelError> {
    if used > width {
        return Err(a.error(format!(
            "attribute nodes_featureids uses feature {} but the input has {width} features",
            used - 1
        )));
    }
    Ok(())
}

fn check_width(a: &Attrs<'_>, attr: &str, expected: usize, width: usize) -> Result<(), ModelError> {
    if expected != width {
        return Err(a.error(format!(
            "attribute {attr} is for {expected} features but the input has {width}"
        )));
    }
    Ok(())
}
