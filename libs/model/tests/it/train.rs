//! Training: exported ridge and boosted-tree models load through `Model::load` and reproduce
//! the in-memory predictions to 1e-6 (and onnxruntime's to 1e-5); walk-forward validation on
//! a series without signal scores at chance, while one bar of look-ahead scores perfectly.

use stockcast_model::train::ridge::Ridge;
use stockcast_model::train::{Algorithm, Dataset, Fitted, FoldSpec, GbtParams, TrainSpec, train};
use stockcast_model::{Contract, Model, OutputKind};

#[test]
fn the_exported_ridge_reproduces_the_in_memory_one() {
    let d = 5;
    let x: Vec<f32> = (0..500 * d)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let y: Vec<f32> = x
        .chunks_exact(d)
        .map(|r| 0.5 * r[0] - 1.5 * r[3] + 0.1 * r[4] + 2.0)
        .collect();
    let ridge = Ridge::fit(&x, &y, d, 1.0).unwrap();
    let contract = Contract {
        feature_view: "default".into(),
        feature_view_version: 1,
        feature_names: (0..d).map(|i| format!("f{i}")).collect(),
        target: "log_return".into(),
        horizon_bars: 1,
    };
    let model = Model::load(&ridge.to_onnx(&contract).unwrap()).unwrap();
    assert_eq!(model.contract(), &contract);
    assert_eq!(model.output_kind(), &OutputKind::Regression { targets: 1 });
    let prediction = model.run(&x).unwrap();
    for (r, row) in x.chunks_exact(d).enumerate() {
        let (got, want) = (f64::from(prediction.values[r]), ridge.predict(row));
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "row {r}: exported {got}, in memory {want}"
        );
    }
    let mut short = contract.clone();
    short.feature_names.pop();
    assert!(
        ridge
            .to_onnx(&short)
            .unwrap_err()
            .contains("names 4 features")
    );
}

/// i.i.d. returns of three symbols as the feature store would serve them with a one-bar
/// label: the features at bar t are the last three returns (r[t], r[t-1], r[t-2]) and the
/// label is r[t+1]. With `peek` the first feature is r[t+1] instead: one bar of look-ahead.
fn iid_series(bars: usize, peek: bool) -> Dataset {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.02
    };
    let names = vec!["r0".to_owned(), "r1".to_owned(), "r2".to_owned()];
    let mut data = Dataset::new(names);
    for symbol in ["A", "B", "C"] {
        let r: Vec<f64> = (0..bars + 1).map(|_| next()).collect();
        for t in 2..bars {
            let first = if peek { r[t + 1] } else { r[t] };
            assert!(data.push(
                symbol,
                t as i64 * 86_400,
                &[first, r[t - 1], r[t - 2]],
                r[t + 1]
            ));
        }
    }
    data.sort_by_time();
    data
}

fn spec(algorithm: Algorithm) -> TrainSpec {
    TrainSpec {
        algorithm,
        folds: FoldSpec {
            folds: 4,
            horizon: 1,
            embargo: 1,
            min_train_rows: 50,
        },
        periods_per_year: 252.0,
    }
}

#[test]
fn training_on_a_series_without_signal_scores_at_chance_and_a_one_bar_peek_is_caught() {
    let gbt = Algorithm::Gbt(GbtParams {
        trees: 30,
        ..GbtParams::default()
    });
    for algorithm in [Algorithm::Ridge { lambda: 1.0 }, gbt] {
        let (_, honest) = train(&iid_series(800, false), &spec(algorithm)).unwrap();
        let m = honest.overall.model;
        assert!(
            (m.directional_accuracy - 0.5).abs() < 0.06 && m.ic.abs() < 0.1,
            "{}: a series without signal scored {m:?}: the folds or labels see the future",
            algorithm.name()
        );
        // the momentum baseline uses only closed labels: at chance too
        let b = honest.overall.momentum;
        assert!((b.directional_accuracy - 0.5).abs() < 0.06, "{b:?}");
        assert_eq!(honest.folds.len(), 4);
        for f in &honest.folds {
            assert!(f.train_times.1 < f.test_times.0 - 86_400, "{f:?}");
        }
        // the same pipeline given one bar of look-ahead scores (nearly) perfectly
        let (_, leaky) = train(&iid_series(800, true), &spec(algorithm)).unwrap();
        let m = leaky.overall.model;
        assert!(
            m.directional_accuracy > 0.9 && m.ic > 0.9,
            "{}: {m:?}",
            algorithm.name()
        );
    }
}

#[test]
fn training_is_deterministic_and_refuses_bad_input() {
    let data = iid_series(300, false);
    let gbt = Algorithm::Gbt(GbtParams::default());
    let (a, ra) = train(&data, &spec(gbt)).unwrap();
    let (b, rb) = train(&data, &spec(gbt)).unwrap();
    assert_eq!(a, b);
    assert_eq!(ra.overall.to_json(), rb.overall.to_json());
    let mut too_many = spec(gbt);
    too_many.folds.folds = 200;
    let err = train(&data, &too_many).unwrap_err().to_string();
    assert!(err.contains("too few for 200 folds"), "{err}");
    let mut short = spec(gbt);
    short.folds.horizon = 3;
    let err = train(&data, &short).unwrap_err().to_string();
    assert!(err.contains("shorter than the horizon"), "{err}");
}

