#!/usr/bin/env python3
"""Builds the ONNX fixtures of libs/model's correctness matrix.

Each fixture is a small model exported by skl2onnx or onnxmltools (or built by hand with
onnx.helper for operators no exporter writes), with the five stockcast contract keys in its
metadata_props, plus a JSON file beside it holding random float32 inputs (NaN in some rows
when the model has missing-value branches) and onnxruntime's outputs for them. The Rust test
(libs/model/tests/it/matrix.rs) compares libs/model's outputs to those, so the tests need no
Python. Everything is seeded: running the script twice writes the same files.

    /root/.cache/stockcast/venv/bin/python scripts/model-fixtures.py [--only NAME]

Needs: numpy scikit-learn skl2onnx onnxmltools lightgbm xgboost onnx onnxruntime.
"""

import argparse
import json
import math
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, TensorProto

warnings.filterwarnings("ignore")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "libs", "model", "tests", "fixtures")
ML_OPSET = 3
OPSET = 15


def contract_props(n_features):
    return {
        "stockcast.feature_view": "fixture",
        "stockcast.feature_view_version": "1",
        "stockcast.feature_names": ",".join(f"f{i}" for i in range(n_features)),
        "stockcast.target": "log_return",
        "stockcast.horizon_bars": "1",
    }


def with_contract(model, n_features):
    onnx.helper.set_model_props(model, contract_props(n_features))
    model.graph.name = "model"  # onnxmltools names graphs with a random uuid
    # exporters list opsets in set order, which changes from run to run
    opsets = sorted({(o.domain, o.version) for o in model.opset_import})
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets)
    return model


def data(n_rows, n_features, seed, classes=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    w = rng.normal(size=n_features)
    score = x @ w + 0.3 * np.sin(3 * x[:, 0]) + 0.1 * rng.normal(size=n_rows)
    if classes == 0:
        return x, score.astype(np.float32)
    edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    return x, np.searchsorted(edges, score).astype(np.int64)


def inputs(n_features, seed, nan):
    rng = np.random.default_rng(seed + 1000)
    x = rng.normal(size=(17, n_features)).astype(np.float32)
    if nan:
        # a NaN in every feature of some rows and in single features of others
        x[3, :] = np.nan
        for r in range(5, 17, 3):
            x[r, rng.integers(n_features)] = np.nan
    return x


def run_ort(model, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = session.run(None, {name: x})
    result = {}
    for meta, value in zip(session.get_outputs(), outputs):
        if isinstance(value, list):  # ZipMap: a list of {label: probability}
            labels = sorted(value[0].keys()) if value else []
            value = np.array([[row[k] for k in labels] for row in value], dtype=np.float32)
        value = np.asarray(value)
        result[meta.name] = {
            "dtype": str(value.dtype),
            "shape": list(value.shape),
            "data": [encode(v) for v in value.reshape(-1).tolist()],
        }
    return result


def encode(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (bytes, str)):
        return v if isinstance(v, str) else v.decode()
    return v


def write(name, model, x, nan):
    os.makedirs(FIXTURES, exist_ok=True)
    onnx.checker.check_model(model)
    path = os.path.join(FIXTURES, f"{name}.onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    case = {
        "model": f"{name}.onnx",
        "nan": nan,
        "input_shape": list(x.shape),
        "input": [encode(v) for v in x.reshape(-1).astype(np.float64).tolist()],
        "outputs": run_ort(model, x),
    }
    with open(os.path.join(FIXTURES, f"{name}.json"), "w") as f:
        json.dump(case, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"{name}: {os.path.getsize(path)} bytes", file=sys.stderr)


def skl(model, n_features, options=None):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, n_features]))],
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
        options=options,
    )
    return with_contract(onx, n_features)


def lgbm(model, n_features):
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    onx = convert_lightgbm(
        model, initial_types=[("features", FloatTensorType([None, n_features]))], target_opset=OPSET
    )
    return with_contract(onx, n_features)


def xgb(model, n_features):
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    onx = convert_xgboost(
        model, initial_types=[("features", FloatTensorType([None, n_features]))], target_opset=OPSET
    )
    return with_contract(onx, n_features)


