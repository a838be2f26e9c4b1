//! The correctness matrix: every model under `tests/fixtures` (made by
//! `scripts/model-fixtures.py` from scikit-learn, LightGBM and XGBoost exports and
//! hand-built ONNX-ML graphs) is run on its committed random inputs, NaN included where
//! the model has missing-value branches, and each output is compared with onnxruntime's
//! outputs recorded beside it: equal to 1e-5 relative (with an absolute floor of 1e-6 for
//! values near zero), labels exactly.

use std::path::{Path, PathBuf};

use serde_json::Value;
use stockcast_model::{Model, OutputKind, TensorData};

const RELATIVE: f64 = 1e-5;
const ABSOLUTE: f64 = 1e-6;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases() -> Vec<(String, Value)> {
    let mut cases: Vec<(String, Value)> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let case = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (name, case)
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn check_case(name: &str, case: &Value) -> Result<(), String> {
    let bytes = std::fs::read(fixtures().join(case["model"].as_str().unwrap())).unwrap();
    let model = Model::load(&bytes).map_err(|e| format!("load: {e}"))?;
    let input: Vec<f32> = floats(&case["input"]).iter().map(|&v| v as f32).collect();
    let outputs = model.run_all(&input).map_err(|e| format!("run: {e}"))?;
    let expected = case["outputs"].as_object().unwrap();
    if expected.len() != outputs.len() {
        return Err(format!(
            "{} outputs, onnxruntime has {}",
            outputs.len(),
            expected.len()
        ));
    }
    for (out_name, tensor) in &outputs {
        let want = expected
            .get(out_name)
            .ok_or_else(|| format!("output {out_name:?} unknown to onnxruntime"))?;
        let want_shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        // onnxruntime gives ZipMap outputs as rows of maps; the script wrote them as a matrix
        if tensor.shape != want_shape {
            return Err(format!(
                "output {out_name:?}: shape {:?}, onnxruntime {want_shape:?}",
                tensor.shape
            ));
        }
        match &tensor.data {
            TensorData::F32(got) => {
                let want = floats(&want["data"]);
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    let g = f64::from(g);
                    let ok = (g.is_nan() && w.is_nan())
                        || (g - w).abs() <= RELATIVE * w.abs().max(g.abs()) + ABSOLUTE;
                    if !ok {
                        return Err(format!(
                            "output {out_name:?}[{i}] (row {}): {g} vs onnxruntime {w}",
                            i / tensor.cols().max(1)
                        ));
                    }
                }
            }
            TensorData::I64(got) => {
                let want: Vec<i64> = want["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect();
                if *got != want {
                    return Err(format!(
                        "output {out_name:?}: labels {got:?} vs onnxruntime {want:?}"
                    ));
                }
            }
            TensorData::Str(got) => {
                let want: Vec<String> = want["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect();
                if *got != want {
                    return Err(format!(
                        "output {out_name:?}: labels {got:?} vs onnxruntime {want:?}"
                    ));
                }
            }
        }
    }
    // the primary output is the one serving reads
    let prediction = model.run(&input).map_err(|e| format!("run: {e}"))?;
    let rows = input.len() / model.n_features();
    if prediction.rows != rows {
        return Err(format!("{} rows predicted for {rows}", prediction.rows));
    }
    match model.output_kind() {
        OutputKind::Probabilities { labels } if prediction.width != labels.len() => Err(format!(
            "{} probabilities per row for {} classes",
            prediction.width,
            labels.len()
        )),
        _ => Ok(()),
    }
    .map_err(|e| format!("{name}: {e}"))
}

#[test]
fn every_fixture_matches_onnxruntime() {
    let cases = cases();
    assert!(
        cases.len() >= 30,
        "only {} fixtures; run scripts/model-fixtures.py",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, case)| check_case(name, case).err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from onnxruntime:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_matrix_covers_the_exporters_and_operators() {
    let names: Vec<String> = cases().into_iter().map(|(n, _)| n).collect();
    for wanted in [
        "skl_linear_regression",
        "skl_ridge",
        "skl_logistic_2class",
        "skl_logistic_3class",
        "skl_gbr",
        "skl_gbc_2class",
        "skl_gbc_3class",
        "skl_random_forest_regressor",
        "skl_random_forest_classifier_2class",
        "skl_extra_trees_regressor",
        "skl_mlp_regressor",
        "skl_scaler_ridge",
        "lgbm_regressor",
        "lgbm_classifier_2class",
        "lgbm_classifier_3class",
        "lgbm_categorical",
        "xgb_regressor",
        "xgb_classifier_2class",
        "xgb_classifier_3class",
        "hand_tree_ensemble5_agg1_post0",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "fixture {wanted} is missing"
        );
    }
}

#[test]
fn engines_and_output_kinds_are_inferred() {
    let load = |name: &str| {
        Model::load(&std::fs::read(fixtures().join(format!("{name}.onnx"))).unwrap()).unwrap()
    };
    let mlp = load("skl_mlp_regressor");
    assert_eq!(mlp.engine(), "tract");
    assert_eq!(mlp.output_kind(), &OutputKind::Regression { targets: 1 });
    let gbr = load("skl_gbr");
    assert_eq!(gbr.engine(), "native");
    assert_eq!(gbr.output_kind(), &OutputKind::Regression { targets: 1 });
    let gbc = load("skl_gbc_3class");
    assert_eq!(
        gbc.output_kind(),
        &OutputKind::Probabilities {
            labels: stockcast_model::ClassLabels::Int64(vec![0, 1, 2])
        }
    );
    let lgbm = load("lgbm_classifier_2class");
    let p = lgbm.run(&[0.5; 6]).unwrap();
    assert_eq!((p.rows, p.width), (1, 2));
    assert!((p.row(0).iter().sum::<f32>() - 1.0).abs() < 1e-6);
}

#[test]
fn each_row_run_alone_equals_its_row_in_the_batch() {
    // batch 1 and larger batches take different paths through the tree kernels
    for (name, case) in cases() {
        let bytes = std::fs::read(fixtures().join(case["model"].as_str().unwrap())).unwrap();
        let model = Model::load(&bytes).unwrap();
        let n = model.n_features();
        let input: Vec<f32> = floats(&case["input"]).iter().map(|&v| v as f32).collect();
        let batch = model.run(&input).unwrap();
        for (r, row) in input.chunks_exact(n).enumerate() {
            let alone = model.run(row).unwrap();
            for (a, b) in alone.values.iter().zip(batch.row(r)) {
                assert!(
                    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                    "{name} row {r}: {a} alone, {b} in the batch"
                );
            }
        }
    }
}

#[test]
fn every_batch_size_equals_its_rows_in_the_full_batch() {
    // tract models get a plan per batch size for the first few sizes and share one for the
    // rest: every prefix of the input, run twice, takes both kinds
    let mut tract_cases = 0;
    for (name, case) in cases() {
        let bytes = std::fs::read(fixtures().join(case["model"].as_str().unwrap())).unwrap();
        let model = Model::load(&bytes).unwrap();
        if model.engine() != "tract" {
            continue;
        }
        tract_cases += 1;
        let n = model.n_features();
        let input: Vec<f32> = floats(&case["input"]).iter().map(|&v| v as f32).collect();
        let full = model.run(&input).unwrap();
        assert!(full.rows > 8, "{name}: {} rows", full.rows);
        for _ in 0..2 {
            for rows in 1..=full.rows {
                let part = model.run(&input[..rows * n]).unwrap();
                assert_eq!(part.rows, rows, "{name}");
                for r in 0..rows {
                    for (a, b) in part.row(r).iter().zip(full.row(r)) {
                        assert!(
                            (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                            "{name} row {r} of {rows}: {a}, {b} in the full batch"
                        );
                    }
                }
            }
        }
    }
    assert!(tract_cases > 0, "no fixture runs on tract");
}

#[test]
fn concurrent_runs_of_one_tract_model_each_get_their_own_result() {
    // the per-batch-size plans are built and shared while other threads run the model
    let bytes = std::fs::read(fixtures().join("skl_mlp_regressor.onnx")).unwrap();
    let model = Model::load(&bytes).unwrap();
    assert_eq!(model.engine(), "tract");
    let n = model.n_features();
    let input: Vec<f32> = (0..17 * n).map(|i| (i as f32 * 0.37).sin()).collect();
    // each batch size run alone first: a concurrent run must give the same values, up to the
    // rounding of the plan it runs on (the first eight batch sizes seen get plans of their own)
    let alone: Vec<Vec<f32>> = (1..=17)
        .map(|rows| model.run(&input[..rows * n]).unwrap().values)
        .collect();
    // a fresh load, so its plans are built while the other threads run
    let model = Model::load(&bytes).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (model, input, alone) = (&model, &input, &alone);
            scope.spawn(move || {
                for i in 0..40 {
                    let rows = 1 + (t * 5 + i) % alone.len();
                    let part = model.run(&input[..rows * n]).unwrap();
                    assert_eq!(part.values.len(), rows);
                    for (a, b) in part.values.iter().zip(&alone[rows - 1]) {
                        let (a, b) = (f64::from(*a), f64::from(*b));
                        assert!(
                            (a - b).abs() <= ABSOLUTE.max(RELATIVE * b.abs()),
                            "{rows} rows: {a} concurrently, {b} alone"
                        );
                    }
                }
            });
        }
    });
}
