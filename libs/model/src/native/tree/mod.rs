//! Tree ensembles of ONNX-ML (`TreeEnsembleRegressor`, `TreeEnsembleClassifier` and the
//! unified `TreeEnsemble` of ai.onnx.ml opset 5), evaluated natively.
//!
//! Scores are accumulated in float32 tree by tree, base values, aggregation and the binary
//! classifier cases follow onnxruntime (the reference every exporter tests against), so
//! outputs agree with it.

mod layout;
mod read;

use layout::Ensemble;
use read::{Aggregate, legacy_raw, unified_raw};

use super::attrs::Attrs;
use super::post::{self, Post};
use crate::contract::ClassLabels;
use crate::error::ModelError;
use crate::tensor::{Tensor, TensorData};

/// `TreeEnsembleRegressor` (ai.onnx.ml 1 and 3) or `TreeEnsemble` (ai.onnx.ml 5).
#[derive(Debug, Clone)]
pub(crate) struct TreeRegressor {
    pub(crate) ensemble: Ensemble,
    agg: Aggregate,
    post: Post,
    base: Vec<f32>,
}

/// `TreeEnsembleClassifier` (ai.onnx.ml 1 and 3).
#[derive(Debug, Clone)]
pub(crate) struct TreeClassifier {
    pub(crate) ensemble: Ensemble,
    post: Post,
    base: Vec<f32>,
    pub(crate) labels: ClassLabels,
    /// Two classes and weights for one of them only.
    binary: bool,
    all_positive: bool,
}

impl TreeRegressor {
    /// From a legacy `TreeEnsembleRegressor`.
    pub(crate) fn legacy(a: &Attrs<'_>) -> Result<Self, ModelError> {
        let n_targets = usize::try_from(a.int("n_targets", 1))
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| a.error("attribute n_targets must be >= 1"))?;
        let raw = legacy_raw(a, "target")?;
        let agg_name = a.string("aggregate_function", "SUM")?;
        let agg = Aggregate::parse(&agg_name).ok_or_else(|| {
            a.error(format!(
                "attribute aggregate_function {agg_name:?} is not SUM, AVERAGE, MIN or MAX"
            ))
        })?;
        let post = parse_post(a)?;
        let base = base_values(a)?;
        Ok(Self {
            ensemble: Ensemble::build(a, raw, n_targets)?,
            agg,
            post,
            base,
        })
    }

    /// From `TreeEnsemble` of ai.onnx.ml opset 5.
    pub(crate) fn unified(a: &Attrs<'_>) -> Result<Self, ModelError> {
        let n_targets = usize::try_from(a.int("n_targets", 0))
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| a.error("attribute n_targets must be present and >= 1"))?;
        let code = a.int("aggregate_function", 1);
        let agg = Aggregate::from_code(code).ok_or_else(|| {
            a.error(format!(
                "attribute aggregate_function {code} is not 0 (AVERAGE), 1 (SUM), 2 (MIN) or 3 (MAX)"
            ))
        })?;
        let code = a.int("post_transform", 0);
        let post = Post::from_code(code)
            .ok_or_else(|| a.error(format!("attribute post_transform {code} is not 0 to 4")))?;
        let raw = unified_raw(a)?;
        Ok(Self {
            ensemble: Ensemble::build(a, raw, n_targets)?,
            agg,
            post,
            base: Vec::new(),
        })
    }

    /// Number of outputs per row.
    pub(crate) fn targets(&self) -> usize {
        self.ensemble.n_targets
    }

    /// Scores of `x` (`rows` x `nf`), `rows` x targets.
    pub(crate) fn run(&self, x: &[f32], rows: usize, nf: usize) -> Tensor {
        let t = self.ensemble.n_targets;
        let mut scores = vec![0.0f32; rows * t];
        let mut has = vec![false; rows * t];
        self.ensemble
            .accumulate(x, nf, self.agg, &mut scores, &mut has);
        let n_trees = self.ensemble.trees() as f32;
        if t == 1 {
            let origin = if self.base.len() == 1 {
                self.base[0]
            } else {
                0.0
            };
            for (s, &h) in scores.iter_mut().zip(&has) {
                *s = match self.agg {
                    Aggregate::Sum => *s + origin,
                    Aggregate::Average => *s / n_trees + origin,
                    Aggregate::Min | Aggregate::Max if h => *s + origin,
                    Aggregate::Min | Aggregate::Max => origin,
                };
                // onnxruntime applies only PROBIT to a single score
                if self.post == Post::Probit {
                    *s = post::probit(*s);
                }
            }
        } else {
            let use_base = self.base.len() == t;
            for (row, hrow) in scores.chunks_exact_mut(t).zip(has.chunks_exact(t)) {
                for (j, (s, &h)) in row.iter_mut().zip(hrow).enumerate() {
                    let b = if use_base { self.base[j] } else { 0.0 };
                    *s = match self.agg {
                        Aggregate::Sum => *s + b,
                        Aggregate::Average => *s / n_trees + b,
                        Aggregate::Min | Aggregate::Max => b + if h { *s } else { 0.0 },
                    };
                }
                self.post.apply_row(row);
            }
        }
        Tensor::f32(vec![rows, t], scores)
    }
}

