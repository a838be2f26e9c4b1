//! Gradient-boosted regression trees (squared error, histogram splits, depth-limited), and
//! their export as an ONNX `TreeEnsembleRegressor` that the native evaluator serves.
//!
//! Each feature is cut into at most `max_bins` quantile bins whose upper edges are feature
//! values, so a split "bin <= b" is exactly `x <= edge[b]` (`BRANCH_LEQ`) on the raw
//! float32 input. A node's histogram is built for the smaller child only and the larger one
//! is its parent's minus it. Leaf values are float32 and summed tree by tree in float32,
//! then the base value is added, as the ONNX evaluators do, so the exported model
//! reproduces [`Gbt::predict`]. Row subsampling draws from a seeded generator: the same seed
//! and data give the same trees.

use crate::contract::Contract;

/// Boosting settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GbtParams {
    /// Trees, >= 1.
    pub trees: usize,
    /// Depth of each tree, 1..=16.
    pub max_depth: usize,
    /// Shrinkage of each tree, in (0, 1].
    pub learning_rate: f32,
    /// Fewest training rows in a leaf, >= 1.
    pub min_leaf: usize,
    /// L2 penalty on leaf values, >= 0.
    pub l2: f64,
    /// Share of rows each tree is grown on, in (0, 1].
    pub subsample: f64,
    /// Bins per feature, 2..=256.
    pub max_bins: usize,
    /// Seed of the row subsampling.
    pub seed: u64,
}

impl Default for GbtParams {
    fn default() -> Self {
        Self {
            trees: 100,
            max_depth: 3,
            learning_rate: 0.05,
            min_leaf: 20,
            l2: 1.0,
            subsample: 0.8,
            max_bins: 64,
            seed: 7,
        }
    }
}

/// One node; a leaf when `left == 0` (the root is never a child).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    /// Feature compared at a split.
    pub feature: u32,
    /// Rows with `x[feature] <= threshold` go left.
    pub threshold: f32,
    /// Left (true) child.
    pub left: u32,
    /// Right (false) child.
    pub right: u32,
    /// Leaf value (learning rate applied).
    pub value: f32,
}

/// A fitted ensemble.
#[derive(Debug, Clone, PartialEq)]
pub struct Gbt {
    /// Added to every prediction: the mean label.
    pub base: f32,
    /// Trees, each a node array with the root first.
    pub trees: Vec<Vec<Node>>,
    /// Features per row.
    pub n_features: usize,
}

/// Histogram cell: gradient sum and row count.
type Cell = [f64; 2];

struct Grower<'a> {
    bins: &'a [u8],
    d: usize,
    nb: usize,
    edges: &'a [Vec<f32>],
    grad: &'a [f64],
    p: &'a GbtParams,
}

struct Open {
    node: usize,
    rows: Vec<u32>,
    hist: Vec<Cell>,
    depth: usize,
}

impl Grower<'_> {
    fn hist(&self, rows: &[u32]) -> Vec<Cell> {
        let mut h = vec![[0.0; 2]; self.d * self.nb];
        for &r in rows {
            let r = r as usize;
            let g = self.grad[r];
            let b = &self.bins[r * self.d..(r + 1) * self.d];
            for (f, &bin) in b.iter().enumerate() {
                let c = &mut h[f * self.nb + usize::from(bin)];
                c[0] += g;
                c[1] += 1.0;
            }
        }
        h
    }

    /// Best (gain, feature, bin) of a node whose totals are `total`.
    fn best(&self, hist: &[Cell], total: Cell) -> Option<(f64, usize, usize)> {
        let l2 = self.p.l2;
        let min = self.p.min_leaf as f64;
        let parent = total[0] * total[0] / (total[1] + l2);
        let mut best: Option<(f64, usize, usize)> = None;
        for f in 0..self.d {
            let (mut gl, mut cl) = (0.0, 0.0);
            for b in 0..self.edges[f].len() {
                let c = hist[f * self.nb + b];
                gl += c[0];
                cl += c[1];
                let cr = total[1] - cl;
                if cl < min || cr < min {
                    continue;
                }
                let gr = total[0] - gl;
                let gain = gl * gl / (cl + l2) + gr * gr / (cr + l2) - parent;
                if gain > 1e-12 && best.is_none_or(|(g, _, _)| gain > g) {
                    best = Some((gain, f, b));
                }
            }
        }
        best
    }

    fn grow(&self, rows: Vec<u32>) -> Vec<Node> {
        let leaf = |t: Cell| Node {
            feature: 0,
            threshold: 0.0,
            left: 0,
            right: 0,
            value: (-f64::from(self.p.learning_rate) * t[0] / (t[1] + self.p.l2)) as f32,
        };
        let mut nodes = Vec::new();
        let hist = self.hist(&rows);
        nodes.push(leaf([0.0; 2]));
        let mut open = vec![Open {
            node: 0,
            rows,
            hist,
            depth: 0,
        }];
        while let Some(o) = open.pop() {
            let total = o.hist[..self.nb]
                .iter()
                .fold([0.0; 2], |a, c| [a[0] + c[0], a[1] + c[1]]);
            let split = if o.depth < self.p.max_depth {
                self.best(&o.hist, total)
            } else {
                None
            };
            let Some((_, f, b)) = split else {
                nodes[o.node] = leaf(total);
                continue;
            };
            let (left, right): (Vec<u32>, Vec<u32>) = o
                .rows
                .iter()
                .partition(|&&r| usize::from(self.bins[r as usize * self.d + f]) <= b);
            let (li, ri) = (nodes.len(), nodes.len() + 1);
            nodes.push(leaf([0.0; 2]));
            nodes.push(leaf([0.0; 2]));
            nodes[o.node] = Node {
                feature: f as u32,
                threshold: self.edges[f][b],
                left: li as u32,
                right: ri as u32,
                value: 0.0,
            };
            let small_is_left = left.len() <= right.len();
            let small = self.hist(if small_is_left { &left } else { &right });
            let mut large = o.hist;
            large.iter_mut().zip(&small).for_each(|(l, s)| {
                l[0] -= s[0];
                l[1] -= s[1];
            });
            let (lh, rh) = if small_is_left {
                (small, large)
            } else {
                (large, small)
            };
            let depth = o.depth + 1;
            open.push(Open {
                node: li,
                rows: left,
                hist: lh,
                depth,
            });
            open.push(Open {
                node: ri,
                rows: right,
                hist: rh,
                depth,
            });
        }
        nodes
    }
}

