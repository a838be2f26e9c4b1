//! The standard elementwise `Add`, `Sub`, `Mul` and `Div` around ONNX-ML nodes (an offset
//! or scale after a tree ensemble, a sum of two models' scores): float32, the second operand
//! a computed value of the same shape or a constant broadcast along the last axis (one value,
//! or one per column).

/// The operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Add,
    Sub,
    Mul,
    Div,
}

impl Kind {
    pub(crate) fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "Add" => Self::Add,
            "Sub" => Self::Sub,
            "Mul" => Self::Mul,
            "Div" => Self::Div,
            _ => return None,
        })
    }

    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Self::Add => a + b,
            Self::Sub => a - b,
            Self::Mul => a * b,
            Self::Div => a / b,
        }
    }

    /// `a op b`, `b` a same-shaped value or a constant repeating along the rows.
    pub(crate) fn run(self, a: &[f32], b: &[f32]) -> Vec<f32> {
        if b.len() == a.len() {
            a.iter().zip(b).map(|(&x, &y)| self.apply(x, y)).collect()
        } else {
            let n = b.len().max(1);
            a.iter()
                .enumerate()
                .map(|(i, &x)| self.apply(x, b.get(i % n).copied().unwrap_or(0.0)))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_broadcast_along_the_rows() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(Kind::Add.run(&a, &[10.0]), vec![11.0, 12.0, 13.0, 14.0]);
        assert_eq!(Kind::Sub.run(&a, &[1.0, 2.0]), vec![0.0, 0.0, 2.0, 2.0]);
        assert_eq!(Kind::Mul.run(&a, &a), vec![1.0, 4.0, 9.0, 16.0]);
        assert_eq!(Kind::Div.run(&a, &[2.0]), vec![0.5, 1.0, 1.5, 2.0]);
    }
}