impl TreeClassifier {
    /// From a legacy `TreeEnsembleClassifier`.
    pub(crate) fn legacy(a: &Attrs<'_>) -> Result<Self, ModelError> {
        let labels = class_labels(a, "classlabels_int64s", "classlabels_strings")?;
        let n = labels.len();
        let raw = legacy_raw(a, "class")?;
        let ids = a.ints("class_ids");
        let weights = a.floats_or_tensor("class_weights")?.unwrap_or_default();
        let mut classes: Vec<i64> = ids.to_vec();
        classes.sort_unstable();
        classes.dedup();
        let binary = n == 2 && classes.len() == 1;
        let all_positive = weights.iter().all(|&w| w >= 0.0);
        let post = parse_post(a)?;
        let base = base_values(a)?;
        Ok(Self {
            ensemble: Ensemble::build(a, raw, n)?,
            post,
            base,
            labels,
            binary,
            all_positive,
        })
    }

    /// Number of classes.
    pub(crate) fn classes(&self) -> usize {
        self.labels.len()
    }

    /// Label index (or a literal 0/1, see below) and class scores of each row.
    pub(crate) fn run(&self, x: &[f32], rows: usize, nf: usize) -> (Tensor, Tensor) {
        let c = self.labels.len();
        let mut scores = vec![0.0f32; rows * c];
        let mut has = vec![false; rows * c];
        self.ensemble
            .accumulate(x, nf, Aggregate::Sum, &mut scores, &mut has);
        let mut out = vec![0.0f32; rows * c];
        let mut chosen = Vec::with_capacity(rows);
        for r in 0..rows {
            let (s, h) = (
                &mut scores[r * c..(r + 1) * c],
                &mut has[r * c..(r + 1) * c],
            );
            let z = &mut out[r * c..(r + 1) * c];
            chosen.push(if c > 2 {
                self.finalize_many(s, h, z)
            } else {
                self.finalize_two(s, h, z)
            });
        }
        let labels = match &self.labels {
            ClassLabels::Int64(l) => TensorData::I64(
                chosen
                    .iter()
                    .map(|c| match *c {
                        Chosen::Class(i) => l[i],
                        Chosen::Literal(v) => v,
                    })
                    .collect(),
            ),
            ClassLabels::Strings(l) => TensorData::Str(
                chosen
                    .iter()
                    .map(|c| match *c {
                        Chosen::Class(i) => l[i].clone(),
                        Chosen::Literal(v) => v.to_string(),
                    })
                    .collect(),
            ),
        };
        (
            Tensor {
                shape: vec![rows],
                data: labels,
            },
            Tensor::f32(vec![rows, c], out),
        )
    }

