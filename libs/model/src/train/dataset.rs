//! A point-in-time training set and its walk-forward folds.
//!
//! Rows are (symbol, as-of time, features, label): the features are what was knowable at the
//! as-of time and the label is the forward log return over the next `horizon` bars, as the
//! feature store's historical API serves them. Folds split the distinct as-of times in
//! order: each fold validates on one block of times and trains on every time before it
//! except the last `embargo` ones, whose labels reach into the validation block.

/// Rows ordered by as-of time, then symbol.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Feature names, in column order.
    pub feature_names: Vec<String>,
    /// Symbol of each row.
    pub symbols: Vec<String>,
    /// As-of time of each row, seconds since epoch, UTC.
    pub times: Vec<i64>,
    /// Features, row-major, `feature_names.len()` per row; all finite.
    pub x: Vec<f32>,
    /// Label of each row: the forward log return over the horizon.
    pub y: Vec<f32>,
}

use super::TrainError;

impl Dataset {
    /// An empty set with these feature names.
    pub fn new(feature_names: Vec<String>) -> Self {
        Self {
            feature_names,
            ..Self::default()
        }
    }

    /// Number of features per row.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Adds a row; `false` (and nothing added) when a value or the label is not finite.
    pub fn push(&mut self, symbol: &str, time: i64, features: &[f64], label: f64) -> bool {
        if features.len() != self.n_features()
            || !label.is_finite()
            || features.iter().any(|v| !v.is_finite())
        {
            return false;
        }
        self.symbols.push(symbol.to_owned());
        self.times.push(time);
        self.x.extend(features.iter().map(|&v| v as f32));
        self.y.push(label as f32);
        true
    }

    /// Orders the rows by time, then symbol (the feature store streams them by symbol).
    pub fn sort_by_time(&mut self) {
        let d = self.n_features();
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| {
            (self.times[a], &self.symbols[a]).cmp(&(self.times[b], &self.symbols[b]))
        });
        self.symbols = order.iter().map(|&i| self.symbols[i].clone()).collect();
        self.times = order.iter().map(|&i| self.times[i]).collect();
        self.y = order.iter().map(|&i| self.y[i]).collect();
        self.x = order
            .iter()
            .flat_map(|&i| self.x[i * d..(i + 1) * d].iter().copied())
            .collect();
    }

    /// Features of `rows`, row-major.
    pub fn x_of(&self, rows: std::ops::Range<usize>) -> &[f32] {
        let d = self.n_features();
        &self.x[rows.start * d..rows.end * d]
    }

    /// The last observed horizon return of each row's symbol: the label of that symbol's row
    /// `horizon` rows earlier, whose bars all closed by this row's as-of time; 0 when there
    /// is none. The momentum baseline.
    pub fn last_observed_label(&self, horizon: usize) -> Vec<f32> {
        let mut by_symbol: std::collections::HashMap<&str, Vec<usize>> =
            std::collections::HashMap::new();
        let mut out = vec![0.0; self.len()];
        for (i, symbol) in self.symbols.iter().enumerate() {
            let rows = by_symbol.entry(symbol).or_default();
            if rows.len() >= horizon {
                out[i] = self.y[rows[rows.len() - horizon]];
            }
            rows.push(i);
        }
        out
    }
}

/// Walk-forward split settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldSpec {
    /// Validation folds, >= 1.
    pub folds: usize,
    /// Horizon of the labels in bars, >= 1.
    pub horizon: usize,
    /// Distinct as-of times left out between training and validation, >= `horizon`.
    pub embargo: usize,
    /// Fewest training rows a fold may have.
    pub min_train_rows: usize,
}

/// One walk-forward fold: row ranges of a time-ordered [`Dataset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    /// Training rows: every row before the embargo.
    pub train: std::ops::Range<usize>,
    /// Validation rows: one block of as-of times.
    pub test: std::ops::Range<usize>,
}

