//! A ridge model trained here, exported to ONNX, loads through `Model::load` and reproduces
//! the in-memory predictions to 1e-6.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use stockcast_model::train::ridge::Ridge;
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
