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
                _ => Err(format!("{place}: {key} {raw:?} must be an integer >= 1")),
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
            "the contract in version tags ({}@{} {:?}) differs from the one in ONNX \
             metadata_props ({}@{} {:?})",
            b.feature_view,
            b.feature_view_version,
            b.feature_names,
            a.feature_view,
            a.feature_view_version,
            a.feature_names
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
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
