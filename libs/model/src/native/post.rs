//! Post transforms of ONNX-ML scores (`post_transform`), in float32 as onnxruntime computes
//! them.

/// `post_transform` of the ONNX-ML operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Post {
    /// Scores as they are.
    None,
    /// 1 / (1 + e^-x) per score.
    Logistic,
    /// Softmax over a row.
    Softmax,
    /// Softmax over a row's non-zero scores; zeros stay zero.
    SoftmaxZero,
    /// The inverse of the standard normal CDF per score.
    Probit,
}

impl Post {
    /// From the string attribute of the legacy operators.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NONE" => Self::None,
            "LOGISTIC" => Self::Logistic,
            "SOFTMAX" => Self::Softmax,
            "SOFTMAX_ZERO" => Self::SoftmaxZero,
            "PROBIT" => Self::Probit,
            _ => return None,
        })
    }

    /// From the integer attribute of `TreeEnsemble` (ai.onnx.ml opset 5). onnxruntime reads
    /// 1 as LOGISTIC and 2 as SOFTMAX (the operator's text lists them the other way round);
    /// models are tested against onnxruntime, so its reading is followed.
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::None,
            1 => Self::Logistic,
            2 => Self::Softmax,
            3 => Self::SoftmaxZero,
            4 => Self::Probit,
            _ => return None,
        })
    }

    /// Applies the transform to one row of two or more scores.
    pub(crate) fn apply_row(self, row: &mut [f32]) {
        match self {
            Self::None => {}
            Self::Logistic => row.iter_mut().for_each(|v| *v = logistic(*v)),
            Self::Probit => row.iter_mut().for_each(|v| *v = probit(*v)),
            Self::Softmax => softmax(row),
            Self::SoftmaxZero => softmax_zero(row),
        }
    }
}

/// The logistic function, without overflow for large |x|.
pub(crate) fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

/// sqrt(2) * erfinv(2p - 1), with Winitzki's closed-form approximation of erfinv (a = 0.147),
/// the one onnxruntime uses, so that outputs agree with it.
pub(crate) fn probit(p: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * p - 1.0)
}

fn erf_inv(x: f32) -> f32 {
    const A: f32 = 0.147;
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let ln = ((1.0 - x) * (1.0 + x)).ln();
    let term = 2.0 / (std::f32::consts::PI * A) + 0.5 * ln;
    let inner = -term + (term * term - ln / A).sqrt();
    sign * inner.sqrt()
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(-f32::MAX, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

fn softmax_zero(row: &mut [f32]) {
    let max = row.iter().copied().fold(-f32::MAX, f32::max);
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        if v.abs() > 1e-7 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_is_symmetric_and_bounded() {
        assert_eq!(logistic(0.0), 0.5);
        assert!((logistic(2.0) + logistic(-2.0) - 1.0).abs() < 1e-7);
        assert_eq!(logistic(-1000.0), 0.0);
        assert_eq!(logistic(1000.0), 1.0);
    }

    #[test]
    fn probit_inverts_the_normal_cdf() {
        // Phi(1.0) = 0.841344746; Winitzki's approximation is good to ~1e-3
        assert!((probit(0.841_344_7) - 1.0).abs() < 2e-3);
        assert_eq!(probit(0.5), 0.0);
        assert!(probit(0.1) < 0.0);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_zero_keeps_zeros() {
        let mut row = [1.0, 2.0, 3.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[2] > row[1] && row[1] > row[0]);
        let mut row = [0.0, 2.0, 3.0];
        softmax_zero(&mut row);
        assert_eq!(row[0], 0.0);
        assert!((row[1] + row[2] - 1.0).abs() < 1e-6);
    }
}
