//! The compact form of a tree ensemble and its evaluation.
//!
//! Each tree's nodes are stored contiguously in depth-first order (true child first) in one
//! flat array of 16-byte nodes (threshold, feature with mode and missing-value bits, two
//! children). A child with the top bit set is a leaf index. Leaves of single-target
//! ensembles hold one float each; otherwise a leaf holds a range of (target, weight) pairs.
//! Evaluation walks only the path from each root to its leaf, one tree at a time over the
//! whole batch. Thresholds given as doubles are rounded towards the side that keeps every
//! float32 comparison's outcome, so nodes stay 16 bytes.

use super::read::{Aggregate, Child, Mode, Raw};
use crate::error::ModelError;
use crate::native::attrs::Attrs;

pub(super) const LEAF: u32 = 1 << 31;
const FEATURE_BITS: u32 = 28;
pub(super) const FEATURE_MASK: u32 = (1 << FEATURE_BITS) - 1;
const MISSING_TRUE: u32 = 1 << 31;
/// Kernel parameter: each node carries its own mode.
const MIXED: u8 = 255;

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Threshold, or the index of the member set (as bits) for `Member`.
    value: f32,
    /// Feature index (low 28 bits), mode (3 bits), missing-goes-true (top bit).
    bits: u32,
    /// True child, false child; `LEAF | i` is leaf `i`.
    children: [u32; 2],
}

/// The compact evaluable form.
#[derive(Debug, Clone)]
pub(crate) struct Ensemble {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    /// Single target: the value of each leaf.
    leaf_value: Vec<f32>,
    /// Several targets: leaf `i`'s weights are `weights[leaf_start[i]..leaf_start[i + 1]]`.
    leaf_start: Vec<u32>,
    weights: Vec<(u32, f32)>,
    members: Vec<Vec<f32>>,
    pub(super) n_targets: usize,
    /// One more than the highest feature index used.
    pub(crate) features: usize,
    uniform: Option<Mode>,
    has_missing: bool,
}

impl Ensemble {
    pub(super) fn build(a: &Attrs<'_>, raw: Raw, n_targets: usize) -> Result<Self, ModelError> {
        let mut e = Ensemble {
            nodes: Vec::with_capacity(raw.nodes.len()),
            roots: Vec::with_capacity(raw.roots.len()),
            leaf_value: Vec::new(),
            leaf_start: Vec::new(),
            weights: Vec::new(),
            members: Vec::new(),
            n_targets,
            features: 0,
            uniform: raw.nodes.first().map(|n| n.mode),
            has_missing: false,
        };
        // depth-first layout of each tree; state 1 = on the path (a cycle if met again)
        let mut placed: Vec<Option<u32>> = vec![None; raw.nodes.len()];
        let mut state = vec![0u8; raw.nodes.len()];
        for (t, &root) in raw.roots.iter().enumerate() {
            let r = match root {
                Child::Leaf(l) => LEAF | l as u32,
                Child::Node(n) => e.place(a, &raw, n, t, &mut placed, &mut state)?,
            };
            e.roots.push(r);
        }
        if raw.nodes.len() >= LEAF as usize || raw.leaves.len() >= LEAF as usize {
            return Err(a.error("more than 2^31 nodes or leaves"));
        }
        for leaf in &raw.leaves {
            for &(target, _) in leaf {
                if target >= n_targets {
                    return Err(a.error(format!(
                        "a leaf weight is for target/class {target}, but there are {n_targets}"
                    )));
                }
            }
        }
        if n_targets == 1 {
            e.leaf_value = raw
                .leaves
                .iter()
                .map(|l| l.iter().map(|&(_, w)| w).sum::<f64>() as f32)
                .collect();
        } else {
            e.leaf_start.push(0);
            for leaf in &raw.leaves {
                e.weights
                    .extend(leaf.iter().map(|&(t, w)| (t as u32, w as f32)));
                e.leaf_start.push(e.weights.len() as u32);
            }
        }
        e.has_missing = raw.nodes.iter().any(|n| n.missing_true);
        if raw.nodes.iter().any(|n| Some(n.mode) != e.uniform) {
            e.uniform = None;
        }
        Ok(e)
    }

