//! Training the models `stockcast train` exports: a point-in-time [`Dataset`], walk-forward
//! folds with an embargo, ridge regression or gradient-boosted trees, validation metrics
//! against naive baselines, and the ONNX export with the contract.
//!
//! [`train`] validates each fold's model on its block (and the baselines on the same rows),
//! then fits the final model on every row.

pub mod dataset;
mod export;
pub mod gbt;
pub mod metrics;
pub mod ridge;

use std::collections::BTreeMap;
use std::time::Instant;

pub use dataset::{Dataset, Fold, FoldSpec, walk_forward};
pub use gbt::{Gbt, GbtParams};
pub use metrics::Metrics;
pub use ridge::Ridge;

use crate::contract::Contract;

/// What to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Algorithm {
    /// Ridge regression with this penalty on standardized coefficients.
    Ridge {
        /// Penalty, >= 0.
        lambda: f64,
    },
    /// Gradient-boosted trees.
    Gbt(GbtParams),
}

impl Algorithm {
    /// `ridge` or `gbt`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ridge { .. } => "ridge",
            Self::Gbt(_) => "gbt",
        }
    }

    /// The settings as JSON.
    pub fn params_json(&self) -> serde_json::Value {
        match self {
            Self::Ridge { lambda } => serde_json::json!({ "lambda": lambda }),
            Self::Gbt(p) => serde_json::json!({
                "trees": p.trees, "max_depth": p.max_depth, "learning_rate": p.learning_rate,
                "min_leaf": p.min_leaf, "l2": p.l2, "subsample": p.subsample,
                "max_bins": p.max_bins, "seed": p.seed,
            }),
        }
    }

    /// Fits on row-major `x`.
    pub fn fit(&self, x: &[f32], y: &[f32], n_features: usize) -> Result<Fitted, String> {
        Ok(match self {
            Self::Ridge { lambda } => Fitted::Ridge(Ridge::fit(x, y, n_features, *lambda)?),
            Self::Gbt(p) => Fitted::Gbt(Gbt::fit(x, y, n_features, p)?),
        })
    }
}

/// A fitted model.
#[derive(Debug, Clone, PartialEq)]
pub enum Fitted {
    /// Ridge regression.
    Ridge(Ridge),
    /// Boosted trees.
    Gbt(Gbt),
}

impl Fitted {
    /// Predictions for row-major `x`.
    pub fn predict(&self, x: &[f32], n_features: usize) -> Vec<f32> {
        let rows = x.chunks_exact(n_features.max(1));
        match self {
            Self::Ridge(m) => rows.map(|r| m.predict(r) as f32).collect(),
            Self::Gbt(m) => rows.map(|r| m.predict(r)).collect(),
        }
    }

    /// ONNX bytes with `contract` in `metadata_props`.
    pub fn to_onnx(&self, contract: &Contract) -> Result<Vec<u8>, String> {
        match self {
            Self::Ridge(m) => m.to_onnx(contract),
            Self::Gbt(m) => m.to_onnx(contract),
        }
    }
}

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSpec {
    /// The model.
    pub algorithm: Algorithm,
    /// The walk-forward split.
    pub folds: FoldSpec,
    /// Periods (bars) per year, to annualize the Sharpe ratio: 252 for daily bars.
    pub periods_per_year: f64,
}

/// The model's metrics and the baselines', on the same rows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scores {
    /// The trained model.
    pub model: Metrics,
    /// Predicting a zero return.
    pub zero: Metrics,
    /// Predicting the last observed return over the horizon (momentum).
    pub momentum: Metrics,
}

impl Scores {
    fn score(pred: &[f32], momentum: &[f32], y: &[f32], times: &[i64], ppy: f64) -> Self {
        Self {
            model: Metrics::score(pred, y, times, ppy),
            zero: Metrics::score(&vec![0.0; y.len()], y, times, ppy),
            momentum: Metrics::score(momentum, y, times, ppy),
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.model.to_json(),
            "zero": self.zero.to_json(),
            "momentum": self.momentum.to_json(),
        })
    }
}

/// One fold's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldReport {
    /// The rows.
    pub fold: Fold,
    /// First and last as-of time trained on, seconds since epoch.
    pub train_times: (i64, i64),
    /// First and last as-of time validated on, seconds since epoch.
    pub test_times: (i64, i64),
    /// Validation scores.
    pub scores: Scores,
    /// Seconds spent fitting.
    pub fit_seconds: f64,
}

impl FoldReport {
    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "train_rows": self.fold.train.len(),
            "test_rows": self.fold.test.len(),
            "train_times": [self.train_times.0, self.train_times.1],
            "test_times": [self.test_times.0, self.test_times.1],
            "fit_seconds": self.fit_seconds,
            "scores": self.scores.to_json(),
        })
    }
}

