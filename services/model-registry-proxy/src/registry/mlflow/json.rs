//! MLflow's JSON: the answers of the REST API 2.0 and their conversion to the registry's
//! types.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::registry::{ModelInfo, RegistryError, VersionInfo};

/// An integer MLflow sends as a number or a string (versions are strings).
fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct TagJson {
    pub(super) key: String,
    pub(super) value: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AliasJson {
    pub(super) alias: String,
    #[serde(deserialize_with = "int")]
    pub(super) version: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RegisteredModelJson {
    pub(super) name: String,
    pub(super) description: Option<String>,
    #[serde(deserialize_with = "int")]
    pub(super) creation_timestamp: i64,
    #[serde(deserialize_with = "int")]
    pub(super) last_updated_timestamp: i64,
    pub(super) latest_versions: Vec<ModelVersionJson>,
    pub(super) tags: Vec<TagJson>,
    pub(super) aliases: Vec<AliasJson>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ModelVersionJson {
    pub(super) name: String,
    #[serde(deserialize_with = "int")]
    pub(super) version: i64,
    #[serde(deserialize_with = "int")]
    pub(super) creation_timestamp: i64,
    #[serde(deserialize_with = "int")]
    pub(super) last_updated_timestamp: i64,
    pub(super) description: Option<String>,
    pub(super) current_stage: Option<String>,
    pub(super) source: String,
    pub(super) run_id: Option<String>,
    pub(super) tags: Vec<TagJson>,
    pub(super) aliases: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct RegisteredModelAnswer {
    pub(super) registered_model: RegisteredModelJson,
}

#[derive(Deserialize)]
pub(super) struct ModelVersionAnswer {
    pub(super) model_version: ModelVersionJson,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct VersionsAnswer {
    pub(super) model_versions: Vec<ModelVersionJson>,
    pub(super) next_page_token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct FileJson {
    pub(super) path: String,
    pub(super) is_dir: bool,
}

#[derive(Deserialize)]
pub(super) struct RunAnswer {
    pub(super) run: RunJson,
}

#[derive(Deserialize)]
pub(super) struct RunJson {
    pub(super) info: RunInfoJson,
}

#[derive(Deserialize)]
pub(super) struct RunInfoJson {
    pub(super) run_id: String,
    pub(super) artifact_uri: String,
}

fn tags(tags: Vec<TagJson>) -> BTreeMap<String, String> {
    tags.into_iter().map(|t| (t.key, t.value)).collect()
}

impl From<RegisteredModelJson> for ModelInfo {
    fn from(m: RegisteredModelJson) -> Self {
        Self {
            latest_version: m
                .latest_versions
                .iter()
                .map(|v| v.version)
                .max()
                .unwrap_or(0),
            name: m.name,
            description: m.description.unwrap_or_default(),
            aliases: m
                .aliases
                .into_iter()
                .map(|a| (a.alias, a.version))
                .collect(),
            tags: tags(m.tags),
            created_at_ms: m.creation_timestamp,
            updated_at_ms: m.last_updated_timestamp,
        }
    }
}

impl TryFrom<ModelVersionJson> for VersionInfo {
    type Error = RegistryError;

    fn try_from(v: ModelVersionJson) -> Result<Self, RegistryError> {
        if v.version < 1 {
            return Err(RegistryError::Internal(format!(
                "model {:?}: mlflow sent version {}",
                v.name, v.version
            )));
        }
        let mut aliases = v.aliases;
        aliases.sort();
        Ok(Self {
            name: v.name,
            version: v.version,
            aliases,
            tags: tags(v.tags),
            description: v.description.unwrap_or_default(),
            stage: v.current_stage.unwrap_or_else(|| "None".to_owned()),
            source: v.source,
            run_id: v.run_id.unwrap_or_default(),
            created_at_ms: v.creation_timestamp,
            updated_at_ms: v.last_updated_timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_arrive_as_strings() {
        let v: ModelVersionJson = serde_json::from_str(
            r#"{"name":"m","version":"7","creation_timestamp":1,"tags":[{"key":"a","value":"b"}],"aliases":["z","a"]}"#,
        )
        .unwrap_or_default();
        let info = VersionInfo::try_from(v).unwrap_or_default();
        assert_eq!(info.version, 7);
        assert_eq!(info.aliases, vec!["a", "z"]);
        assert_eq!(info.stage, "None");
    }
}