/// Splits time-ordered `times` into `spec.folds` walk-forward folds: the distinct times are
/// cut into `folds + 1` blocks; fold k validates on block k and trains on the blocks before
/// it, less the last `embargo` times before the block.
pub fn walk_forward(times: &[i64], spec: &FoldSpec) -> Result<Vec<Fold>, TrainError> {
    if spec.horizon == 0 {
        return Err(TrainError("horizon must be at least 1 bar".into()));
    }
    if spec.folds == 0 {
        return Err(TrainError("folds must be at least 1".into()));
    }
    if spec.embargo < spec.horizon {
        return Err(TrainError(format!(
            "embargo of {} bars is shorter than the horizon of {} bars: training labels would \
             overlap the validation period",
            spec.embargo, spec.horizon
        )));
    }
    if let Some(i) = times.windows(2).position(|w| w[0] > w[1]) {
        return Err(TrainError(format!(
            "rows are not ordered by time at row {}",
            i + 1
        )));
    }
    // first row of each distinct time
    let starts: Vec<usize> = (0..times.len())
        .filter(|&i| i == 0 || times[i] != times[i - 1])
        .collect();
    let m = starts.len();
    let blocks = spec.folds + 1;
    let row_of = |t: usize| starts.get(t).copied().unwrap_or(times.len());
    let mut folds = Vec::with_capacity(spec.folds);
    for k in 1..=spec.folds {
        let (first, end) = (k * m / blocks, (k + 1) * m / blocks);
        let train_end = row_of(first.saturating_sub(spec.embargo));
        let test = row_of(first)..row_of(end);
        if first < spec.embargo || train_end < spec.min_train_rows.max(1) || test.is_empty() {
            return Err(TrainError(format!(
                "{} rows over {m} distinct times are too few for {} folds with an embargo of {} \
                 bars: fold {k} would train on {train_end} rows (at least {} needed) and validate \
                 on {}; use fewer folds or a longer history",
                times.len(),
                spec.folds,
                spec.embargo,
                spec.min_train_rows.max(1),
                test.len()
            )));
        }
        folds.push(Fold {
            train: 0..train_end,
            test,
        });
    }
    Ok(folds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(folds: usize, horizon: usize, embargo: usize) -> FoldSpec {
        FoldSpec {
            folds,
            horizon,
            embargo,
            min_train_rows: 1,
        }
    }

    #[test]
    fn folds_leave_the_embargo_between_training_and_validation() {
        // three symbols per time, 60 times
        let times: Vec<i64> = (0..60).flat_map(|t| [t, t, t]).collect();
        let folds = walk_forward(&times, &spec(4, 3, 5)).unwrap();
        assert_eq!(folds.len(), 4);
        for f in &folds {
            let last_train = times[f.train.end - 1];
            let first_test = times[f.test.start];
            assert!(first_test - last_train > 5, "{f:?}");
            // every row of a time is on one side
            assert_ne!(times[f.test.start - 1], first_test);
        }
        assert_eq!(folds.last().unwrap().test.end, times.len());
    }

    #[test]
    fn bad_splits_are_refused_with_the_reason() {
        let times: Vec<i64> = (0..20).collect();
        let err = walk_forward(&times, &spec(2, 5, 2)).unwrap_err().0;
        assert!(
            err.contains("embargo of 2 bars is shorter than the horizon"),
            "{err}"
        );
        let err = walk_forward(&times, &spec(10, 2, 2)).unwrap_err().0;
        assert!(err.contains("too few for 10 folds"), "{err}");
        assert!(
            walk_forward(&times, &spec(1, 0, 0))
                .unwrap_err()
                .0
                .contains("horizon")
        );
        assert!(
            walk_forward(&[2, 1], &spec(1, 1, 1))
                .unwrap_err()
                .0
                .contains("not ordered")
        );
    }

    #[test]
    fn the_momentum_baseline_only_sees_closed_labels() {
        let mut d = Dataset::new(vec!["f".into()]);
        for t in 0..6 {
            for s in ["A", "B"] {
                let label = if s == "A" { t as f64 } else { -(t as f64) };
                assert!(d.push(s, t, &[0.0], label));
            }
        }
        assert!(!d.push("A", 9, &[f64::NAN], 1.0));
        let last = d.last_observed_label(2);
        // row of A at t=3 sees A's label at t=1 (bars t+1..t+2 = 2..3 closed by t=3)
        assert_eq!(last[6], 1.0);
        assert_eq!(last[7], -1.0);
        assert_eq!(&last[..4], &[0.0; 4]);
    }
}
