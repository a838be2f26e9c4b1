//! The model contract: what a model's input is (feature view, version, ordered feature
//! names) and what it predicts (target, horizon), declared in ONNX `metadata_props` or in
//! registry version tags under the `stockcast.*` keys.

use std::collections::BTreeMap;

/// Key of the feature view name, in `metadata_props` or version tags.
pub const KEY_FEATURE_VIEW: &str = "stockcast.feature_view";
/// Key of the feature view version (an integer >= 1).
pub const KEY_FEATURE_VIEW_VERSION: &str = "stockcast.feature_view_version";
/// Key of the ordered feature names: comma-separated, or a JSON array of strings.
pub const KEY_FEATURE_NAMES: &str = "stockcast.feature_names";
/// Key of the prediction target, e.g. `log_return`.
pub const KEY_TARGET: &str = "stockcast.target";
/// Key of the horizon in bars (an integer >= 1).
pub const KEY_HORIZON_BARS: &str = "stockcast.horizon_bars";

/// A model's input contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// Feature view name.
    pub feature_view: String,
    /// Feature view version, >= 1.
    pub feature_view_version: i32,
    /// Features in input order.
    pub feature_names: Vec<String>,
    /// What the model predicts.
    pub target: String,
    /// Horizon in bars, >= 1.
    pub horizon_bars: i32,
}

impl Contract {
    /// The contract declared in `props` (ONNX metadata or version tags): `Ok(None)` when no
    /// contract key is present, an error naming the key when one is missing or malformed.
    pub fn from_props(
        props: &BTreeMap<String, String>,
        place: &str,
    ) -> Result<Option<Self>, String> {
        let keys = [
            KEY_FEATURE_VIEW,
            KEY_FEATURE_VIEW_VERSION,
            KEY_FEATURE_NAMES,
            KEY_TARGET,
            KEY_HORIZON_BARS,
        ];
        if !keys.iter().any(|k| props.contains_key(*k)) {
            return Ok(None);
        }
        let get = |key: &str| -> Result<&str, String> {
            props
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{place} declare a contract but {key} is missing or empty"))
        };
        let positive = |key: &str| -> Result<i32, String> {
            let raw = get(key)?;
            match raw.parse::<i32>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!(
                    "{place}: {key} {} must be an integer >= 1",
                    echo(raw)
                )),
            }
        };
        let names_raw = get(KEY_FEATURE_NAMES)?;
        let feature_names: Vec<String> = if names_raw.starts_with('[') {
            serde_json::from_str(names_raw).map_err(|e| {
                format!("{place}: {KEY_FEATURE_NAMES} is not a JSON array of strings: {e}")
            })?
        } else {
            names_raw.split(',').map(|s| s.trim().to_owned()).collect()
        };
        if let Some(i) = feature_names.iter().position(|n| n.is_empty()) {
            return Err(format!(
                "{place}: {KEY_FEATURE_NAMES} has an empty name at position {i}"
            ));
        }
        // A name twice would feed one feature value to two inputs, or leave the caller to
        // guess which position it names.
        let mut seen = std::collections::HashMap::with_capacity(feature_names.len());
        for (i, name) in feature_names.iter().enumerate() {
            if let Some(first) = seen.insert(name.as_str(), i) {
                return Err(format!(
                    "{place}: {KEY_FEATURE_NAMES} has {} twice (positions {first} and {i})",
                    echo(name)
                ));
            }
        }
        Ok(Some(Self {
            feature_view: get(KEY_FEATURE_VIEW)?.to_owned(),
            feature_view_version: positive(KEY_FEATURE_VIEW_VERSION)?,
            feature_names,
            target: get(KEY_TARGET)?.to_owned(),
            horizon_bars: positive(KEY_HORIZON_BARS)?,
        }))
    }

    /// The contract as `metadata_props` / tags.
    pub fn to_props(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (KEY_FEATURE_VIEW.to_owned(), self.feature_view.clone()),
            (
                KEY_FEATURE_VIEW_VERSION.to_owned(),
                self.feature_view_version.to_string(),
            ),
            (KEY_FEATURE_NAMES.to_owned(), self.feature_names.join(",")),
            (KEY_TARGET.to_owned(), self.target.clone()),
            (KEY_HORIZON_BARS.to_owned(), self.horizon_bars.to_string()),
        ])
    }
}

/// Optional key declaring what a model outputs: `regression` or `probabilities`. Without
/// it the output kind is inferred from the graph.
pub const KEY_OUTPUT: &str = "stockcast.output";
/// Optional key with the class labels of a `probabilities` model, in column order:
/// comma-separated, or a JSON array of strings or integers.
pub const KEY_CLASS_LABELS: &str = "stockcast.class_labels";

/// Class labels of a classifier, in the order of its probability columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassLabels {
    /// Integer labels (`classlabels_int64s`).
    Int64(Vec<i64>),
    /// String labels (`classlabels_strings`).
    Strings(Vec<String>),
}

impl ClassLabels {
    /// Number of classes.
    pub fn len(&self) -> usize {
        match self {
            Self::Int64(l) => l.len(),
            Self::Strings(l) => l.len(),
        }
    }

    /// Whether there is no class.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels as strings.
    pub fn to_strings(&self) -> Vec<String> {
        match self {
            Self::Int64(l) => l.iter().map(i64::to_string).collect(),
            Self::Strings(l) => l.clone(),
        }
    }
}

impl std::fmt::Display for ClassLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]", self.to_strings().join(", "))
    }
}