    fn finalize_many(&self, s: &mut [f32], h: &mut [bool], z: &mut [f32]) -> Chosen {
        for (k, &b) in self.base.iter().enumerate().take(s.len()) {
            s[k] = if h[k] { s[k] + b } else { b };
            h[k] = true;
        }
        let mut best: Option<usize> = None;
        for k in 0..s.len() {
            if h[k] && best.is_none_or(|b| s[k] > s[b]) {
                best = Some(k);
            }
        }
        z.copy_from_slice(s);
        self.post.apply_row(z);
        Chosen::Class(best.unwrap_or(0))
    }

    /// Two classes: onnxruntime's cases, so that labels and probabilities agree with it.
    fn finalize_two(&self, s: &mut [f32], h: &mut [bool], z: &mut [f32]) -> Chosen {
        let mut extra = None; // how the second column is made from a single score
        let mut single = false;
        match self.base.len() {
            2 => {
                if h[1] {
                    s[1] = self.base[1] + s[0];
                    s[0] = -s[1];
                } else {
                    s[1] += self.base[1];
                    s[0] += self.base[0];
                }
            }
            1 => {
                s[0] += self.base[0];
                single = !h[1];
            }
            _ => {
                extra = Some(Second::MixedNegative);
                single = !h[1];
            }
        }
        let positive = if !single && h[1] {
            s[1]
        } else if h[0] {
            s[0]
        } else {
            0.0
        };
        let chosen = if self.binary {
            let (second, class) = match (self.all_positive, positive) {
                (true, p) if p > 0.5 => (Second::PositiveWins, 1),
                (true, _) => (Second::PositiveLoses, 0),
                (false, p) if p > 0.0 => (Second::MixedPositive, 1),
                (false, _) => (Second::MixedNegative, 0),
            };
            extra = Some(second);
            Chosen::Class(class)
        } else {
            Chosen::Literal(i64::from(positive > 0.0))
        };
        if !single {
            z.copy_from_slice(s);
            self.post.apply_row(z);
            return chosen;
        }
        let v = s[0];
        if self.post == Post::Probit {
            z[0] = post::probit(v);
            return chosen;
        }
        match extra {
            Some(Second::PositiveWins | Second::PositiveLoses) => {
                z[0] = 1.0 - v;
                z[1] = v;
            }
            Some(Second::MixedPositive | Second::MixedNegative) => {
                if self.post == Post::Logistic {
                    z[0] = post::logistic(-v);
                    z[1] = post::logistic(v);
                } else {
                    z[0] = -v;
                    z[1] = v;
                }
            }
            None => z[0] = v,
        }
        chosen
    }
}

#[derive(Debug, Clone, Copy)]
enum Chosen {
    /// Index into the class labels.
    Class(usize),
    /// onnxruntime answers a literal 1 or 0 for two classes weighted separately.
    Literal(i64),
}

#[derive(Debug, Clone, Copy)]
enum Second {
    PositiveWins,
    PositiveLoses,
    MixedPositive,
    MixedNegative,
}

fn parse_post(a: &Attrs<'_>) -> Result<Post, ModelError> {
    let name = a.string("post_transform", "NONE")?;
    Post::parse(&name).ok_or_else(|| {
        a.error(format!(
            "attribute post_transform {name:?} is not NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO or PROBIT"
        ))
    })
}

fn base_values(a: &Attrs<'_>) -> Result<Vec<f32>, ModelError> {
    Ok(a.floats_or_tensor("base_values")?
        .unwrap_or_default()
        .into_iter()
        .map(|v| v as f32)
        .collect())
}

/// Class labels from the int64 or the string attribute (exactly one present).
pub(crate) fn class_labels(
    a: &Attrs<'_>,
    ints: &str,
    strings: &str,
) -> Result<ClassLabels, ModelError> {
    let i = a.ints(ints);
    let s = a.strings(strings)?;
    match (i.is_empty(), s.is_empty()) {
        (false, true) => Ok(ClassLabels::Int64(i.to_vec())),
        (true, false) => Ok(ClassLabels::Strings(s)),
        (true, true) => Err(a.error(format!("neither {ints} nor {strings} is set"))),
        (false, false) => Err(a.error(format!("both {ints} and {strings} are set"))),
    }
}
