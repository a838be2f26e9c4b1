//! The linear ONNX-ML operators: `LinearRegressor`, `LinearClassifier`, `Scaler` and
//! `Normalizer`, evaluated as onnxruntime evaluates them.

use super::attrs::Attrs;
use super::post::{self, Post};
use super::tree::class_labels;
use crate::contract::ClassLabels;
use crate::error::ModelError;
use crate::tensor::{Tensor, TensorData};

/// Row-major `x` (`rows` x `nf`) times `w`ᵀ (`k` x `nf`) plus `b` (`k`).
fn affine(x: &[f32], nf: usize, w: &[f32], b: &[f32], k: usize) -> Vec<f32> {
    let rows = x.len() / nf.max(1);
    let mut out = Vec::with_capacity(rows * k);
    for row in x.chunks_exact(nf) {
        for (j, wj) in w.chunks_exact(nf).enumerate() {
            let dot = row.iter().zip(wj).fold(0.0f32, |acc, (a, b)| acc + a * b);
            out.push(dot + b.get(j).copied().unwrap_or(0.0));
        }
    }
    out
}

fn coefficients(a: &Attrs<'_>, k: usize) -> Result<(Vec<f32>, usize), ModelError> {
    let w = a.floats("coefficients").to_vec();
    if w.is_empty() || k == 0 || !w.len().is_multiple_of(k) {
        return Err(a.error(format!(
            "attribute coefficients has {} values, not a multiple of {k} (the number of targets)",
            w.len()
        )));
    }
    let nf = w.len() / k;
    Ok((w, nf))
}

/// `LinearRegressor`.
#[derive(Debug, Clone)]
pub(crate) struct LinearRegressor {
    w: Vec<f32>,
    b: Vec<f32>,
    pub(crate) targets: usize,
    pub(crate) features: usize,
    post: Post,
}

impl LinearRegressor {
    pub(crate) fn new(a: &Attrs<'_>) -> Result<Self, ModelError> {
        let targets = usize::try_from(a.int("targets", 1))
            .ok()
            .filter(|&t| t >= 1)
            .ok_or_else(|| a.error("attribute targets must be >= 1"))?;
        let (w, features) = coefficients(a, targets)?;
        let b = a.floats("intercepts").to_vec();
        if !b.is_empty() && b.len() != targets {
            return Err(a.error(format!(
                "attribute intercepts has {} values, expected {targets} (one per target)",
                b.len()
            )));
        }
        let name = a.string("post_transform", "NONE")?;
        let post = Post::parse(&name)
            .ok_or_else(|| a.error(format!("attribute post_transform {name:?} is unknown")))?;
        Ok(Self {
            w,
            b,
            targets,
            features,
            post,
        })
    }

    pub(crate) fn run(&self, x: &[f32], rows: usize, nf: usize) -> Tensor {
        let mut out = affine(x, nf, &self.w, &self.b, self.targets);
        if self.targets == 1 {
            if self.post == Post::Probit {
                out.iter_mut().for_each(|v| *v = post::probit(*v));
            }
        } else {
            out.chunks_exact_mut(self.targets)
                .for_each(|row| self.post.apply_row(row));
        }
        Tensor::f32(vec![rows, self.targets], out)
    }
}

/// `LinearClassifier`.
#[derive(Debug, Clone)]
pub(crate) struct LinearClassifier {
    w: Vec<f32>,
    b: Vec<f32>,
    classes: usize,
    pub(crate) features: usize,
    pub(crate) labels: ClassLabels,
    post: Post,
    /// One score column for two labels: the second column is made from it.
    add_second: bool,
}

impl LinearClassifier {
    pub(crate) fn new(a: &Attrs<'_>) -> Result<Self, ModelError> {
        let labels = class_labels(a, "classlabels_ints", "classlabels_strings")?;
        let b = a.floats("intercepts").to_vec();
        let classes = b.len();
        if classes == 0 {
            return Err(a.error("attribute intercepts is empty (one value per class expected)"));
        }
        let (w, features) = coefficients(a, classes)?;
        let name = a.string("post_transform", "NONE")?;
        let post = Post::parse(&name)
            .ok_or_else(|| a.error(format!("attribute post_transform {name:?} is unknown")))?;
        let add_second = classes == 1 && labels.len() == 2;
        if add_second && post == Post::Probit {
            return Err(a.error(
                "post_transform PROBIT with one score column for two classes is not supported",
            ));
        }
        if classes > 1 && labels.len() != classes {
            return Err(a.error(format!(
                "{} class labels for {classes} score columns (intercepts)",
                labels.len()
            )));
        }
        Ok(Self {
            w,
            b,
            classes,
            features,
            labels,
            post,
            add_second,
        })
    }

