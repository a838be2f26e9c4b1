//! Bad models and bad batches are refused with errors that name the node, attribute or
//! contract key at fault. Each case alters one committed fixture.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use stockcast_model::proto::{self, AttributeProto, ModelProto};
use stockcast_model::{KEY_CLASS_LABELS, KEY_OUTPUT, Model, ModelError};

fn fixture(name: &str) -> ModelProto {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}.onnx"));
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

fn load(model: &ModelProto) -> Result<Model, ModelError> {
    Model::load(&model.encode_to_vec())
}

fn error(model: &ModelProto) -> String {
    load(model).unwrap_err().to_string()
}

fn attribute<'a>(model: &'a mut ModelProto, name: &str) -> &'a mut AttributeProto {
    let graph = model.graph.as_mut().unwrap();
    graph
        .node
        .iter_mut()
        .flat_map(|n| n.attribute.iter_mut())
        .find(|a| a.name == name)
        .unwrap()
}

fn set_prop(model: &mut ModelProto, key: &str, value: &str) {
    model.metadata_props.retain(|p| p.key != key);
    model.metadata_props.push(proto::StringStringEntryProto {
        key: key.into(),
        value: value.into(),
    });
}

#[test]
fn an_unknown_branch_mode_names_the_node_and_attribute() {
    let mut m = fixture("skl_gbr");
    attribute(&mut m, "nodes_modes").strings[3] = b"BRANCH_SOMETIMES".to_vec();
    let err = error(&m);
    assert!(err.contains("(TreeEnsembleRegressor)"), "{err}");
    assert!(
        err.contains("nodes_modes[3] \"BRANCH_SOMETIMES\" is not a branch mode"),
        "{err}"
    );
}

#[test]
fn a_child_that_does_not_exist_is_named() {
    let mut m = fixture("skl_gbr");
    attribute(&mut m, "nodes_truenodeids").ints[0] = 999;
    let err = error(&m);
    assert!(
        err.contains("nodes_truenodeids[0]: tree 0 has no node 999"),
        "{err}"
    );
}

#[test]
fn attribute_lists_of_different_lengths_are_named() {
    let mut m = fixture("lgbm_regressor");
    attribute(&mut m, "nodes_featureids").ints.pop();
    let err = error(&m);
    assert!(err.contains("attribute nodes_featureids has"), "{err}");
}

#[test]
fn a_cycle_in_a_tree_is_refused() {
    let mut m = fixture("hand_tree_ensemble5_agg1_post0");
    // node 2 (root of tree 1) gets node 2 as its true child
    attribute(&mut m, "nodes_trueleafs").ints[2] = 0;
    attribute(&mut m, "nodes_truenodeids").ints[2] = 2;
    let err = error(&m);
    assert!(err.contains("has a cycle"), "{err}");
}

#[test]
fn a_feature_beyond_the_input_is_named() {
    let mut m = fixture("skl_random_forest_regressor");
    attribute(&mut m, "nodes_featureids").ints[0] = 6;
    let err = error(&m);
    assert!(
        err.contains("uses feature 6 but the input has 6 features"),
        "{err}"
    );
}

#[test]
fn unsupported_operators_in_ml_graphs_are_named() {
    let mut m = fixture("lgbm_regressor");
    let graph = m.graph.as_mut().unwrap();
    let identity = graph
        .node
        .iter_mut()
        .find(|n| n.op_type == "Identity")
        .unwrap();
    identity.op_type = "Softplus".into();
    identity.name = "activation".into();
    let err = error(&m);
    assert!(err.contains("node \"activation\" (Softplus)"), "{err}");
    assert!(err.contains("not supported"), "{err}");
}

#[test]
fn the_input_must_match_the_contract() {
    let mut m = fixture("skl_gbr");
    set_prop(&mut m, "stockcast.feature_names", "f0,f1,f2");
    let err = error(&m);
    assert!(
        err.contains("input \"features\" has 6 features")
            && err.contains("3 features in the contract"),
        "{err}"
    );

    let mut m = fixture("skl_gbr");
    let input = &mut m.graph.as_mut().unwrap().input[0];
    let Some(proto::type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!("not a tensor")
    };
    t.shape.as_mut().unwrap().dim[0].value = Some(proto::dimension::Value::DimValue(1));
    let err = error(&m);
    assert!(err.contains("has a fixed batch dimension of 1"), "{err}");
}

#[test]
fn a_model_without_a_contract_is_refused_unless_tags_carry_it() {
    let mut m = fixture("skl_ridge");
    let contract = m.metadata_props.clone();
    m.metadata_props.clear();
    let err = error(&m);
    assert!(err.contains("declares no contract"), "{err}");
    let tags: BTreeMap<String, String> = contract.into_iter().map(|p| (p.key, p.value)).collect();
    let model = Model::load_with_tags(&m.encode_to_vec(), &tags).unwrap();
    assert_eq!(model.n_features(), 6);
}

#[test]
fn a_declared_output_must_agree_with_the_graph() {
    let mut m = fixture("skl_gbc_3class");
    set_prop(&mut m, KEY_OUTPUT, "regression");
    let err = error(&m);
    assert!(
        err.contains("stockcast.output declares \"regression\"") && err.contains("probabilities"),
        "{err}"
    );
    set_prop(&mut m, KEY_OUTPUT, "probabilities");
    set_prop(&mut m, KEY_CLASS_LABELS, "down,flat,up");
    let err = error(&m);
    assert!(
        err.contains("declares class labels [down, flat, up]"),
        "{err}"
    );
    set_prop(&mut m, KEY_CLASS_LABELS, "[0, 1, 2]");
    assert!(load(&m).is_ok());
}

#[test]
fn a_batch_that_is_not_whole_rows_is_refused() {
    let model = load(&fixture("skl_gbr")).unwrap();
    let err = model.run(&[0.0; 7]).unwrap_err().to_string();
    assert!(
        err.contains("7 values are not a whole number of rows of 6 features"),
        "{err}"
    );
    assert!(model.run(&[]).is_err());
    assert_eq!(model.run(&[0.0; 12]).unwrap().rows, 2);
}

#[test]
fn not_onnx_is_refused() {
    let err = Model::load(b"definitely not onnx").unwrap_err();
    assert!(matches!(err, ModelError::NotOnnx(_)), "{err}");
}