/// What training did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Per fold.
    pub folds: Vec<FoldReport>,
    /// Over every validation row of every fold.
    pub overall: Scores,
    /// Rows the final model was fitted on.
    pub rows: usize,
    /// First and last as-of time of the data, seconds since epoch.
    pub window: (i64, i64),
    /// Seconds spent fitting the final model.
    pub fit_seconds: f64,
}

/// Why training failed (bad settings, too little data, a fit that failed); the message says
/// what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainError(pub String);

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TrainError {}

/// Validates on walk-forward folds, then fits on every row of `data` (ordered by time).
pub fn train(data: &Dataset, spec: &TrainSpec) -> Result<(Fitted, Report), TrainError> {
    let d = data.n_features();
    if d == 0 {
        return Err(TrainError("the feature view has no feature".into()));
    }
    let folds = walk_forward(&data.times, &spec.folds)?;
    let momentum = data.last_observed_label(spec.folds.horizon);
    let ppy = spec.periods_per_year;
    let (mut all_pred, mut all_rows) = (Vec::new(), Vec::new());
    let mut reports = Vec::with_capacity(folds.len());
    for (k, fold) in folds.into_iter().enumerate() {
        let started = Instant::now();
        let model = spec
            .algorithm
            .fit(
                data.x_of(fold.train.clone()),
                &data.y[fold.train.clone()],
                d,
            )
            .map_err(|e| TrainError(format!("fold {}: {e}", k + 1)))?;
        let fit_seconds = started.elapsed().as_secs_f64();
        let pred = model.predict(data.x_of(fold.test.clone()), d);
        let t = fold.test.clone();
        let scores = Scores::score(
            &pred,
            &momentum[t.clone()],
            &data.y[t.clone()],
            &data.times[t.clone()],
            ppy,
        );
        all_pred.extend_from_slice(&pred);
        all_rows.extend(t.clone());
        reports.push(FoldReport {
            train_times: (data.times[0], data.times[fold.train.end - 1]),
            test_times: (data.times[t.start], data.times[t.end - 1]),
            fold,
            scores,
            fit_seconds,
        });
    }
    // validation blocks are disjoint and in time order
    let pick = |v: &[f32]| all_rows.iter().map(|&r| v[r]).collect::<Vec<f32>>();
    let times: Vec<i64> = all_rows.iter().map(|&r| data.times[r]).collect();
    let overall = Scores::score(&all_pred, &pick(&momentum), &pick(&data.y), &times, ppy);
    let started = Instant::now();
    let model = spec
        .algorithm
        .fit(&data.x, &data.y, d)
        .map_err(|e| TrainError(format!("final model: {e}")))?;
    let report = Report {
        folds: reports,
        overall,
        rows: data.len(),
        window: (data.times[0], data.times[data.len() - 1]),
        fit_seconds: started.elapsed().as_secs_f64(),
    };
    Ok((model, report))
}

/// The training feature baseline, for drift: per feature, deciles of the training values as
/// bin edges and the rows in each bin (`x <= edge[0]`, …, `x > edge[8]`). Key: the feature.
pub fn feature_baseline(data: &Dataset) -> BTreeMap<String, serde_json::Value> {
    let d = data.n_features();
    let n = data.len();
    let mut out = BTreeMap::new();
    if n == 0 {
        return out;
    }
    for (f, name) in data.feature_names.iter().enumerate() {
        let mut v: Vec<f32> = (0..n).map(|r| data.x[r * d + f]).collect();
        v.sort_by(f32::total_cmp);
        let mut edges: Vec<f32> = (1..10).map(|k| v[(k * n / 10).min(n - 1)]).collect();
        edges.dedup();
        edges.retain(|e| *e < v[n - 1]);
        let mut counts = vec![0u64; edges.len() + 1];
        for x in &v {
            counts[edges.partition_point(|e| e < x)] += 1;
        }
        out.insert(
            name.clone(),
            serde_json::json!({ "edges": edges, "counts": counts }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_counts_every_row_once() {
        let mut data = Dataset::new(vec!["a".into()]);
        for t in 0..100 {
            data.push("S", t, &[f64::from(t as i32 % 7)], 0.0);
        }
        let b = feature_baseline(&data);
        let counts = b["a"]["counts"].as_array().unwrap();
        let total: u64 = counts.iter().map(|c| c.as_u64().unwrap()).sum();
        assert_eq!(total, 100);
        // 7 distinct values: at most 7 bins
        assert!(counts.len() <= 7);
    }
}
