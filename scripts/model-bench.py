#!/usr/bin/env python3
"""Times libs/model against onnxruntime on the same models and batches, in one run.

Builds the benchmark models (too big to commit) into DIR, times onnxruntime on them (one
thread, batch 1 and 64), runs `cargo bench -p stockcast-model --bench models` on the same
files, and prints the speed table for docs/benchmarks.md.

    unset RUST_BACKTRACE
    export CARGO_TARGET_DIR=/root/.cache/stockcast/target
    /root/.cache/stockcast/venv/bin/python scripts/model-bench.py [--dir DIR] [--skip-cargo]

Needs: numpy scikit-learn skl2onnx onnxmltools lightgbm onnx onnxruntime.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

warnings.filterwarnings("ignore")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_FEATURES = 32
BATCHES = (1, 64)


def props(model):
    onnx.helper.set_model_props(
        model,
        {
            "stockcast.feature_view": "bench",
            "stockcast.feature_view_version": "1",
            "stockcast.feature_names": ",".join(f"f{i}" for i in range(N_FEATURES)),
            "stockcast.target": "log_return",
            "stockcast.horizon_bars": "1",
        },
    )
    return model


def training_data(rows=20_000, seed=7):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, N_FEATURES)).astype(np.float32)
    w = rng.normal(size=N_FEATURES)
    y = x @ w + np.sin(2 * x[:, 0]) * x[:, 1] + 0.3 * rng.normal(size=rows)
    return x, y.astype(np.float32)


def skl(model):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    return props(
        to_onnx(
            model,
            initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
            target_opset={"": 15, "ai.onnx.ml": 3},
        )
    )


def matmul_ridge(ridge):
    """Ridge as MatMul + Add, the shape a PyTorch export has; runs on tract."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [N_FEATURES, 1], ridge.coef_.astype(np.float32).ravel())
    b = helper.make_tensor("b", TensorProto.FLOAT, [1], [float(ridge.intercept_)])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["variable"])],
        "model",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["batch", 1])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return props(model)


def build(dir):
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor

    x, y = training_data()
    ridge = Ridge().fit(x, y)
    models = {
        "gbr_100_trees_depth_3": skl(GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=0).fit(x, y)),
        "random_forest_100_trees_depth_8": skl(
            RandomForestRegressor(n_estimators=100, max_depth=8, random_state=0, n_jobs=1).fit(x[:5000], y[:5000])
        ),
        "lightgbm_200_trees_31_leaves": props(
            convert_lightgbm(
                lightgbm.LGBMRegressor(n_estimators=200, num_leaves=31, random_state=0, verbose=-1).fit(x, y),
                initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
                target_opset=15,
            )
        ),
        "ridge_linear_regressor": skl(ridge),
        "ridge_matmul": matmul_ridge(ridge),
        "mlp_64_64": skl(
            MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=50, random_state=0).fit(x[:5000], y[:5000])
        ),
    }
    os.makedirs(dir, exist_ok=True)
    for name, model in models.items():
        with open(os.path.join(dir, f"{name}.onnx"), "wb") as f:
            f.write(model.SerializeToString())
    with open(os.path.join(dir, "models.txt"), "w") as f:
        f.write("\n".join(models) + "\n")
    inputs = np.random.default_rng(11).normal(size=(64, N_FEATURES)).astype("<f4")
    with open(os.path.join(dir, "inputs.f32"), "wb") as f:
        f.write(inputs.tobytes())
    return list(models), inputs


def time_ort(dir, names, inputs):
    """Median seconds per call over 7 repeats of ~0.2 s each, one thread."""
    results = {}
    for name in names:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(os.path.join(dir, f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        for batch in BATCHES:
            feed = {input_name: np.ascontiguousarray(inputs[:batch])}
            for _ in range(200):
                session.run(None, feed)
            start = time.perf_counter()
            calls = 0
            while time.perf_counter() - start < 0.05:
                session.run(None, feed)
                calls += 1
            per_repeat = max(10, int(calls * 4))
            samples = []
            for _ in range(7):
                t0 = time.perf_counter()
                for _ in range(per_repeat):
                    session.run(None, feed)
                samples.append((time.perf_counter() - t0) / per_repeat)
            results[(name, batch)] = statistics.median(samples)
    return results


def run_cargo(dir):
    env = dict(os.environ, STOCKCAST_MODEL_BENCH_DIR=dir)
    env.pop("RUST_BACKTRACE", None)
    subprocess.run(
        ["cargo", "bench", "-p", "stockcast-model", "--bench", "models"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def read_criterion(names):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    results = {}
    for name in names:
        for batch in BATCHES:
            path = os.path.join(target, "criterion", "model", name, str(batch), "new", "estimates.json")
            with open(path) as f:
                results[(name, batch)] = json.load(f)["median"]["point_estimate"] / 1e9
    return results


def fmt(seconds):
    us = seconds * 1e6
    return f"{us:.2f} µs" if us < 100 else f"{us:.0f} µs"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="/tmp/stockcast-model-bench")
    parser.add_argument("--skip-cargo", action="store_true", help="reuse the last criterion results")
    args = parser.parse_args()
    names, inputs = build(args.dir)
    print("timing onnxruntime…", file=sys.stderr)
    ours_first = None
    if not args.skip_cargo:
        run_cargo(args.dir)
        ours_first = read_criterion(names)
    theirs = time_ort(args.dir, names, inputs)
    ours = ours_first or read_criterion(names)
    print(f"onnxruntime {ort.__version__}, one thread; stockcast-model median of criterion samples\n")
    print("| model | batch | stockcast-model | onnxruntime | rows/s stockcast-model | rows/s onnxruntime | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        for batch in BATCHES:
            a, b = ours[(name, batch)], theirs[(name, batch)]
            print(
                f"| {name} | {batch} | {fmt(a)} | {fmt(b)} | {batch / a:,.0f} | {batch / b:,.0f} | {b / a:.1f}x |"
            )


if __name__ == "__main__":
    main()
