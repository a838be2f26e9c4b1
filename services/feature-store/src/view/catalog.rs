//! The served view versions.

use std::collections::BTreeSet;

use stockcast_market::Interval;
use stockcast_runtime::echo::truncate_for_message;

use super::{View, ViewError, ViewSpec};
use crate::error::Error;

/// Every served view version, by name and version.
#[derive(Debug, Clone)]
pub struct Catalog {
    views: Vec<View>,
}

impl Catalog {
    /// Compiles the declared views; refuses duplicates and more than one current version
    /// per name.
    pub fn new(specs: &[ViewSpec]) -> Result<Self, ViewError> {
        let mut views: Vec<View> = specs.iter().map(View::compile).collect::<Result<_, _>>()?;
        views.sort_by(|a, b| a.id.cmp(&b.id));
        for pair in views.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(ViewError {
                    view: pair[0].id.to_string(),
                    what: "declared twice".to_owned(),
                });
            }
        }
        let names: BTreeSet<String> = views.iter().map(|v| v.id.name.clone()).collect();
        for name in names {
            let marked: Vec<i32> = views
                .iter()
                .filter(|v| v.id.name == name && v.current)
                .map(|v| v.id.version)
                .collect();
            if marked.len() > 1 {
                return Err(ViewError {
                    view: name,
                    what: format!("versions {marked:?} are all marked current; mark one"),
                });
            }
            if marked.is_empty()
                && let Some(last) = views.iter_mut().filter(|v| v.id.name == name).last()
            {
                last.current = true;
            }
        }
        Ok(Self { views })
    }

    /// Every view version, ordered by name then version.
    pub fn views(&self) -> &[View] {
        &self.views
    }

    /// Every view version, to fill in what the stores know (creation times).
    pub fn views_mut(&mut self) -> &mut [View] {
        &mut self.views
    }

    /// The view `name` at `version`, or its current version for 0.
    pub fn get(&self, name: &str, version: i32) -> Option<&View> {
        self.views
            .iter()
            .find(|v| v.id.name == name && (v.id.version == version || (version == 0 && v.current)))
    }

    /// The view `name` at `version` (its current version for 0); NOT_FOUND names the served
    /// versions.
    pub fn find(&self, name: &str, version: i32) -> Result<&View, Error> {
        self.get(name, version).ok_or_else(|| {
            let known: Vec<String> = self.views.iter().map(|v| v.id.to_string()).collect();
            Error::NotFound(if version == 0 {
                format!(
                    "feature view {:?} is not served (served: {})",
                    truncate_for_message(name),
                    known.join(", ")
                )
            } else {
                format!(
                    "feature view {:?} version {version} is not served (served: {})",
                    truncate_for_message(name),
                    known.join(", ")
                )
            })
        })
    }

    /// One page of the views: `size` from position `start`, of every version or only the
    /// current ones; and the position of the next page, if there is one.
    pub fn page(
        &self,
        all_versions: bool,
        start: usize,
        size: usize,
    ) -> (Vec<&View>, Option<usize>) {
        let views: Vec<&View> = self
            .views
            .iter()
            .filter(|v| all_versions || v.current)
            .collect();
        let page: Vec<&View> = views.iter().skip(start).take(size).copied().collect();
        let next = start + page.len();
        (page, (next < views.len()).then_some(next))
    }

    /// Views computed from bars of `interval`.
    pub fn for_interval(&self, interval: Interval) -> impl Iterator<Item = &View> {
        self.views.iter().filter(move |v| v.interval == interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::default_view;

    #[test]
    fn catalog_resolves_current_versions() {
        let v1 = default_view();
        let mut v2 = default_view();
        v2.version = 2;
        v2.current = false;
        v2.features.pop();
        let catalog = Catalog::new(&[v1.clone(), v2.clone()]).unwrap();
        assert_eq!(catalog.get("default", 0).unwrap().id.version, 1);
        assert_eq!(catalog.get("default", 2).unwrap().features.len(), 15);
        assert!(catalog.get("default", 3).is_none());
        let mut v1b = v1.clone();
        v1b.current = false;
        let catalog = Catalog::new(&[v1b, v2.clone()]).unwrap();
        assert_eq!(catalog.get("default", 0).unwrap().id.version, 2);
        let mut v2c = v2;
        v2c.current = true;
        assert!(Catalog::new(&[v1, v2c]).is_err());
    }
}
