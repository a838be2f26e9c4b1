//! Ridge regression on standardized features, solved in closed form, and its export as an
//! ONNX `LinearRegressor` carrying the contract.
//!
//! Features are standardized (mean 0, population standard deviation 1; a constant feature
//! is left unscaled), the normal equations `(ZᵀZ + λI) β = Zᵀ(y - ȳ)` are accumulated in one
//! pass in f64 and solved by Cholesky, and the coefficients are mapped back to the raw
//! features, so the exported graph is one `LinearRegressor` on the raw input.

use crate::contract::Contract;

/// A fitted ridge regression on raw (unstandardized) features.
#[derive(Debug, Clone, PartialEq)]
pub struct Ridge {
    /// One weight per feature, for raw feature values.
    pub coefficients: Vec<f64>,
    /// Added to every prediction.
    pub intercept: f64,
}

impl Ridge {
    /// Fits `y` on `x` (row-major, `n_features` per row) with penalty `lambda` >= 0 on the
    /// standardized coefficients.
    pub fn fit(x: &[f32], y: &[f32], n_features: usize, lambda: f64) -> Result<Self, String> {
        let d = n_features;
        if d == 0 || x.len() != y.len() * d {
            return Err(format!(
                "{} feature values for {} labels of {d} features",
                x.len(),
                y.len()
            ));
        }
        if y.len() < 2 {
            return Err(format!("{} rows; ridge needs at least 2", y.len()));
        }
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(format!("lambda {lambda} must be finite and >= 0"));
        }
        if let Some(i) = x.iter().chain(y).position(|v| !v.is_finite()) {
            return Err(format!(
                "value {i} is not finite; drop or fill missing values first"
            ));
        }
        let n = y.len() as f64;
        let mut mean = vec![0.0f64; d];
        let mut y_mean = 0.0f64;
        for (row, &t) in x.chunks_exact(d).zip(y) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, &v)| *m += f64::from(v));
            y_mean += f64::from(t);
        }
        mean.iter_mut().for_each(|m| *m /= n);
        y_mean /= n;
        // centred cross products in one pass over the rows
        let mut xtx = vec![0.0f64; d * d];
        let mut xty = vec![0.0f64; d];
        let mut c = vec![0.0f64; d];
        for (row, &t) in x.chunks_exact(d).zip(y) {
            c.iter_mut()
                .zip(row)
                .zip(&mean)
                .for_each(|((c, &v), m)| *c = f64::from(v) - m);
            let ty = f64::from(t) - y_mean;
            for i in 0..d {
                let ci = c[i];
                xty[i] += ci * ty;
                let line = &mut xtx[i * d..i * d + i + 1];
                line.iter_mut()
                    .zip(&c[..=i])
                    .for_each(|(a, cj)| *a += ci * cj);
            }
        }
        let scale: Vec<f64> = (0..d)
            .map(|i| {
                let sd = (xtx[i * d + i] / n).sqrt();
                if sd > 0.0 { sd } else { 1.0 }
            })
            .collect();
        // standardize: (ZᵀZ)_ij = (XᵀX)_ij / (s_i s_j), plus λ on the diagonal
        let mut a = vec![0.0f64; d * d];
        for i in 0..d {
            for j in 0..=i {
                let v = xtx[i * d + j] / (scale[i] * scale[j]);
                a[i * d + j] = v;
                a[j * d + i] = v;
            }
            a[i * d + i] += lambda;
        }
        let b: Vec<f64> = (0..d).map(|i| xty[i] / scale[i]).collect();
        let beta = cholesky_solve(&mut a, b, d)
            .ok_or_else(|| "the features are collinear; use lambda > 0".to_owned())?;
        let coefficients: Vec<f64> = beta.iter().zip(&scale).map(|(b, s)| b / s).collect();
        let intercept = y_mean
            - coefficients
                .iter()
                .zip(&mean)
                .map(|(w, m)| w * m)
                .sum::<f64>();
        Ok(Self {
            coefficients,
            intercept,
        })
    }

    /// The prediction for one row of raw features.
    pub fn predict(&self, row: &[f32]) -> f64 {
        self.intercept
            + self
                .coefficients
                .iter()
                .zip(row)
                .map(|(w, &v)| w * f64::from(v))
                .sum::<f64>()
    }

    /// ONNX bytes: one `LinearRegressor` (ai.onnx.ml) from the float32 input `features`
    /// `[batch, n]` to `variable` `[batch, 1]`, with `contract` in `metadata_props`.
    pub fn to_onnx(&self, contract: &Contract) -> Result<Vec<u8>, String> {
        let n = self.coefficients.len();
        let (attr, float32s) = (super::export::floats, super::export::float32s);
        let attribute = vec![
            attr(
                "coefficients",
                float32s("coefficients", &self.coefficients)?,
            ),
            attr("intercepts", float32s("intercepts", &[self.intercept])?),
        ];
        super::export::model_bytes("LinearRegressor", attribute, n, contract)
    }
}

