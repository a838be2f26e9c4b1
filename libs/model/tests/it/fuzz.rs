//! A fuzz harness for reading models, run on stable as ordinary tests: the committed ONNX
//! fixtures (`tests/fixtures`) are the seed corpus, mutated deterministically (bit flips,
//! truncation, spliced and deleted runs, giant varints) for a time budget, through
//! `metadata_props`, `read_metadata_props` and `Model::load` (and `run` on what
//! loads). None may panic, whatever tract does with a corrupt graph. Contracts with hostile
//! values and graphs that contradict their contract are refused naming the key or input.
//!
//! `STOCKCAST_FUZZ_SECS=600 cargo nextest run -p stockcast-model fuzz` runs it longer
//! (docs/testing.md).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use prost::Message;
use stockcast_testkit::fuzz::{self, Rng, budget};

use stockcast_model::proto::{ModelProto, StringStringEntryProto};
use stockcast_model::{Model, ModelError, metadata_props, read_metadata_props};

const SEED: u64 = 0x5eed_0bb5_0dd1;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 20, "seed corpus in {}", dir.display());
    out
}

/// Reads `bytes` every way a service does; panics only if the reader does.
fn read_all(bytes: &[u8]) {
    let props = metadata_props(bytes);
    let streamed = read_metadata_props(std::io::Cursor::new(bytes));
    if let (Ok(a), Ok(b)) = (&props, &streamed) {
        assert_eq!(a, b, "both readers agree");
    }
    if let Ok(model) = Model::load(bytes) {
        let n = model.n_features();
        let _ = model.run(&vec![0.5; n.min(1 << 16) * 2]);
    }
}

/// Inputs the harness found that once panicked, each replayed on every run.
#[test]
fn recorded_crashes_are_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crashes");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        match catch_unwind(AssertUnwindSafe(|| Model::load(&bytes))) {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("{} loaded", path.display()),
            Err(_) => panic!("{} panicked", path.display()),
        }
    }
    let bytes = std::fs::read(dir.join("tract_unknown_value_name.onnx")).unwrap();
    let message = Model::load(&bytes).unwrap_err().to_string();
    assert!(
        message.starts_with("tract: tract failed reading the model (it panicked: "),
        "{message}"
    );
}

#[test]
fn reading_survives_mutations_of_every_fixture() {
    let corpus: Vec<Vec<u8>> = fixtures().into_iter().map(|(_, b)| b).collect();
    for bytes in &corpus {
        read_all(bytes);
    }
    let interesting: &[&[u8]] = &[
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
        b"\x00",
        b"\x3a\xff\xff\xff\x0f",
    ];
    let mut rng = Rng(SEED);
    let (started, budget) = (Instant::now(), budget());
    let mut rounds = 0u64;
    while started.elapsed() < budget {
        let base = &corpus[rng.below(corpus.len())];
        let input = fuzz::mutate(&mut rng, base, &corpus, interesting, b"\x0a\x12\xff");
        if catch_unwind(AssertUnwindSafe(|| read_all(&input))).is_err() {
            let kept = std::env::temp_dir().join(format!("stockcast-model-crash-{rounds}.onnx"));
            std::fs::write(&kept, &input).unwrap();
            panic!(
                "seed {SEED:#x}, round {rounds}: reading a mutated model panicked; the input \
                 is kept in {} (add it to tests/crashes)",
                kept.display()
            );
        }
        rounds += 1;
    }
    assert!(rounds > 0);
}

