//! Resolutions remembered for a short TTL (and served stale while the registry is down),
//! with a generation per model that every alias change bumps. A resolve notes the
//! generation before asking the registry and stores its answer only if the generation is
//! still the same: an answer read before a change, arriving after it, is not remembered.

use std::collections::HashMap;
use std::time::Instant;

use super::VersionView;
use crate::uri::ModelUri;

/// One remembered answer.
#[derive(Debug, Clone)]
pub(super) struct Remembered {
    pub(super) view: VersionView,
    /// When it was obtained, for the TTL.
    pub(super) at: Instant,
    /// When it was obtained, ms since epoch (told to callers served from it).
    pub(super) at_ms: i64,
}

#[derive(Debug, Default)]
pub(super) struct Resolutions {
    entries: HashMap<ModelUri, Remembered>,
    generations: HashMap<String, u64>,
}

impl Resolutions {
    pub(super) fn generation(&self, model: &str) -> u64 {
        self.generations.get(model).copied().unwrap_or(0)
    }

    /// The answer remembered for `uri`, however old.
    pub(super) fn get(&self, uri: &ModelUri) -> Option<&Remembered> {
        self.entries.get(uri)
    }

    /// Remembers `remembered` for `uri` if no change of its model happened since
    /// `generation` was read. Returns whether it was remembered.
    pub(super) fn remember(
        &mut self,
        uri: &ModelUri,
        generation: u64,
        remembered: Remembered,
    ) -> bool {
        if self.generation(&uri.name) != generation {
            return false;
        }
        self.entries.insert(uri.clone(), remembered);
        true
    }

    pub(super) fn forget(&mut self, model: &str) {
        self.entries.retain(|uri, _| uri.name != model);
        let generation = self.generations.entry(model.to_owned()).or_insert(0);
        *generation = generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::VersionInfo;

    fn remembered(version: i64) -> Remembered {
        Remembered {
            view: VersionView {
                info: VersionInfo {
                    name: "daily-return".to_owned(),
                    version,
                    ..VersionInfo::default()
                },
                contract: None,
                sha256: String::new(),
                size: 0,
                format: None,
            },
            at: Instant::now(),
            at_ms: 0,
        }
    }

    fn uri(text: &str) -> ModelUri {
        ModelUri::parse(text).unwrap()
    }

    #[test]
    fn a_lookup_that_began_before_an_alias_change_is_not_remembered() {
        let mut resolutions = Resolutions::default();
        let champion = uri("models:/daily-return@champion");
        // A resolve begins and reads the registry (version 1)...
        let generation = resolutions.generation("daily-return");
        // ...meanwhile the alias moves to version 2 and the model's resolutions are forgotten...
        resolutions.forget("daily-return");
        // ...then the slow resolve finishes with what it read before the change.
        assert!(!resolutions.remember(&champion, generation, remembered(1)));
        assert!(!resolutions.entries.contains_key(&champion));
        // A resolve that begins after the change is remembered.
        let generation = resolutions.generation("daily-return");
        assert!(resolutions.remember(&champion, generation, remembered(2)));
        assert_eq!(
            resolutions
                .entries
                .get(&champion)
                .map(|r| r.view.info.version),
            Some(2)
        );
    }

    #[test]
    fn a_change_of_another_model_does_not_discard_a_lookup() {
        let mut resolutions = Resolutions::default();
        let champion = uri("models:/daily-return@champion");
        let generation = resolutions.generation("daily-return");
        resolutions.forget("volatility");
        assert!(resolutions.remember(&champion, generation, remembered(1)));
        assert!(resolutions.entries.contains_key(&champion));
    }

    #[test]
    fn forgetting_a_model_drops_its_resolutions_only() {
        let mut resolutions = Resolutions::default();
        let daily = uri("models:/daily-return/1");
        let other = uri("models:/volatility/3");
        assert!(resolutions.remember(&daily, 0, remembered(1)));
        assert!(resolutions.remember(&other, 0, remembered(3)));
        resolutions.forget("daily-return");
        assert!(!resolutions.entries.contains_key(&daily));
        assert!(resolutions.entries.contains_key(&other));
    }
}
