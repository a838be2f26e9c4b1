//! MLflow's `MLmodel` file: the one key the proxy needs from it, the ONNX file its `onnx`
//! flavor names (`flavors: onnx: data:`), read from bytes that come from outside (a local
//! directory or an MLflow server) and may be anything.

/// Largest `MLmodel` read, bytes: MLflow writes a few hundred.
pub const MAX_MLMODEL_BYTES: usize = 1 << 20;

/// Why an `MLmodel` names no ONNX file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlmodelError {
    /// Larger than [`MAX_MLMODEL_BYTES`].
    #[error("its MLmodel is {0} bytes, more than the {MAX_MLMODEL_BYTES} an MLmodel may have")]
    TooLarge(usize),
    /// Not UTF-8 text.
    #[error("its MLmodel is not UTF-8 text (invalid byte at offset {0})")]
    NotText(usize),
    /// No `flavors:` section with an `onnx:` flavor.
    #[error("its MLmodel has no onnx flavor (flavors: onnx:)")]
    NoOnnxFlavor,
    /// The `onnx` flavor has no non-empty `data:`.
    #[error("the onnx flavor of its MLmodel names no data file (data:)")]
    NoData,
}

/// The `MLmodel` file of MLflow's ONNX flavor for `onnx_file`.
pub fn mlmodel_for(onnx_file: &str) -> String {
    format!(
        "flavors:\n  onnx:\n    code: null\n    data: {onnx_file}\n    onnx_version: 1.17.0\n  \
         python_function:\n    data: {onnx_file}\n    env:\n      virtualenv: python_env.yaml\n    \
         loader_module: mlflow.onnx\n    python_version: 3.11.0\nmlflow_version: 2.20.0\n"
    )
}

/// The ONNX file an `MLmodel` file names in its `onnx` flavor (`data:`). The path is as
/// written: callers confine it.
pub fn onnx_file_of_mlmodel(bytes: &[u8]) -> Result<String, MlmodelError> {
    if bytes.len() > MAX_MLMODEL_BYTES {
        return Err(MlmodelError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| MlmodelError::NotText(e.valid_up_to()))?;
    // A small reader for the one key needed. MLflow writes block YAML with two-space
    // indentation.
    let mut in_flavors = false;
    let mut onnx_indent: Option<usize> = None;
    let mut onnx_seen = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            in_flavors = trimmed.starts_with("flavors:");
            onnx_indent = None;
            continue;
        }
        if !in_flavors {
            continue;
        }
        match onnx_indent {
            Some(level) if indent > level => {
                if let Some(value) = trimmed.strip_prefix("data:") {
                    let value = value.trim().trim_matches(['"', '\'']);
                    return if value.is_empty() {
                        Err(MlmodelError::NoData)
                    } else {
                        Ok(value.to_owned())
                    };
                }
            }
            _ => {
                onnx_indent = (trimmed.trim_end() == "onnx:").then_some(indent);
                onnx_seen |= onnx_indent.is_some();
            }
        }
    }
    Err(if onnx_seen {
        MlmodelError::NoData
    } else {
        MlmodelError::NoOnnxFlavor
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn mlmodel_names_its_onnx_file() {
        assert_eq!(
            onnx_file_of_mlmodel(mlmodel_for("model.onnx").as_bytes()).as_deref(),
            Ok("model.onnx")
        );
        let written_by_mlflow = "artifact_path: model\nflavors:\n  python_function:\n    data: other.bin\n    loader_module: mlflow.onnx\n  onnx:\n    code: null\n    data: 'net.onnx'\n    onnx_version: 1.17.0\nmodel_uuid: 1\n";
        assert_eq!(
            onnx_file_of_mlmodel(written_by_mlflow.as_bytes()).as_deref(),
            Ok("net.onnx")
        );
        assert_eq!(
            onnx_file_of_mlmodel(b"flavors:\n  sklearn:\n    data: model.pkl\n"),
            Err(MlmodelError::NoOnnxFlavor)
        );
    }

    #[test]
    fn what_is_wrong_is_said_precisely() {
        assert_eq!(
            onnx_file_of_mlmodel(b"flavors:\r\n  onnx:\r\n    data: m.onnx\r\n").as_deref(),
            Ok("m.onnx")
        );
        assert_eq!(
            onnx_file_of_mlmodel(b"flavors:\n  onnx:\n    code: null\n"),
            Err(MlmodelError::NoData)
        );
        assert_eq!(
            onnx_file_of_mlmodel(b"flavors:\n  onnx:\n    data: ''\n"),
            Err(MlmodelError::NoData)
        );
        assert_eq!(
            onnx_file_of_mlmodel(b"flavors:\n  onnx:\n    data: \xff\n"),
            Err(MlmodelError::NotText(27))
        );
        assert_eq!(onnx_file_of_mlmodel(b""), Err(MlmodelError::NoOnnxFlavor));
        let huge = vec![b' '; MAX_MLMODEL_BYTES + 1];
        assert_eq!(
            onnx_file_of_mlmodel(&huge),
            Err(MlmodelError::TooLarge(MAX_MLMODEL_BYTES + 1))
        );
        assert!(
            MlmodelError::NotText(3)
                .to_string()
                .contains("not UTF-8 text (invalid byte at offset 3)")
        );
    }

    /// Lines an `MLmodel` is made of, well-formed or not.
    fn line() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("flavors:".to_owned()),
            Just("onnx:".to_owned()),
            Just("data:".to_owned()),
            Just("python_function:".to_owned()),
            Just("#".to_owned()),
            "[a-z_]{1,8}:",
            ".{0,12}",
        ];
        let value = prop_oneof![
            Just(String::new()),
            Just(" model.onnx".to_owned()),
            Just(" '/etc/passwd'".to_owned()),
            Just(" \"../x\"".to_owned()),
            Just(" {data: a}".to_owned()),
            " .{0,16}",
        ];
        (
            prop_oneof![Just(0usize), Just(2), Just(4), 0..9usize],
            key,
            value,
        )
            .prop_map(|(indent, key, value)| format!("{}{key}{value}", " ".repeat(indent)))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic_and_any_answer_is_in_the_input(
            bytes in prop::collection::vec(any::<u8>(), 0..2048),
        ) {
            match onnx_file_of_mlmodel(&bytes) {
                Ok(file) => {
                    prop_assert!(!file.is_empty());
                    let text = String::from_utf8_lossy(&bytes);
                    prop_assert!(text.contains(file.as_str()));
                }
                Err(error) => prop_assert!(!error.to_string().is_empty()),
            }
        }

        #[test]
        fn yaml_like_lines_never_panic_and_name_a_file_only_under_the_onnx_flavor(
            lines in prop::collection::vec(line(), 0..24),
            newline in prop_oneof![Just("\n"), Just("\r\n"), Just("\t\n")],
        ) {
            let text = lines.join(newline);
            match onnx_file_of_mlmodel(text.as_bytes()) {
                Ok(file) => {
                    prop_assert!(!file.is_empty());
                    prop_assert!(text.contains(file.as_str()));
                    prop_assert!(text.contains("flavors:") && text.contains("onnx:"));
                }
                Err(error) => prop_assert!(
                    matches!(error, MlmodelError::NoOnnxFlavor | MlmodelError::NoData),
                    "{error}"
                ),
            }
        }

        #[test]
        fn a_written_mlmodel_names_its_file(file in "[A-Za-z0-9._-]{1,64}") {
            prop_assume!(!file.starts_with(['\'', '"']));
            prop_assert_eq!(onnx_file_of_mlmodel(mlmodel_for(&file).as_bytes()), Ok(file));
        }
    }
}
