//! Validation metrics of return predictions.

/// How well predictions of forward returns did on a set of rows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    /// Rows scored.
    pub rows: usize,
    /// Mean absolute error, in log-return units.
    pub mae: f64,
    /// Root mean squared error, in log-return units.
    pub rmse: f64,
    /// Share of rows with a non-zero return whose sign was predicted; a zero prediction
    /// counts one half (no position is a coin toss).
    pub directional_accuracy: f64,
    /// Information coefficient: Spearman rank correlation of prediction and return; NaN when
    /// either is constant.
    pub ic: f64,
    /// Annualized Sharpe ratio of holding `sign(prediction)` for the horizon, averaged over
    /// the symbols of each time; NaN when its returns do not vary.
    pub sharpe: f64,
}

impl Metrics {
    /// Scores `pred` against `actual`; `times` (ordered) groups rows into periods for the
    /// Sharpe ratio, annualized with `periods_per_year`.
    pub fn score(pred: &[f32], actual: &[f32], times: &[i64], periods_per_year: f64) -> Self {
        let n = pred.len().min(actual.len()).min(times.len());
        if n == 0 {
            return Self::default();
        }
        let (mut abs, mut sq, mut hits, mut moved) = (0.0, 0.0, 0.0, 0usize);
        for (&p, &a) in pred.iter().zip(actual).take(n) {
            let e = f64::from(p) - f64::from(a);
            abs += e.abs();
            sq += e * e;
            if a != 0.0 {
                moved += 1;
                hits += if p == 0.0 {
                    0.5
                } else if (p > 0.0) == (a > 0.0) {
                    1.0
                } else {
                    0.0
                };
            }
        }
        // one strategy return per period: the mean over that period's symbols
        let mut period = Vec::new();
        let mut i = 0;
        while i < n {
            let mut j = i;
            let mut sum = 0.0;
            while j < n && times[j] == times[i] {
                sum += f64::from(sign(pred[j])) * f64::from(actual[j]);
                j += 1;
            }
            period.push(sum / (j - i) as f64);
            i = j;
        }
        let (mean, sd) = mean_sd(&period);
        Self {
            rows: n,
            mae: abs / n as f64,
            rmse: (sq / n as f64).sqrt(),
            directional_accuracy: if moved == 0 {
                f64::NAN
            } else {
                hits / moved as f64
            },
            ic: spearman(&pred[..n], &actual[..n]),
            sharpe: if sd > 0.0 {
                mean / sd * periods_per_year.sqrt()
            } else {
                f64::NAN
            },
        }
    }

    /// The metrics as a JSON object (NaN as null).
    pub fn to_json(&self) -> serde_json::Value {
        let f = |v: f64| {
            serde_json::Number::from_f64(v)
                .map_or(serde_json::Value::Null, serde_json::Value::Number)
        };
        serde_json::json!({
            "rows": self.rows,
            "mae": f(self.mae),
            "rmse": f(self.rmse),
            "directional_accuracy": f(self.directional_accuracy),
            "ic": f(self.ic),
            "sharpe": f(self.sharpe),
        })
    }
}

fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.len() < 2 {
        return (v.first().copied().unwrap_or(0.0), 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Ranks from 1, ties sharing their average rank.
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        order[i..=j].iter().for_each(|&k| out[k] = rank);
        i = j + 1;
    }
    out
}

/// Spearman rank correlation; NaN when either side is constant.
pub fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let (ma, _) = mean_sd(&ra);
    let (mb, _) = mean_sd(&rb);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        f64::NAN
    } else {
        sab / (saa * sbb).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_known_predictions() {
        let actual = [0.01f32, -0.02, 0.03, -0.04];
        let times = [1, 1, 2, 2];
        let perfect = Metrics::score(&actual, &actual, &times, 252.0);
        assert_eq!(perfect.mae, 0.0);
        assert_eq!(perfect.directional_accuracy, 1.0);
        assert!((perfect.ic - 1.0).abs() < 1e-12);
        let zero = Metrics::score(&[0.0; 4], &actual, &times, 252.0);
        assert_eq!(zero.directional_accuracy, 0.5);
        assert!(zero.ic.is_nan() && zero.sharpe.is_nan());
        assert!((zero.rmse - (0.0030f64 / 4.0).sqrt()).abs() < 1e-6);
        let wrong = Metrics::score(&[-0.01, 0.02, -0.03, 0.04], &actual, &times, 1.0);
        assert_eq!(wrong.directional_accuracy, 0.0);
        assert!((wrong.ic + 1.0).abs() < 1e-12);
        // periods: -(0.01 + 0.02) / 2 and -(0.03 + 0.04) / 2
        let (m, s) = mean_sd(&[-0.015, -0.035]);
        assert!((wrong.sharpe - m / s).abs() < 1e-9);
    }

    #[test]
    fn spearman_uses_average_ranks_for_ties() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 100.0]) - 1.0).abs() < 1e-12);
    }
}