    fn place(
        &mut self,
        a: &Attrs<'_>,
        raw: &Raw,
        start: usize,
        tree: usize,
        placed: &mut [Option<u32>],
        state: &mut [u8],
    ) -> Result<u32, ModelError> {
        if let Some(i) = placed[start] {
            return Ok(i);
        }
        // iterative depth-first walk: (raw index, which child is next)
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        // place nodes in preorder; children are patched when known
        let index_of = |e: &mut Self, n: usize| -> u32 {
            let r = &raw.nodes[n];
            let (value, mode) = threshold(r.mode, r.value);
            let value = if r.mode == Mode::Member {
                e.members.push(
                    r.members
                        .iter()
                        .filter(|&&m| f64::from(m as f32) == m)
                        .map(|&m| m as f32)
                        .collect(),
                );
                f32::from_bits((e.members.len() - 1) as u32)
            } else {
                value
            };
            e.features = e.features.max(r.feature + 1);
            e.nodes.push(Node {
                value,
                bits: r.feature as u32
                    | (mode as u32) << FEATURE_BITS
                    | if r.missing_true { MISSING_TRUE } else { 0 },
                children: [0, 0],
            });
            (e.nodes.len() - 1) as u32
        };
        let root = index_of(self, start);
        placed[start] = Some(root);
        while let Some(top) = stack.last_mut() {
            let (n, which) = *top;
            if which == 2 {
                state[n] = 2;
                stack.pop();
                continue;
            }
            top.1 += 1;
            let me = placed[n].unwrap_or_default() as usize;
            match raw.nodes[n].children[which] {
                Child::Leaf(l) => self.nodes[me].children[which] = LEAF | l as u32,
                Child::Node(c) => {
                    if state[c] == 1 {
                        return Err(
                            a.error(format!("tree {tree} has a cycle through node index {c}"))
                        );
                    }
                    let ci = match placed[c] {
                        Some(ci) => ci,
                        None => {
                            let ci = index_of(self, c);
                            placed[c] = Some(ci);
                            state[c] = 1;
                            stack.push((c, 0));
                            ci
                        }
                    };
                    self.nodes[me].children[which] = ci;
                }
            }
        }
        Ok(root)
    }

    /// Number of trees.
    pub(super) fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Adds each tree's leaf to `scores` (`rows` x `n_targets`), tree by tree.
    pub(super) fn accumulate(
        &self,
        x: &[f32],
        nf: usize,
        agg: Aggregate,
        scores: &mut [f32],
        has: &mut [bool],
    ) {
        match (self.uniform, self.has_missing) {
            (Some(Mode::Leq), false) => self.acc::<0, false>(x, nf, agg, scores, has),
            (Some(Mode::Leq), true) => self.acc::<0, true>(x, nf, agg, scores, has),
            (Some(Mode::Lt), false) => self.acc::<1, false>(x, nf, agg, scores, has),
            (Some(Mode::Lt), true) => self.acc::<1, true>(x, nf, agg, scores, has),
            _ => self.acc::<MIXED, true>(x, nf, agg, scores, has),
        }
    }

    #[inline(always)]
    fn leaf<const M: u8, const MISS: bool>(&self, mut i: u32, row: &[f32]) -> usize {
        while i & LEAF == 0 {
            i = self.step::<M, MISS>(i, row);
        }
        (i & !LEAF) as usize
    }

    /// Walks `N` paths in lockstep (several trees for one row, or one tree for several
    /// rows): the paths' loads are independent, so the CPU overlaps their latencies.
    #[inline(always)]
    fn leaves<const N: usize, const M: u8, const MISS: bool>(
        &self,
        mut idx: [u32; N],
        rows: [&[f32]; N],
    ) -> [usize; N] {
        loop {
            let mut active = false;
            for k in 0..N {
                if idx[k] & LEAF == 0 {
                    idx[k] = self.step::<M, MISS>(idx[k], rows[k]);
                    active = true;
                }
            }
            if !active {
                return idx.map(|i| (i & !LEAF) as usize);
            }
        }
    }