def sklearn_cases():
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = 6
    x, y = data(400, n, 1)
    yield "skl_linear_regression", skl(LinearRegression().fit(x, y), n), n, False
    yield "skl_ridge", skl(Ridge(alpha=1.0).fit(x, y), n), n, False
    yield "skl_scaler_ridge", skl(make_pipeline(StandardScaler(), Ridge()).fit(x * 3 + 1, y), n), n, False
    yield "skl_mlp_regressor", skl(
        MLPRegressor(hidden_layer_sizes=(8,), max_iter=300, random_state=0).fit(x, y), n
    ), n, False
    yield "skl_gbr", skl(
        GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0).fit(x, y), n
    ), n, False
    yield "skl_random_forest_regressor", skl(
        RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0).fit(x, y), n
    ), n, False
    yield "skl_extra_trees_regressor", skl(
        ExtraTreesRegressor(n_estimators=5, max_depth=4, random_state=0).fit(x, y), n
    ), n, False
    for classes in (2, 3):
        xc, yc = data(400, n, 2 + classes, classes)
        for zipmap in (True, False):
            suffix = f"{classes}class" + ("" if zipmap else "_nozipmap")
            options = None if zipmap else {"zipmap": False}
            yield f"skl_logistic_{suffix}", skl(
                LogisticRegression(max_iter=200).fit(xc, yc), n, options
            ), n, False
            yield f"skl_gbc_{suffix}", skl(
                GradientBoostingClassifier(n_estimators=8, max_depth=3, random_state=0).fit(xc, yc),
                n,
                options,
            ), n, False
        yield f"skl_random_forest_classifier_{classes}class", skl(
            RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(xc, yc),
            n,
            {"zipmap": False},
        ), n, False


def boosting_cases():
    import lightgbm
    import xgboost

    n = 6
    x, y = data(400, n, 11)
    # NaN in training makes the trees learn missing-value directions
    x_nan = x.copy()
    x_nan[::7, 1] = np.nan
    yield "lgbm_regressor", lgbm(
        lightgbm.LGBMRegressor(n_estimators=10, num_leaves=7, random_state=0, verbose=-1).fit(x_nan, y), n
    ), n, True
    yield "xgb_regressor", xgb(
        xgboost.XGBRegressor(n_estimators=10, max_depth=3, random_state=0, base_score=0.5).fit(x_nan, y), n
    ), n, True
    for classes in (2, 3):
        xc, yc = data(400, n, 20 + classes, classes)
        xc[::7, 2] = np.nan
        yield f"lgbm_classifier_{classes}class", lgbm(
            lightgbm.LGBMClassifier(n_estimators=8, num_leaves=7, random_state=0, verbose=-1).fit(xc, yc), n
        ), n, True
        yield f"xgb_classifier_{classes}class", xgb(
            xgboost.XGBClassifier(n_estimators=8, max_depth=3, random_state=0).fit(xc, yc), n
        ), n, True
    # categorical splits: LightGBM exports them as BRANCH_EQ chains
    xcat, ycat = data(400, n, 31)
    xcat[:, 0] = np.floor(np.abs(xcat[:, 0]) * 3) % 6
    ycat = ycat + np.where(np.isin(xcat[:, 0], [1, 4]), 2.0, -1.0).astype(np.float32)
    model = lightgbm.LGBMRegressor(
        n_estimators=6, num_leaves=5, random_state=0, verbose=-1, min_data_per_group=5, cat_smooth=1
    ).fit(xcat, ycat, categorical_feature=[0])
    yield "lgbm_categorical", lgbm(model, n), n, True


def tree_node(name, op, attrs, outputs, domain="ai.onnx.ml"):
    return helper.make_node(op, ["features"], outputs, name=name, domain=domain, **attrs)


def hand_built_model(nodes, outputs, n_features, ml_opset):
    graph = helper.make_graph(
        nodes,
        "hand_built",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])],
        outputs,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ml_opset)],
    )
    model.ir_version = 8
    return with_contract(model, n_features)