/// What a model's primary output holds, per row of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// Predicted values, `targets` per row (1 for a single target).
    Regression {
        /// Values per row.
        targets: usize,
    },
    /// One probability per class, in the order of `labels`.
    Probabilities {
        /// Class labels, one per column.
        labels: ClassLabels,
    },
}

impl std::fmt::Display for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Regression { targets } => write!(f, "regression ({targets} value(s) per row)"),
            Self::Probabilities { labels } => write!(f, "probabilities of classes {labels}"),
        }
    }
}

/// A declared output: the kind (`regression` or `probabilities`) and the class labels.
pub type DeclaredOutput = (String, Option<Vec<String>>);

/// What `props` declare about the output (`stockcast.output`, `stockcast.class_labels`):
/// `Ok(None)` when nothing is declared. Labels are compared as strings with the graph's.
pub fn declared_output(
    props: &BTreeMap<String, String>,
    place: &str,
) -> Result<Option<DeclaredOutput>, String> {
    let kind = props.get(KEY_OUTPUT).map(|v| v.trim().to_owned());
    let labels = match props.get(KEY_CLASS_LABELS).map(|v| v.trim()) {
        None => None,
        Some(raw) if raw.starts_with('[') => {
            let values: Vec<serde_json::Value> = serde_json::from_str(raw)
                .map_err(|e| format!("{place}: {KEY_CLASS_LABELS} is not a JSON array: {e}"))?;
            Some(
                values
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect(),
            )
        }
        Some(raw) => Some(raw.split(',').map(|s| s.trim().to_owned()).collect()),
    };
    match kind.as_deref() {
        None if labels.is_some() => Err(format!(
            "{place}: {KEY_CLASS_LABELS} is set but {KEY_OUTPUT} is not \"probabilities\""
        )),
        None => Ok(None),
        Some("regression") if labels.is_some() => Err(format!(
            "{place}: {KEY_CLASS_LABELS} is set but {KEY_OUTPUT} is \"regression\""
        )),
        Some(k @ ("regression" | "probabilities")) => Ok(Some((k.to_owned(), labels))),
        Some(other) => Err(format!(
            "{place}: {KEY_OUTPUT} {} must be \"regression\" or \"probabilities\"",
            echo(other)
        )),
    }
}

/// The contract of a version: ONNX `metadata_props` first, version tags otherwise; both
/// present and different is an error.
pub fn contract_of(
    onnx_props: Option<&BTreeMap<String, String>>,
    tags: &BTreeMap<String, String>,
) -> Result<Option<Contract>, String> {
    let from_onnx = match onnx_props {
        Some(props) => Contract::from_props(props, "ONNX metadata_props")?,
        None => None,
    };
    let from_tags = Contract::from_props(tags, "version tags")?;
    match (from_onnx, from_tags) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "the contract in version tags ({}) differs from the one in ONNX metadata_props \
             ({})",
            brief(&b),
            brief(&a)
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// Characters of a declared value repeated in a message; longer values are cut.
const ECHOED_CHARS: usize = 128;

/// `value` quoted for a message, cut after 128 characters, so that a message never grows
/// with a hostile value.
pub(crate) fn echo(value: &str) -> String {
    match value.char_indices().nth(ECHOED_CHARS) {
        None => format!("{value:?}"),
        Some((end, _)) => {
            let rest = value[end..].chars().count();
            format!("{:?}", format!("{}…(+{rest} characters)", &value[..end]))
        }
    }
}

/// A contract in a few words: view, version and feature names (at most five shown).
fn brief(c: &Contract) -> String {
    let mut names: Vec<String> = c.feature_names.iter().take(5).map(|n| echo(n)).collect();
    if c.feature_names.len() > 5 {
        names.push(format!("… {} names in all", c.feature_names.len()));
    }
    format!(
        "{}@{} [{}]",
        echo(&c.feature_view),
        c.feature_view_version,
        names.join(", ")
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn contract() -> Contract {
        Contract {
            feature_view: "default".into(),
            feature_view_version: 2,
            feature_names: vec!["ret_1".into(), "rsi_14".into()],
            target: "log_return".into(),
            horizon_bars: 1,
        }
    }

    #[test]
    fn contract_errors_name_the_key() {
        let mut props = contract().to_props();
        props.insert(KEY_HORIZON_BARS.into(), "soon".into());
        let err = Contract::from_props(&props, "version tags").unwrap_err();
        assert!(
            err.contains("stockcast.horizon_bars \"soon\" must be an integer >= 1"),
            "{err}"
        );
        props.remove(KEY_TARGET);
        let err = Contract::from_props(&props, "version tags").unwrap_err();
        assert!(err.contains("stockcast.target is missing"), "{err}");
        assert_eq!(Contract::from_props(&BTreeMap::new(), "t"), Ok(None));
    }

    #[test]
    fn json_feature_names_and_precedence() {
        let mut tags = contract().to_props();
        tags.insert(KEY_FEATURE_NAMES.into(), r#"["ret_1", "rsi_14"]"#.into());
        assert_eq!(contract_of(None, &tags), Ok(Some(contract())));
        let onnx = contract().to_props();
        assert_eq!(
            contract_of(Some(&onnx), &BTreeMap::new()),
            Ok(Some(contract()))
        );
        tags.insert(KEY_FEATURE_NAMES.into(), "rsi_14,ret_1".into());
        assert!(
            contract_of(Some(&onnx), &tags)
                .unwrap_err()
                .contains("differs")
        );
    }
}