    /// One level down from branch node `i`.
    #[inline(always)]
    fn step<const M: u8, const MISS: bool>(&self, i: u32, row: &[f32]) -> u32 {
        {
            let n = &self.nodes[i as usize];
            let x = row[(n.bits & FEATURE_MASK) as usize];
            let mode = if M == MIXED {
                ((n.bits >> FEATURE_BITS) & 7) as u8
            } else {
                M
            };
            let mut go = match mode {
                0 => x <= n.value,
                1 => x < n.value,
                2 => x >= n.value,
                3 => x > n.value,
                4 => x == n.value,
                5 => x != n.value,
                _ => self.members[n.value.to_bits() as usize].contains(&x),
            };
            if MISS {
                go |= n.bits & MISSING_TRUE != 0 && x.is_nan();
            }
            n.children[usize::from(!go)]
        }
    }

    fn acc<const M: u8, const MISS: bool>(
        &self,
        x: &[f32],
        nf: usize,
        agg: Aggregate,
        scores: &mut [f32],
        has: &mut [bool],
    ) {
        let t = self.n_targets;
        if t == 1 && matches!(agg, Aggregate::Sum | Aggregate::Average) {
            // the sums still add trees in order, as onnxruntime does
            const LANES: usize = 4;
            let rows: Vec<&[f32]> = x.chunks_exact(nf).collect();
            if let [row] = rows[..] {
                let mut groups = self.roots.chunks_exact(LANES);
                for g in &mut groups {
                    let idx: [u32; LANES] = std::array::from_fn(|k| g[k]);
                    for leaf in self.leaves::<LANES, M, MISS>(idx, [row; LANES]) {
                        scores[0] += self.leaf_value[leaf];
                    }
                }
                for &root in groups.remainder() {
                    scores[0] += self.leaf_value[self.leaf::<M, MISS>(root, row)];
                }
            } else {
                for &root in &self.roots {
                    let mut groups = rows.chunks_exact(LANES);
                    let mut r = 0;
                    for g in &mut groups {
                        let group: [&[f32]; LANES] = std::array::from_fn(|k| g[k]);
                        let leaves = self.leaves::<LANES, M, MISS>([root; LANES], group);
                        for (k, leaf) in leaves.into_iter().enumerate() {
                            scores[r + k] += self.leaf_value[leaf];
                        }
                        r += LANES;
                    }
                    for (k, row) in groups.remainder().iter().enumerate() {
                        scores[r + k] += self.leaf_value[self.leaf::<M, MISS>(root, row)];
                    }
                }
            }
            has.iter_mut().for_each(|h| *h = true);
            return;
        }
        for &root in &self.roots {
            for (r, row) in x.chunks_exact(nf).enumerate() {
                let leaf = self.leaf::<M, MISS>(root, row);
                let (s, h) = (
                    &mut scores[r * t..(r + 1) * t],
                    &mut has[r * t..(r + 1) * t],
                );
                if t == 1 {
                    combine(agg, &mut s[0], &mut h[0], self.leaf_value[leaf]);
                    continue;
                }
                let range = self.leaf_start[leaf] as usize..self.leaf_start[leaf + 1] as usize;
                for &(target, w) in &self.weights[range] {
                    let k = target as usize;
                    combine(agg, &mut s[k], &mut h[k], w);
                }
            }
        }
    }
}

#[inline(always)]
fn combine(agg: Aggregate, score: &mut f32, has: &mut bool, w: f32) {
    match agg {
        Aggregate::Sum | Aggregate::Average => *score += w,
        Aggregate::Min => {
            if !*has || w < *score {
                *score = w;
            }
        }
        Aggregate::Max => {
            if !*has || w > *score {
                *score = w;
            }
        }
    }
    *has = true;
}

/// A float32 threshold that gives every float32 `x` the same outcome as comparing `x as
/// f64` with `t`, and the mode to use it with.
fn threshold(mode: Mode, t: f64) -> (f32, Mode) {
    let near = t as f32;
    if f64::from(near) == t || t.is_nan() {
        return (near, mode);
    }
    let down = if f64::from(near) > t {
        near.next_down()
    } else {
        near
    };
    let up = if f64::from(near) < t {
        near.next_up()
    } else {
        near
    };
    match mode {
        Mode::Leq | Mode::Gt => (down, mode),
        Mode::Lt | Mode::Gte => (up, mode),
        // no float32 equals t: Eq never holds, Neq always does (NaN compares unequal)
        Mode::Eq | Mode::Neq => (f32::NAN, mode),
        Mode::Member => (0.0, mode),
    }
}