def hand_built_cases():
    """Branch modes, aggregate functions and post transforms no exporter writes."""
    n = 3
    # two trees over 3 features; every branch mode; missing values tracked on some nodes
    modes = ["BRANCH_LT", "BRANCH_GTE", "LEAF", "BRANCH_EQ", "LEAF", "LEAF", "LEAF"]
    tree0 = dict(
        modes=["BRANCH_GT", "BRANCH_NEQ", "LEAF", "LEAF", "LEAF"],
        features=[0, 1, 0, 0, 0],
        values=[0.25, 0.0, 0, 0, 0],
        true=[1, 3, 0, 0, 0],
        false=[2, 4, 0, 0, 0],
        missing=[1, 0, 0, 0, 0],
    )
    tree1 = dict(
        modes=modes,
        features=[2, 1, 0, 0, 0, 0, 0],
        values=[-0.5, 0.5, 0, 1.0, 0, 0, 0],
        true=[1, 3, 0, 4, 0, 0, 0],
        false=[2, 6, 0, 5, 0, 0, 0],
        missing=[0, 1, 0, 0, 0, 0, 0],
    )
    trees = [tree0, tree1]
    attrs = {
        "nodes_treeids": [],
        "nodes_nodeids": [],
        "nodes_featureids": [],
        "nodes_modes": [],
        "nodes_values": [],
        "nodes_truenodeids": [],
        "nodes_falsenodeids": [],
        "nodes_missing_value_tracks_true": [],
    }
    leaves = []
    for t, tree in enumerate(trees):
        for i, mode in enumerate(tree["modes"]):
            attrs["nodes_treeids"].append(t)
            attrs["nodes_nodeids"].append(i)
            attrs["nodes_featureids"].append(tree["features"][i])
            attrs["nodes_modes"].append(mode)
            attrs["nodes_values"].append(float(tree["values"][i]))
            attrs["nodes_truenodeids"].append(tree["true"][i])
            attrs["nodes_falsenodeids"].append(tree["false"][i])
            attrs["nodes_missing_value_tracks_true"].append(tree["missing"][i])
            if mode == "LEAF":
                leaves.append((t, i))
    x = inputs(n, 77, True)
    x[0:4, 1] = 0.0  # hit BRANCH_EQ / BRANCH_NEQ exactly
    x[4:6, 1] = 1.0
    for aggregate in ("SUM", "AVERAGE", "MIN", "MAX"):
        for post in ("NONE", "PROBIT") if aggregate == "SUM" else ("NONE",):
            a = dict(attrs)
            a.update(
                target_treeids=[t for t, _ in leaves] * 2,
                target_nodeids=[i for _, i in leaves] * 2,
                target_ids=[0] * len(leaves) + [1] * len(leaves),
                target_weights=[0.1 * (k + 1) * (1 if k % 2 else -1) for k in range(len(leaves))]
                + [0.05 * k for k in range(len(leaves))],
                n_targets=2,
                aggregate_function=aggregate,
                base_values=[0.5, -0.25],
                post_transform=post,
            )
            if post == "PROBIT":
                # PROBIT expects values in (0, 1)
                a["target_weights"] = [0.05 + 0.04 * k for k in range(len(leaves))] * 2
                a["base_values"] = [0.0, 0.1]
            node = tree_node("trees", "TreeEnsembleRegressor", a, ["variable"])
            out = [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 2])]
            name = f"hand_regressor_{aggregate.lower()}" + ("" if post == "NONE" else f"_{post.lower()}")
            yield name, hand_built_model([node], out, n, 3), x
    for post in ("SOFTMAX", "SOFTMAX_ZERO", "LOGISTIC", "NONE"):
        a = dict(attrs)
        a.update(
            class_treeids=[t for t, _ in leaves] * 3,
            class_nodeids=[i for _, i in leaves] * 3,
            class_ids=[0] * len(leaves) + [1] * len(leaves) + [2] * len(leaves),
            class_weights=[0.3 * ((k * 7) % 5 - 2) for k in range(3 * len(leaves))],
            classlabels_int64s=[10, 20, 30],
            base_values=[0.1, 0.0, -0.1],
            post_transform=post,
        )
        if post == "SOFTMAX_ZERO":
            a["class_weights"][0] = 0.0
            a["base_values"] = [0.0, 0.0, 0.0]
        node = tree_node("trees", "TreeEnsembleClassifier", a, ["label", "probabilities"])
        out = [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3]),
        ]
        yield f"hand_classifier_{post.lower()}", hand_built_model([node], out, n, 3), x
    # ai.onnx.ml opset 5 TreeEnsemble with every mode including MEMBER and leaf flags
    splits = [0.25, 0.0, -0.5, 0.5, 1.0]
    te = dict(
        nodes_featureids=[0, 1, 2, 1, 0],
        nodes_modes=helper.make_tensor("modes", TensorProto.UINT8, [5], [3, 5, 1, 6, 0]),
        nodes_splits=helper.make_tensor("splits", TensorProto.FLOAT, [5], splits),
        nodes_truenodeids=[1, 0, 3, 1, 2],
        nodes_trueleafs=[0, 1, 0, 1, 1],
        nodes_falsenodeids=[2, 1, 4, 3, 4],
        nodes_falseleafs=[0, 1, 0, 1, 1],
        nodes_missing_value_tracks_true=[1, 0, 0, 1, 0],
        membership_values=helper.make_tensor(
            "members", TensorProto.FLOAT, [3], [0.0, 1.0, float("nan")]
        ),
        tree_roots=[0, 2],
        leaf_targetids=[0, 1, 0, 1, 0],
        leaf_weights=helper.make_tensor("weights", TensorProto.FLOAT, [5], [0.5, -1.0, 2.0, 0.25, -0.75]),
        n_targets=2,
    )
    for aggregate, post in ((1, 0), (0, 0), (2, 0), (3, 0), (1, 2), (1, 1)):
        a = dict(te)
        a.update(aggregate_function=aggregate, post_transform=post)
        node = tree_node("trees", "TreeEnsemble", a, ["variable"])
        out = [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 2])]
        yield f"hand_tree_ensemble5_agg{aggregate}_post{post}", hand_built_model([node], out, n, 5), x


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="only cases whose name contains this")
    args = parser.parse_args()
    for name, model, n, nan in list(sklearn_cases()) + list(boosting_cases()):
        if args.only and args.only not in name:
            continue
        write(name, model, inputs(n, hash_seed(name), nan), nan)
    for name, model, x in hand_built_cases():
        if args.only and args.only not in name:
            continue
        write(name, model, x, True)


def hash_seed(name):
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 100_000


if __name__ == "__main__":
    main()