fn fixture(name: &str) -> ModelProto {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/{name}.onnx"));
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

fn with_prop(mut model: ModelProto, key: &str, value: &str) -> Vec<u8> {
    model.metadata_props.retain(|p| p.key != key);
    model.metadata_props.push(StringStringEntryProto {
        key: key.to_owned(),
        value: value.to_owned(),
    });
    model.encode_to_vec()
}

/// Loads `bytes`, which must be refused without a panic; the message.
fn refusal(bytes: &[u8]) -> String {
    match catch_unwind(AssertUnwindSafe(|| Model::load(bytes))) {
        Ok(Ok(_)) => panic!("loaded"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("Model::load panicked"),
    }
}

#[test]
fn hostile_contract_values_are_refused_naming_the_key() {
    let giant = "9".repeat(1_000_000);
    let many = vec!["f"; 1_000_000]
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{f}{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "stockcast.feature_names",
            many,
            "(1000000 features in the contract)",
        ),
        (
            "stockcast.feature_names",
            "ret_1,ret_1,ret_5".into(),
            "stockcast.feature_names has \"ret_1\" twice (positions 0 and 1)",
        ),
        (
            "stockcast.feature_names",
            "a,,b".into(),
            "stockcast.feature_names has an empty name at position 1",
        ),
        (
            "stockcast.feature_names",
            "[\"a\", 1]".into(),
            "stockcast.feature_names is not a JSON array of strings",
        ),
        (
            "stockcast.feature_names",
            format!("[{}]", "[".repeat(10_000)),
            "stockcast.feature_names is not a JSON array",
        ),
        (
            "stockcast.horizon_bars",
            "-1".into(),
            "stockcast.horizon_bars \"-1\" must be an integer >= 1",
        ),
        (
            "stockcast.horizon_bars",
            "0".into(),
            "stockcast.horizon_bars \"0\" must be an integer >= 1",
        ),
        (
            "stockcast.horizon_bars",
            "99999999999".into(),
            "must be an integer >= 1",
        ),
        (
            "stockcast.horizon_bars",
            giant.clone(),
            "(+999872 characters)\" must be an integer >= 1",
        ),
        (
            "stockcast.feature_view_version",
            "NaN".into(),
            "stockcast.feature_view_version \"NaN\" must be",
        ),
        (
            "stockcast.output",
            "quantiles".into(),
            "stockcast.output \"quantiles\" must be \"regression\" or",
        ),
        ("stockcast.output", giant, "stockcast.output"),
        (
            "stockcast.target",
            " ".into(),
            "stockcast.target is missing or empty",
        ),
    ];
    for base in ["skl_linear_regression", "lgbm_regressor"] {
        for (key, value, want) in &cases {
            let message = refusal(&with_prop(fixture(base), key, value));
            assert!(message.contains(want), "{base} {key}: {message:.300}");
            assert!(
                message.len() <= 1_024,
                "{base} {key}: {} bytes",
                message.len()
            );
        }
    }
}

#[test]
fn a_non_utf8_contract_value_is_refused() {
    let mut bytes = with_prop(fixture("skl_ridge"), "stockcast.target", "ret_\u{1}");
    let at = bytes.windows(5).position(|w| w == b"ret_\x01").unwrap();
    bytes[at + 4] = 0xff;
    assert!(refusal(&bytes).contains("not an ONNX model"));
    assert!(
        metadata_props(&bytes)
            .unwrap_err()
            .contains("not an ONNX model")
    );
}

#[test]
fn a_graph_input_that_contradicts_the_contract_is_refused() {
    use stockcast_model::proto::{dimension, type_proto};
    for (dims, want) in [
        (vec![Some(7), Some(6)], "has a fixed batch dimension of 7"),
        (vec![None, Some(3)], "has 3 features"),
        (vec![None, Some(1 << 60)], "features"),
        (vec![None, Some(-5)], "has no fixed number of features"),
        (vec![None, Some(i64::MAX)], "features"),
        (vec![None], "has 1 dimensions"),
        (vec![None; 1_000], "has 1000 dimensions"),
    ] {
        let mut model = fixture("skl_linear_regression");
        let input = &mut model.graph.as_mut().unwrap().input[0];
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            panic!("tensor input")
        };
        t.shape.as_mut().unwrap().dim = dims
            .iter()
            .map(|d| stockcast_model::proto::Dimension {
                value: Some(match d {
                    Some(v) => dimension::Value::DimValue(*v),
                    None => dimension::Value::DimParam("N".into()),
                }),
            })
            .collect();
        let message = refusal(&model.encode_to_vec());
        assert!(message.contains(want), "{dims:?}: {message}");
    }
}

#[test]
fn a_huge_declared_tensor_is_refused_naming_it() {
    for (base, dims) in [
        ("skl_mlp_regressor", vec![1i64 << 30, 1 << 30]),
        ("skl_mlp_regressor", vec![1 << 20, 1 << 20, 1 << 20]),
        ("skl_mlp_regressor", vec![i64::MAX, 2]),
        ("skl_mlp_regressor", vec![-1, 8]),
        ("skl_mlp_regressor", vec![8, 1 << 40]),
    ] {
        let mut model = fixture(base);
        let graph = model.graph.as_mut().unwrap();
        assert!(!graph.initializer.is_empty());
        for t in &mut graph.initializer {
            t.dims.clone_from(&dims);
            if dims[0] == 1 << 20 {
                t.raw_data.clear();
                t.float_data.clear();
                t.int64_data.clear();
            }
        }
        let message = refusal(&model.encode_to_vec());
        assert!(
            message.contains("initializer \"coefficient\": dims"),
            "{base} {dims:?}: {message}"
        );
    }
}

#[test]
fn a_contract_in_tags_that_differs_is_reported_briefly() {
    let names = (0..100_000)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let tags = BTreeMap::from([
        ("stockcast.feature_view".to_owned(), "v".to_owned()),
        ("stockcast.feature_view_version".to_owned(), "1".to_owned()),
        ("stockcast.feature_names".to_owned(), names),
        ("stockcast.target".to_owned(), "t".to_owned()),
        ("stockcast.horizon_bars".to_owned(), "1".to_owned()),
    ]);
    let bytes = fixture("skl_ridge").encode_to_vec();
    let error = Model::load_with_tags(&bytes, &tags).unwrap_err();
    assert!(matches!(error, ModelError::Contract(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains("differs"), "{message:.300}");
    assert!(message.len() <= 1_024, "{} bytes", message.len());
}