    /// Width of the probabilities output.
    pub(crate) fn width(&self) -> usize {
        if self.add_second { 2 } else { self.classes }
    }

    pub(crate) fn run(&self, x: &[f32], rows: usize, nf: usize) -> (Tensor, Tensor) {
        let scores = affine(x, nf, &self.w, &self.b, self.classes);
        let labels = if self.classes == 1 {
            let pick = |s: f32| usize::from(s > 0.0);
            match &self.labels {
                ClassLabels::Int64(l) if l.len() == 2 => {
                    TensorData::I64(scores.iter().map(|&s| l[pick(s)]).collect())
                }
                ClassLabels::Strings(l) if l.len() == 2 => {
                    TensorData::Str(scores.iter().map(|&s| l[pick(s)].clone()).collect())
                }
                ClassLabels::Int64(_) => {
                    TensorData::I64(scores.iter().map(|&s| pick(s) as i64).collect())
                }
                ClassLabels::Strings(_) => {
                    TensorData::Str(scores.iter().map(|&s| pick(s).to_string()).collect())
                }
            }
        } else {
            let best: Vec<usize> = scores
                .chunks_exact(self.classes)
                .map(|row| {
                    let mut k = 0;
                    for j in 1..row.len() {
                        if row[j] > row[k] {
                            k = j;
                        }
                    }
                    k
                })
                .collect();
            match &self.labels {
                ClassLabels::Int64(l) => TensorData::I64(best.iter().map(|&k| l[k]).collect()),
                ClassLabels::Strings(l) => {
                    TensorData::Str(best.iter().map(|&k| l[k].clone()).collect())
                }
            }
        };
        let probabilities = if self.add_second {
            // onnxruntime: the score is taken as the second class's probability
            scores.iter().flat_map(|&s| [1.0 - s, s]).collect()
        } else if self.classes == 1 {
            scores
                .iter()
                .map(|&s| {
                    if self.post == Post::Probit {
                        post::probit(s)
                    } else {
                        s
                    }
                })
                .collect()
        } else {
            let mut scores = scores;
            scores
                .chunks_exact_mut(self.classes)
                .for_each(|row| self.post.apply_row(row));
            scores
        };
        (
            Tensor {
                shape: vec![rows],
                data: labels,
            },
            Tensor::f32(vec![rows, self.width()], probabilities),
        )
    }
}

/// `Scaler`: (x - offset) * scale, per feature or broadcast.
#[derive(Debug, Clone)]
pub(crate) struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Scaler {
    pub(crate) fn new(a: &Attrs<'_>, nf: usize) -> Result<Self, ModelError> {
        let expand = |name: &str| -> Result<Vec<f32>, ModelError> {
            let v = a.floats(name);
            match v.len() {
                0 => Ok(vec![if name == "scale" { 1.0 } else { 0.0 }; nf]),
                1 => Ok(vec![v[0]; nf]),
                n if n == nf => Ok(v.to_vec()),
                n => Err(a.error(format!(
                    "attribute {name} has {n} values; expected 1 or {nf} (the input's width)"
                ))),
            }
        };
        Ok(Self {
            offset: expand("offset")?,
            scale: expand("scale")?,
        })
    }

    pub(crate) fn run(&self, x: &[f32], rows: usize, nf: usize) -> Tensor {
        let mut out = x.to_vec();
        for row in out.chunks_exact_mut(nf) {
            for ((v, o), s) in row.iter_mut().zip(&self.offset).zip(&self.scale) {
                *v = (*v - o) * s;
            }
        }
        Tensor::f32(vec![rows, nf], out)
    }
}

/// `Normalizer`: each row divided by its max, L1 or L2 norm.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Normalizer {
    Max,
    L1,
    L2,
}

impl Normalizer {
    pub(crate) fn new(a: &Attrs<'_>) -> Result<Self, ModelError> {
        let norm = a.string("norm", "MAX")?;
        match norm.as_str() {
            "MAX" => Ok(Self::Max),
            "L1" => Ok(Self::L1),
            "L2" => Ok(Self::L2),
            _ => Err(a.error(format!("attribute norm {norm:?} is not MAX, L1 or L2"))),
        }
    }

    pub(crate) fn run(self, x: &[f32], rows: usize, nf: usize) -> Tensor {
        let mut out = x.to_vec();
        for row in out.chunks_exact_mut(nf) {
            let d = match self {
                Self::Max => row.iter().copied().fold(f32::MIN, f32::max),
                Self::L1 => row.iter().map(|v| v.abs()).sum(),
                Self::L2 => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            row.iter_mut().for_each(|v| *v /= d);
        }
        Tensor::f32(vec![rows, nf], out)
    }
}
