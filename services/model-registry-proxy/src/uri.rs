//! Model URIs, parsed the way MLflow parses them: `models:/<name>/<version>`,
//! `models:/<name>@<alias>`, `models:/<name>/latest`, `models:/<name>/<Stage>`.

use std::fmt;

use stockcast_runtime::echo::truncate_for_message;

use crate::registry::canonical_stage;

/// Longest model name, bytes: a name is a file name in the local registry (at most 255
/// bytes on Linux filesystems) and MLflow stores up to 256 characters.
pub const MAX_NAME_LEN: usize = 255;

/// What a model URI points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// A pinned version, >= 1.
    Version(i64),
    /// The version an alias points at.
    Alias(String),
    /// The highest version.
    Latest,
    /// The highest version in a legacy stage (canonical spelling).
    Stage(String),
}

/// A parsed model URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelUri {
    /// Registered model name.
    pub name: String,
    /// Which version.
    pub selector: Selector,
}

impl ModelUri {
    /// Parses `uri`; the error names what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let uri = truncate_for_message(raw);
        let Some(path) = raw.strip_prefix("models:/") else {
            return Err(format!(
                "uri {uri:?} must start with \"models:/\" (e.g. \"models:/daily-return@champion\")"
            ));
        };
        let path = path.trim_start_matches('/');
        if let Some((name, alias)) = path.rsplit_once('@') {
            validate_name(name).map_err(|e| format!("uri {uri:?}: {e}"))?;
            validate_alias(alias).map_err(|e| format!("uri {uri:?}: {e}"))?;
            return Ok(Self {
                name: name.to_owned(),
                selector: Selector::Alias(alias.to_owned()),
            });
        }
        let Some((name, suffix)) = path.split_once('/') else {
            return Err(format!(
                "uri {uri:?} names no version: use models:/<name>/<version>, \
                 models:/<name>@<alias>, models:/<name>/latest or models:/<name>/<stage>"
            ));
        };
        validate_name(name).map_err(|e| format!("uri {uri:?}: {e}"))?;
        let selector = if suffix.bytes().all(|b| b.is_ascii_digit()) && !suffix.is_empty() {
            match suffix.parse::<i64>() {
                Ok(version) if version >= 1 => Selector::Version(version),
                _ => {
                    return Err(format!(
                        "uri {uri:?}: version {} must be >= 1",
                        truncate_for_message(suffix)
                    ));
                }
            }
        } else if suffix.eq_ignore_ascii_case("latest") {
            Selector::Latest
        } else if let Some(stage) = canonical_stage(suffix) {
            Selector::Stage(stage.to_owned())
        } else {
            return Err(format!(
                "uri {uri:?}: {:?} is neither a version number, \"latest\", nor a stage \
                 (None, Staging, Production, Archived)",
                truncate_for_message(suffix)
            ));
        };
        Ok(Self {
            name: name.to_owned(),
            selector,
        })
    }

    /// A URI pinning `version` of `name`.
    pub fn pinned(name: &str, version: i64) -> Self {
        Self {
            name: name.to_owned(),
            selector: Selector::Version(version),
        }
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.selector {
            Selector::Version(v) => write!(f, "models:/{}/{v}", self.name),
            Selector::Alias(a) => write!(f, "models:/{}@{a}", self.name),
            Selector::Latest => write!(f, "models:/{}/latest", self.name),
            Selector::Stage(s) => write!(f, "models:/{}/{s}", self.name),
        }
    }
}

/// Checks a model name: 1..=[`MAX_NAME_LEN`] letters, digits, `.`, `_`, `-`, starting with
/// a letter or digit (names become file names in the local registry).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("model name is empty".to_owned());
    }
    let shown = truncate_for_message(name);
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "model name {shown:?} contains {bad:?}; allowed are letters, digits, '.', '_', '-'"
        ));
    }
    // Only ASCII is left: bytes are characters.
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "model name has {} characters, at most {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!(
            "model name {shown:?} must start with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks an alias as MLflow does: 1..=255 letters, digits, `_`, `-`; not `latest` and not
/// `v<digits>` (those would be ambiguous with versions).
pub fn validate_alias(alias: &str) -> Result<(), String> {
    if alias.is_empty() {
        return Err("alias is empty".to_owned());
    }
    if let Some(bad) = alias
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(format!(
            "alias {:?} contains {bad:?}; allowed are letters, digits, '_', '-'",
            truncate_for_message(alias)
        ));
    }
    // Only ASCII is left: bytes are characters.
    if alias.len() > 255 {
        return Err(format!("alias has {} characters, at most 255", alias.len()));
    }
    let lower = alias.to_ascii_lowercase();
    if lower == "latest" {
        return Err("alias \"latest\" is reserved".to_owned());
    }
    if lower.len() > 1 && lower.starts_with('v') && lower[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "alias {alias:?} is reserved (v<number> names a version)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(uri: &str) -> Selector {
        ModelUri::parse(uri)
            .unwrap_or_else(|e| panic!("{e}"))
            .selector
    }

    #[test]
    fn the_four_forms() {
        assert_eq!(sel("models:/m/3"), Selector::Version(3));
        assert_eq!(
            sel("models:/m@champion"),
            Selector::Alias("champion".into())
        );
        assert_eq!(sel("models:/m/latest"), Selector::Latest);
        assert_eq!(sel("models:/m/LATEST"), Selector::Latest);
        assert_eq!(
            sel("models:/m/production"),
            Selector::Stage("Production".into())
        );
        assert_eq!(
            ModelUri::parse("models:/daily-return.v2@champion")
                .map(|u| u.name)
                .as_deref(),
            Ok("daily-return.v2")
        );
    }

    #[test]
    fn display_round_trips() {
        for uri in [
            "models:/m/3",
            "models:/m@a",
            "models:/m/latest",
            "models:/m/Staging",
        ] {
            assert_eq!(
                ModelUri::parse(uri).map(|u| u.to_string()).as_deref(),
                Ok(uri)
            );
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |uri: &str| ModelUri::parse(uri).err().unwrap_or_default();
        assert!(err("runs:/abc/model").contains("must start with \"models:/\""));
        assert!(err("models:/m").contains("names no version"));
        assert!(err("models:/m/0").contains("must be >= 1"));
        assert!(err("models:/m/prod").contains("neither a version number"));
        assert!(err("models:/@a").contains("model name is empty"));
        assert!(err("models:/m@").contains("alias is empty"));
        assert!(err("models:/m@v3").contains("reserved"));
        assert!(err("models:/a b/1").contains("contains ' '"));
        assert!(err("models:/m/99999999999999999999").contains("must be >= 1"));
        assert!(err(&format!("models:/{}/1", "n".repeat(256))).contains("at most 255"));
        assert!(ModelUri::parse(&format!("models:/{}/1", "n".repeat(255))).is_ok());
        assert!(err("models:/🦀🦀/1").contains("contains '🦀'"));
    }

    #[test]
    fn errors_echo_at_most_a_readable_part_of_the_input() {
        for uri in [
            format!("runs:/{}", "a".repeat(20_000)),
            format!("models:/{}", "a".repeat(20_000)),
            format!("models:/m/{}", "a".repeat(20_000)),
            format!("models:/m/{}", "1".repeat(20_000)),
            format!("models:/m@{}", "a".repeat(20_000)),
            format!("models:/m@{}", "!".repeat(20_000)),
            format!("models:/{}/1", "!".repeat(20_000)),
        ] {
            let error = ModelUri::parse(&uri).err().unwrap_or_default();
            assert!(error.len() < 600, "{} characters: {error}", error.len());
        }
    }
}