/// Upper bin edges of one feature: at most `max_bins - 1` distinct quantiles of `values`
/// (sorted in place), the largest value excluded.
fn edges_of(values: &mut [f32], max_bins: usize) -> Vec<f32> {
    values.sort_by(f32::total_cmp);
    let n = values.len();
    let mut edges: Vec<f32> = (1..max_bins)
        .map(|k| values[(k * n / max_bins).min(n - 1)])
        .collect();
    edges.dedup();
    let max = values[n - 1];
    edges.retain(|&e| e < max);
    edges
}

/// xorshift64*: a small seeded generator for subsampling.
fn next(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

impl Gbt {
    /// Fits `y` on `x` (row-major, `n_features` per row, all finite).
    pub fn fit(x: &[f32], y: &[f32], n_features: usize, p: &GbtParams) -> Result<Self, String> {
        let d = n_features;
        if d == 0 || x.len() != y.len() * d {
            return Err(format!(
                "{} feature values for {} labels of {d} features",
                x.len(),
                y.len()
            ));
        }
        if y.len() < 2 * p.min_leaf.max(1) {
            return Err(format!(
                "{} rows; boosting with min_leaf {} needs at least {}",
                y.len(),
                p.min_leaf,
                2 * p.min_leaf.max(1)
            ));
        }
        if p.trees == 0 || !(1..=16).contains(&p.max_depth) || !(2..=256).contains(&p.max_bins) {
            return Err(format!(
                "trees {} must be >= 1, max_depth {} in 1..=16, max_bins {} in 2..=256",
                p.trees, p.max_depth, p.max_bins
            ));
        }
        let unit = |v: f64| v > 0.0 && v <= 1.0;
        let valid = unit(f64::from(p.learning_rate))
            && unit(p.subsample)
            && p.l2 >= 0.0
            && p.l2.is_finite();
        if !valid {
            return Err(format!(
                "learning_rate {} and subsample {} must be in (0, 1], l2 {} finite and >= 0",
                p.learning_rate, p.subsample, p.l2
            ));
        }
        if let Some(i) = x.iter().chain(y).position(|v| !v.is_finite()) {
            return Err(format!(
                "value {i} is not finite; drop or fill missing values first"
            ));
        }
        let n = y.len();
        // bin edges from at most 100,000 evenly spaced rows
        let step = n.div_ceil(100_000);
        let edges: Vec<Vec<f32>> = (0..d)
            .map(|f| {
                let mut v: Vec<f32> = (0..n).step_by(step).map(|r| x[r * d + f]).collect();
                edges_of(&mut v, p.max_bins)
            })
            .collect();
        let bins: Vec<u8> = x
            .chunks_exact(d)
            .flat_map(|row| {
                row.iter()
                    .zip(&edges)
                    .map(|(&v, e)| e.partition_point(|&t| t < v) as u8)
            })
            .collect();
        let base = (y.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64) as f32;
        // the summed leaf values of each row, in f32 as the evaluators sum them
        let mut score = vec![0.0f32; n];
        let mut grad = vec![0.0f64; n];
        let mut state = p.seed ^ 0x9e37_79b9_7f4a_7c15;
        let mut trees = Vec::with_capacity(p.trees);
        for _ in 0..p.trees {
            for ((g, &s), &t) in grad.iter_mut().zip(&score).zip(y) {
                *g = f64::from(s + base) - f64::from(t);
            }
            let rows: Vec<u32> = (0..n as u32)
                .filter(|_| p.subsample >= 1.0 || next(&mut state) < p.subsample)
                .collect();
            let grower = Grower {
                bins: &bins,
                d,
                nb: p.max_bins,
                edges: &edges,
                grad: &grad,
                p,
            };
            let tree = grower.grow(rows);
            for (r, s) in score.iter_mut().enumerate() {
                *s += walk(&tree, &x[r * d..(r + 1) * d]);
            }
            trees.push(tree);
        }
        Ok(Self {
            base,
            trees,
            n_features: d,
        })
    }

    /// The prediction for one row of raw features.
    pub fn predict(&self, row: &[f32]) -> f32 {
        self.trees.iter().fold(0.0f32, |s, t| s + walk(t, row)) + self.base
    }

    /// ONNX bytes: one `TreeEnsembleRegressor` (ai.onnx.ml, `BRANCH_LEQ`, `SUM`) from the
    /// float32 input `features` `[batch, n]` to `variable` `[batch, 1]`, with `contract` in
    /// `metadata_props`.
    pub fn to_onnx(&self, contract: &Contract) -> Result<Vec<u8>, String> {
        use super::export::{floats, int, ints, string, strings};
        let n = self.n_features;
        let (mut tree_ids, mut node_ids, mut features, mut values) =
            (vec![], vec![], vec![], vec![]);
        let (mut modes, mut trues, mut falses) = (vec![], vec![], vec![]);
        let (mut t_tree, mut t_node, mut t_weight) = (vec![], vec![], vec![]);
        for (t, tree) in self.trees.iter().enumerate() {
            for (i, node) in tree.iter().enumerate() {
                tree_ids.push(t as i64);
                node_ids.push(i as i64);
                features.push(i64::from(node.feature));
                values.push(node.threshold);
                trues.push(i64::from(node.left));
                falses.push(i64::from(node.right));
                if node.left == 0 {
                    modes.push(b"LEAF".to_vec());
                    t_tree.push(t as i64);
                    t_node.push(i as i64);
                    t_weight.push(node.value);
                } else {
                    modes.push(b"BRANCH_LEQ".to_vec());
                }
            }
        }
        let leaves = t_tree.len();
        let attribute = vec![
            int("n_targets", 1),
            string("aggregate_function", "SUM"),
            string("post_transform", "NONE"),
            floats("base_values", vec![self.base]),
            ints("nodes_treeids", tree_ids),
            ints("nodes_nodeids", node_ids),
            ints("nodes_featureids", features),
            floats("nodes_values", values),
            strings("nodes_modes", modes),
            ints("nodes_truenodeids", trues),
            ints("nodes_falsenodeids", falses),
            ints("target_treeids", t_tree),
            ints("target_nodeids", t_node),
            ints("target_ids", vec![0; leaves]),
            floats("target_weights", t_weight),
        ];
        super::export::model_bytes("TreeEnsembleRegressor", attribute, n, contract)
    }
}

fn walk(tree: &[Node], row: &[f32]) -> f32 {
    let mut i = 0;
    loop {
        let node = &tree[i];
        if node.left == 0 {
            return node.value;
        }
        i = if row[node.feature as usize] <= node.threshold {
            node.left
        } else {
            node.right
        } as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> (Vec<f32>, Vec<f32>) {
        let mut state = 42u64;
        let x: Vec<f32> = (0..n * 3)
            .map(|_| next(&mut state) as f32 * 4.0 - 2.0)
            .collect();
        let y = x
            .chunks_exact(3)
            .map(|r| if r[0] > 0.5 { 1.0 } else { -1.0 } + 0.5 * r[1] * r[1])
            .collect();
        (x, y)
    }

    #[test]
    fn boosting_fits_a_nonlinear_function_deterministically() {
        let (x, y) = data(4000);
        let p = GbtParams {
            trees: 60,
            learning_rate: 0.2,
            ..GbtParams::default()
        };
        let a = Gbt::fit(&x, &y, 3, &p).unwrap();
        let mse = x
            .chunks_exact(3)
            .zip(&y)
            .map(|(r, &t)| (a.predict(r) - t).powi(2))
            .sum::<f32>()
            / y.len() as f32;
        let var = y.iter().map(|t| t * t).sum::<f32>() / y.len() as f32;
        assert!(mse < 0.05 * var, "mse {mse} of variance {var}");
        assert_eq!(a, Gbt::fit(&x, &y, 3, &p).unwrap());
        let other = Gbt::fit(&x, &y, 3, &GbtParams { seed: 8, ..p }).unwrap();
        assert_ne!(a, other);
        assert!(a.trees.iter().all(|t| t.len() <= 15));
    }

    #[test]
    fn bad_settings_are_refused() {
        let (x, y) = data(100);
        let err = Gbt::fit(
            &x,
            &y,
            3,
            &GbtParams {
                max_depth: 0,
                ..GbtParams::default()
            },
        );
        assert!(err.unwrap_err().contains("max_depth 0"));
        let err = Gbt::fit(&x[..30], &y[..10], 3, &GbtParams::default());
        assert!(err.unwrap_err().contains("10 rows"));
    }
}
