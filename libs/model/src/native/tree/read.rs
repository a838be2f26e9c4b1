//! Reading tree ensembles from either attribute layout: the legacy `nodes_*` tuples keyed by
//! (tree id, node id) of `TreeEnsembleRegressor`/`Classifier`, and the positional nodes of
//! `TreeEnsemble` (ai.onnx.ml opset 5).

use std::collections::HashMap;

use super::layout::FEATURE_MASK;
use crate::error::ModelError;
use crate::native::attrs::Attrs;

/// A branch's comparison. `x` is the feature, `v` the node's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mode {
    /// x <= v
    Leq = 0,
    /// x < v
    Lt = 1,
    /// x >= v
    Gte = 2,
    /// x > v
    Gt = 3,
    /// x == v
    Eq = 4,
    /// x != v
    Neq = 5,
    /// x is one of the node's set
    Member = 6,
}

impl Mode {
    pub(super) fn parse(s: &str) -> Option<Option<Self>> {
        Some(Some(match s {
            "BRANCH_LEQ" => Self::Leq,
            "BRANCH_LT" => Self::Lt,
            "BRANCH_GTE" => Self::Gte,
            "BRANCH_GT" => Self::Gt,
            "BRANCH_EQ" => Self::Eq,
            "BRANCH_NEQ" => Self::Neq,
            "BRANCH_MEMBER" => Self::Member,
            "LEAF" => return Some(None),
            _ => return None,
        }))
    }

    pub(super) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::Leq,
            1 => Self::Lt,
            2 => Self::Gte,
            3 => Self::Gt,
            4 => Self::Eq,
            5 => Self::Neq,
            6 => Self::Member,
            _ => return None,
        })
    }
}

/// How the trees' leaf values combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

impl Aggregate {
    pub(super) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SUM" => Self::Sum,
            "AVERAGE" => Self::Average,
            "MIN" => Self::Min,
            "MAX" => Self::Max,
            _ => return None,
        })
    }

    pub(super) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::Average,
            1 => Self::Sum,
            2 => Self::Min,
            3 => Self::Max,
            _ => return None,
        })
    }
}

/// A child as read from the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Child {
    Node(usize),
    Leaf(usize),
}

#[derive(Debug, Clone)]
pub(super) struct RawNode {
    pub(super) feature: usize,
    pub(super) mode: Mode,
    pub(super) value: f64,
    pub(super) members: Vec<f64>,
    pub(super) missing_true: bool,
    pub(super) children: [Child; 2],
}

/// Nodes, leaves and roots as read from either attribute layout.
#[derive(Debug, Default)]
pub(super) struct Raw {
    pub(super) nodes: Vec<RawNode>,
    /// Per leaf: (target, weight).
    pub(super) leaves: Vec<Vec<(usize, f64)>>,
    pub(super) roots: Vec<Child>,
}