/// Solves `a x = b` for symmetric positive definite `a` (`d` x `d`, overwritten by its
/// Cholesky factor); `None` when `a` is not positive definite.
fn cholesky_solve(a: &mut [f64], mut b: Vec<f64>, d: usize) -> Option<Vec<f64>> {
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            s -= a[j * d + k] * a[j * d + k];
        }
        if s <= 1e-12 * (1.0 + a[j * d + j].abs()) {
            return None;
        }
        let l = s.sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / l;
        }
    }
    for i in 0..d {
        let s = (0..i).fold(b[i], |s, k| s - a[i * d + k] * b[k]);
        b[i] = s / a[i * d + i];
    }
    for i in (0..d).rev() {
        let s = (i + 1..d).fold(b[i], |s, k| s - a[k * d + i] * b[k]);
        b[i] = s / a[i * d + i];
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: usize, d: usize) -> (Vec<f32>, Vec<f32>, Vec<f64>) {
        // a deterministic generator; y is an exact linear function plus small noise
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let w: Vec<f64> = (0..d).map(|i| (i as f64 - 1.5) * 0.7).collect();
        let mut x = Vec::with_capacity(rows * d);
        let mut y = Vec::with_capacity(rows);
        for _ in 0..rows {
            let row: Vec<f32> = (0..d)
                .map(|j| (next() * (j + 1) as f64 + j as f64) as f32)
                .collect();
            let t = 0.25
                + row
                    .iter()
                    .zip(&w)
                    .map(|(&v, w)| f64::from(v) * w)
                    .sum::<f64>();
            y.push((t + next() * 1e-3) as f32);
            x.extend(row);
        }
        (x, y, w)
    }

    #[test]
    fn recovers_a_linear_function() {
        let (x, y, w) = data(2000, 4);
        let ridge = Ridge::fit(&x, &y, 4, 0.0).unwrap();
        for (got, want) in ridge.coefficients.iter().zip(&w) {
            assert!((got - want).abs() < 1e-2, "{got} vs {want}");
        }
        assert!((ridge.intercept - 0.25).abs() < 5e-2, "{}", ridge.intercept);
        // a penalty shrinks the standardized coefficients
        let shrunk = Ridge::fit(&x, &y, 4, 1e4).unwrap();
        let norm = |r: &Ridge| r.coefficients.iter().map(|c| c * c).sum::<f64>();
        assert!(norm(&shrunk) < norm(&ridge));
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        assert!(
            Ridge::fit(&[1.0; 5], &[1.0; 2], 2, 0.0)
                .unwrap_err()
                .contains("5 feature values")
        );
        assert!(
            Ridge::fit(&[1.0, f32::NAN, 0.0, 1.0], &[1.0; 2], 2, 0.0)
                .unwrap_err()
                .contains("not finite")
        );
        let collinear: Vec<f32> = (0..10).flat_map(|i| [i as f32, 2.0 * i as f32]).collect();
        let y: Vec<f32> = (0..10).map(|i| i as f32).collect();
        assert!(
            Ridge::fit(&collinear, &y, 2, 0.0)
                .unwrap_err()
                .contains("collinear")
        );
        assert!(Ridge::fit(&collinear, &y, 2, 1.0).is_ok());
    }

    #[test]
    fn weights_that_float32_cannot_hold_are_refused_at_export() {
        // A feature that varies only in the subnormal range of float32 (1e-42) and a label
        // of ordinary size: the fitted weight (about 1e42) is finite in f64 and infinite as
        // the float32 an ONNX LinearRegressor stores.
        let x: Vec<f32> = (0..20).map(|i| i as f32 * 1e-42).collect();
        let y: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let ridge = Ridge::fit(&x, &y, 1, 0.0).unwrap();
        assert!(ridge.coefficients[0].is_finite() && ridge.coefficients[0].abs() > 1e38);
        let contract = crate::contract::Contract {
            feature_view: "v".into(),
            feature_view_version: 1,
            feature_names: vec!["tiny".into()],
            target: "t".into(),
            horizon_bars: 1,
        };
        let error = ridge.to_onnx(&contract).unwrap_err();
        assert!(
            error.contains("coefficients[0]") && error.contains("float32"),
            "{error}"
        );
    }
}