/// Python with onnxruntime: `STOCKCAST_PYTHON` or the project's venv.
fn python() -> String {
    std::env::var("STOCKCAST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/root/.cache/stockcast/venv/bin/python".to_owned())
}

/// onnxruntime's outputs for `model` on `x` (`d` features per row).
pub(crate) fn onnxruntime(model: &[u8], x: &[f32], d: usize) -> Vec<f32> {
    let dir = std::env::temp_dir().join(format!("stockcast-ort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (m, i) = (dir.join("m.onnx"), dir.join("x.bin"));
    std::fs::write(&m, model).unwrap();
    std::fs::write(
        &i,
        x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
    let script = "import sys, numpy as np, onnxruntime as ort\n\
        s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n\
        x = np.fromfile(sys.argv[2], dtype='<f4').reshape(-1, int(sys.argv[3]))\n\
        y = s.run(None, {s.get_inputs()[0].name: x})[0]\n\
        sys.stdout.buffer.write(np.asarray(y, dtype='<f4').tobytes())\n";
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(&m)
        .arg(&i)
        .arg(d.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); set STOCKCAST_PYTHON", python()));
    assert!(
        out.status.success(),
        "onnxruntime failed (pip install onnxruntime numpy into {}): {}",
        python(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Boosted trees fitted on `data` and the contract of their export.
fn boosted(data: &Dataset, trees: usize, max_depth: usize) -> (Fitted, Contract) {
    let fitted = Algorithm::Gbt(GbtParams {
        trees,
        max_depth,
        min_leaf: 5,
        ..GbtParams::default()
    })
    .fit(&data.x, &data.y, data.n_features())
    .unwrap();
    let contract = Contract {
        feature_view: "default".into(),
        feature_view_version: 1,
        feature_names: data.feature_names.clone(),
        target: "log_return".into(),
        horizon_bars: 1,
    };
    (fitted, contract)
}

#[test]
fn exported_boosted_trees_match_the_in_memory_model_and_onnxruntime() {
    let data = iid_series(400, false);
    let d = data.n_features();
    let (fitted, contract) = boosted(&data, 40, 4);
    let onnx = fitted.to_onnx(&contract).unwrap();
    let model = Model::load(&onnx).unwrap();
    assert_eq!(model.contract(), &contract);
    let ours = model.run(&data.x).unwrap().values;
    let want = fitted.predict(&data.x, d);
    let reference = onnxruntime(&onnx, &data.x, d);
    assert_eq!(reference.len(), want.len());
    for r in 0..want.len() {
        let (o, w, x) = (ours[r], want[r], reference[r]);
        assert!(
            (o - w).abs() <= 1e-6 * w.abs().max(1.0),
            "row {r}: {o} vs in memory {w}"
        );
        assert!(
            (x - w).abs() <= 1e-5 * w.abs().max(1e-1),
            "row {r}: onnxruntime {x} vs {w}"
        );
    }
}

#[test]
fn a_graph_mixing_onnx_ml_and_standard_operators_matches_onnxruntime() {
    use prost::Message as _;
    use stockcast_model::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};
    // Scaler -> the trained TreeEnsembleRegressor -> Add(constant) -> Mul(by itself)
    let data = iid_series(200, false);
    let d = data.n_features();
    let (fitted, contract) = boosted(&data, 10, 3);
    let mut model = ModelProto::decode(fitted.to_onnx(&contract).unwrap().as_slice()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let floats = |name: &str, v: Vec<f32>| AttributeProto {
        name: name.into(),
        floats: v,
        r#type: 6,
        ..AttributeProto::default()
    };
    let node = |op: &str, domain: &str, inputs: &[&str], output: &str| NodeProto {
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.to_owned()],
        name: output.to_owned(),
        op_type: op.to_owned(),
        domain: domain.to_owned(),
        attribute: vec![],
    };
    let mut scaler = node("Scaler", "ai.onnx.ml", &["features"], "scaled");
    scaler.attribute = vec![
        floats("offset", vec![0.001, -0.002, 0.0]),
        floats("scale", vec![2.0, 0.5, 1.0]),
    ];
    graph.node[0].input = vec!["scaled".into()];
    graph.node[0].output = vec!["score".into()];
    graph.node.insert(0, scaler);
    graph
        .node
        .push(node("Add", "", &["score", "offset"], "shifted"));
    graph
        .node
        .push(node("Mul", "", &["shifted", "shifted"], "variable"));
    graph.initializer.push(TensorProto {
        name: "offset".into(),
        dims: vec![1],
        data_type: 1,
        float_data: vec![0.25],
        ..TensorProto::default()
    });
    let bytes = model.encode_to_vec();
    let ours = Model::load(&bytes).unwrap().run(&data.x).unwrap().values;
    let reference = onnxruntime(&bytes, &data.x, d);
    assert_eq!(ours.len(), reference.len());
    for (r, (o, x)) in ours.iter().zip(&reference).enumerate() {
        assert!(
            (o - x).abs() <= 1e-5 * x.abs().max(1e-1),
            "row {r}: {o} vs onnxruntime {x}"
        );
    }
    // a constant of the wrong width is refused, naming the node
    let graph = model.graph.as_mut().unwrap();
    graph.initializer[0].float_data = vec![1.0, 2.0];
    let err = Model::load(&model.encode_to_vec()).unwrap_err().to_string();
    assert!(
        err.contains("\"shifted\" (Add)") && err.contains("input 1 has 2 values"),
        "{err}"
    );
}