/// Nodes of the legacy layout: `nodes_*` tuples keyed by (tree id, node id), leaves'
/// weights in `<prefix>_*` tuples.
pub(super) fn legacy_raw(a: &Attrs<'_>, prefix: &str) -> Result<Raw, ModelError> {
    let tree_ids = a.ints("nodes_treeids");
    let node_ids = a.ints("nodes_nodeids");
    let features = a.ints("nodes_featureids");
    let modes = a.strings("nodes_modes")?;
    let values = a.floats_or_tensor("nodes_values")?.unwrap_or_default();
    let trues = a.ints("nodes_truenodeids");
    let falses = a.ints("nodes_falsenodeids");
    let missing = a.ints("nodes_missing_value_tracks_true");
    let n = tree_ids.len();
    if n == 0 {
        return Err(a.error("attribute nodes_treeids is empty: the ensemble has no node"));
    }
    a.same_len(
        n,
        &[
            ("nodes_treeids", n),
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", features.len()),
            ("nodes_modes", modes.len()),
            ("nodes_values", values.len()),
            ("nodes_truenodeids", trues.len()),
            ("nodes_falsenodeids", falses.len()),
        ],
    )?;
    check_missing(a, n, missing)?;
    let mut index: HashMap<(i64, i64), usize> = HashMap::with_capacity(n);
    let mut tree_order: Vec<i64> = Vec::new();
    for i in 0..n {
        if index.insert((tree_ids[i], node_ids[i]), i).is_some() {
            return Err(a.error(format!(
                "tree {} has node id {} twice (nodes_nodeids[{i}])",
                tree_ids[i], node_ids[i]
            )));
        }
        if tree_order.last() != Some(&tree_ids[i]) && !tree_order.contains(&tree_ids[i]) {
            tree_order.push(tree_ids[i]);
        }
    }
    // leaves first, so that children can point at them
    let mut leaf_of = vec![None; n];
    let mut raw = Raw::default();
    let mut parsed_modes = Vec::with_capacity(n);
    for (i, m) in modes.iter().enumerate() {
        let mode = Mode::parse(m).ok_or_else(|| {
            a.error(format!(
                "attribute nodes_modes[{i}] {m:?} is not a branch mode or LEAF"
            ))
        })?;
        if mode.is_none() {
            leaf_of[i] = Some(raw.leaves.len());
            raw.leaves.push(Vec::new());
        }
        parsed_modes.push(mode);
    }
    let w_trees = a.ints(&format!("{prefix}_treeids"));
    let w_nodes = a.ints(&format!("{prefix}_nodeids"));
    let w_ids = a.ints(&format!("{prefix}_ids"));
    let w_values = a
        .floats_or_tensor(&format!("{prefix}_weights"))?
        .unwrap_or_default();
    let wn = w_trees.len();
    a.same_len(
        wn,
        &[
            (&format!("{prefix}_treeids"), wn),
            (&format!("{prefix}_nodeids"), w_nodes.len()),
            (&format!("{prefix}_ids"), w_ids.len()),
            (&format!("{prefix}_weights"), w_values.len()),
        ],
    )?;
    for k in 0..wn {
        let node = index.get(&(w_trees[k], w_nodes[k])).ok_or_else(|| {
            a.error(format!(
                "{prefix}_nodeids[{k}]: tree {} has no node {}",
                w_trees[k], w_nodes[k]
            ))
        })?;
        let leaf = leaf_of[*node].ok_or_else(|| {
            a.error(format!(
                "{prefix}_nodeids[{k}]: node {} of tree {} is not a LEAF",
                w_nodes[k], w_trees[k]
            ))
        })?;
        let target = usize::try_from(w_ids[k])
            .map_err(|_| a.error(format!("{prefix}_ids[{k}] {} is negative", w_ids[k])))?;
        raw.leaves[leaf].push((target, w_values[k]));
    }
    // branch nodes; `map` turns raw positions into the order of `raw.nodes`
    let mut map = vec![usize::MAX; n];
    let mut referenced = vec![false; n];
    for i in 0..n {
        if parsed_modes[i].is_some() {
            map[i] = raw.nodes.len();
            raw.nodes.push(RawNode {
                feature: 0,
                mode: Mode::Leq,
                value: 0.0,
                members: Vec::new(),
                missing_true: false,
                children: [Child::Leaf(0); 2],
            });
        }
    }
    for i in 0..n {
        let Some(mode) = parsed_modes[i] else {
            continue;
        };
        let mut child = |attr: &str, id: i64| -> Result<Child, ModelError> {
            let c = *index.get(&(tree_ids[i], id)).ok_or_else(|| {
                a.error(format!(
                    "attribute {attr}[{i}]: tree {} has no node {id}",
                    tree_ids[i]
                ))
            })?;
            referenced[c] = true;
            Ok(match leaf_of[c] {
                Some(l) => Child::Leaf(l),
                None => Child::Node(map[c]),
            })
        };
        let t = child("nodes_truenodeids", trues[i])?;
        let f = child("nodes_falsenodeids", falses[i])?;
        let feature = feature_index(a, i, features[i])?;
        if mode == Mode::Member {
            return Err(a.error(format!(
                "attribute nodes_modes[{i}] BRANCH_MEMBER exists only in TreeEnsemble (ai.onnx.ml opset 5)"
            )));
        }
        raw.nodes[map[i]] = RawNode {
            feature,
            mode,
            value: values[i],
            members: Vec::new(),
            missing_true: missing.get(i).is_some_and(|&m| m != 0),
            children: [t, f],
        };
    }
    for tree in tree_order {
        let roots: Vec<usize> = (0..n)
            .filter(|&i| tree_ids[i] == tree && !referenced[i])
            .collect();
        let [root] = roots[..] else {
            return Err(a.error(format!(
                "tree {tree} has {} root nodes (nodes no other node points to), expected 1",
                roots.len()
            )));
        };
        raw.roots.push(match leaf_of[root] {
            Some(l) => Child::Leaf(l),
            None => Child::Node(map[root]),
        });
    }
    Ok(raw)
}

/// Nodes of `TreeEnsemble` (opset 5): positional nodes, leaf flags, one weight per leaf.
pub(super) fn unified_raw(a: &Attrs<'_>) -> Result<Raw, ModelError> {
    let features = a.ints("nodes_featureids");
    let splits = a
        .tensor_f64("nodes_splits")?
        .ok_or_else(|| a.error("attribute nodes_splits is missing"))?;
    let modes = a
        .tensor_ints("nodes_modes")?
        .ok_or_else(|| a.error("attribute nodes_modes is missing"))?;
    let trues = a.ints("nodes_truenodeids");
    let true_leafs = a.ints("nodes_trueleafs");
    let falses = a.ints("nodes_falsenodeids");
    let false_leafs = a.ints("nodes_falseleafs");
    let missing = a.ints("nodes_missing_value_tracks_true");
    let roots = a.ints("tree_roots");
    let targets = a.ints("leaf_targetids");
    let weights = a
        .tensor_f64("leaf_weights")?
        .ok_or_else(|| a.error("attribute leaf_weights is missing"))?;
    let members = a.tensor_f64("membership_values")?.unwrap_or_default();
    let n = features.len();
    a.same_len(
        n,
        &[
            ("nodes_featureids", n),
            ("nodes_splits", splits.len()),
            ("nodes_modes", modes.len()),
            ("nodes_truenodeids", trues.len()),
            ("nodes_trueleafs", true_leafs.len()),
            ("nodes_falsenodeids", falses.len()),
            ("nodes_falseleafs", false_leafs.len()),
        ],
    )?;
    check_missing(a, n, missing)?;
    a.same_len(
        targets.len(),
        &[
            ("leaf_targetids", targets.len()),
            ("leaf_weights", weights.len()),
        ],
    )?;
    let mut raw = Raw::default();
    for (k, (&t, &w)) in targets.iter().zip(&weights).enumerate() {
        let t = usize::try_from(t)
            .map_err(|_| a.error(format!("attribute leaf_targetids[{k}] {t} is negative")))?;
        raw.leaves.push(vec![(t, w)]);
    }
    let child = |attr: &str, i: usize, id: i64, leaf: bool| -> Result<Child, ModelError> {
        let limit = if leaf { raw.leaves.len() } else { n };
        let c = usize::try_from(id)
            .ok()
            .filter(|&c| c < limit)
            .ok_or_else(|| {
                a.error(format!(
                    "attribute {attr}[{i}] {id} is not a {} index (there are {limit})",
                    if leaf { "leaf" } else { "node" }
                ))
            })?;
        Ok(if leaf { Child::Leaf(c) } else { Child::Node(c) })
    };
    let mut member_sets = members.split(|m| m.is_nan());
    for i in 0..n {
        let mode = Mode::from_code(modes[i]).ok_or_else(|| {
            a.error(format!(
                "attribute nodes_modes[{i}] {} is not a mode (0 to 6)",
                modes[i]
            ))
        })?;
        let feature = feature_index(a, i, features[i])?;
        let set = if mode == Mode::Member {
            member_sets
                .next()
                .ok_or_else(|| {
                    a.error(format!(
                        "node {i} is BRANCH_MEMBER but membership_values has no set left for it"
                    ))
                })?
                .to_vec()
        } else {
            Vec::new()
        };
        raw.nodes.push(RawNode {
            feature,
            mode,
            value: splits[i],
            members: set,
            missing_true: missing.get(i).is_some_and(|&m| m != 0),
            children: [
                child("nodes_truenodeids", i, trues[i], true_leafs[i] != 0)?,
                child("nodes_falsenodeids", i, falses[i], false_leafs[i] != 0)?,
            ],
        });
    }
    if roots.is_empty() {
        return Err(a.error("attribute tree_roots is empty"));
    }
    for (k, &r) in roots.iter().enumerate() {
        raw.roots.push(child("tree_roots", k, r, false)?);
    }
    Ok(raw)
}

fn feature_index(a: &Attrs<'_>, i: usize, feature: i64) -> Result<usize, ModelError> {
    usize::try_from(feature)
        .ok()
        .filter(|&f| f < FEATURE_MASK as usize)
        .ok_or_else(|| {
            a.error(format!(
                "attribute nodes_featureids[{i}] {feature} is not a feature index"
            ))
        })
}

/// `nodes_missing_value_tracks_true` is optional, and one per node when present.
fn check_missing(a: &Attrs<'_>, n: usize, missing: &[i64]) -> Result<(), ModelError> {
    if !missing.is_empty() && missing.len() != n {
        return Err(a.error(format!(
            "attribute nodes_missing_value_tracks_true has {} elements, expected {n} (one per node)",
            missing.len()
        )));
    }
    Ok(())
}
