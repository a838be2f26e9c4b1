//! Feature views: named, versioned, ordered lists of features of one symbol, computed from
//! bars of one interval, and the streaming engine that computes them.
//!
//! A view is declared in configuration ([`ViewSpec`], [`spec`]) and compiled into a
//! [`View`] ([`compiler`]). The engine state of one symbol ([`ViewState`], [`engine`]) is
//! O(1) to update per bar and serializes to JSON, so the stream processor can snapshot it
//! with every committed batch. Computing a series with [`View::compute`] (batch) drives the
//! same streaming code, so both agree bit for bit. The served versions form the
//! [`Catalog`] ([`catalog`]).
//!
//! Times are seconds since the epoch, UTC ([`Ts`]). A feature vector's event time is the
//! close time of the last bar it includes (open time + interval). An absent value (inside
//! an indicator's warm-up) is NaN.

pub mod catalog;
pub mod compiler;
pub mod engine;
pub mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use stockcast_market::Interval;

pub use self::catalog::Catalog;
pub use self::compiler::ViewError;
pub use self::engine::ViewState;
pub use self::spec::{FeatureSpec, INDICATORS, ViewSpec, default_view};

/// Seconds since the epoch, UTC.
pub type Ts = i64;

/// One version of one feature view.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewId {
    /// View name, e.g. `default`.
    pub name: String,
    /// Version, ≥ 1.
    pub version: i32,
}

impl ViewId {
    /// The id of `name` version `version`.
    pub fn new(name: impl Into<String>, version: i32) -> Self {
        Self {
            name: name.into(),
            version,
        }
    }
}

impl fmt::Display for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:v{}", self.name, self.version)
    }
}

/// A compiled feature view.
#[derive(Debug, Clone)]
pub struct View {
    /// Name and version.
    pub id: ViewId,
    /// Whether this version is served for version 0.
    pub current: bool,
    /// What the view is for.
    pub description: String,
    /// Bar interval.
    pub interval: Interval,
    /// STALE threshold.
    pub max_age: Duration,
    /// Online store expiry.
    pub online_ttl: Duration,
    /// Features in vector order.
    pub features: Vec<Feature>,
    /// Bars needed before every feature is present (max lookback + 1).
    pub warmup_bars: usize,
    /// Feature names in vector order.
    pub names: Vec<String>,
    /// When this version was first served (recorded in the offline store); `None` until the
    /// service has registered it.
    pub created_at: Option<Ts>,
    /// The canonical definition (JSON of the spec without `current`/`description`), recorded
    /// in the offline store so that a changed definition under an old version is refused.
    pub definition: String,
}

/// One compiled feature.
#[derive(Debug, Clone)]
pub struct Feature {
    /// Feature name.
    pub name: String,
    /// Indicator name.
    pub indicator: String,
    /// Parameters with defaults filled in.
    pub params: BTreeMap<String, String>,
    /// Bars needed before the first value (TA-Lib lookback + 1).
    pub lookback_bars: usize,
    /// Meaning and unit.
    pub description: String,
    pub(crate) kind: engine::Kind,
}

/// What a vector read for a view is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureStatus {
    /// There is no vector.
    NotFound,
    /// Older than the view's `max_age`.
    Stale,
    /// Fresh, but some value is still inside its indicator's warm-up (NaN).
    WarmingUp,
    /// Fresh and complete.
    Present,
}

impl View {
    /// The status of a vector with event time `event_time` and `values`, read at `now`:
    /// STALE when older than `max_age` (whatever its values), else WARMING_UP while a value
    /// is absent, else PRESENT.
    pub fn status(&self, event_time: Ts, values: &[f64], now: Ts) -> FeatureStatus {
        let age = now.saturating_sub(event_time);
        if age > self.max_age.as_secs() as i64 {
            FeatureStatus::Stale
        } else if values.iter().any(|x| x.is_nan()) {
            FeatureStatus::WarmingUp
        } else {
            FeatureStatus::Present
        }
    }
}

/// Which values of a vector are present (not NaN); empty when all are.
pub fn presence(values: &[f64]) -> Vec<bool> {
    if values.iter().any(|x| x.is_nan()) {
        values.iter().map(|x| !x.is_nan()).collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_stale_past_max_age_then_warming_up_while_a_value_is_absent() {
        let view = View::compile(&default_view()).unwrap();
        let max_age = view.max_age.as_secs() as i64;
        let t = 1_700_000_000;
        assert_eq!(view.status(t, &[1.0], t + max_age), FeatureStatus::Present);
        assert_eq!(
            view.status(t, &[f64::NAN], t + max_age),
            FeatureStatus::WarmingUp
        );
        assert_eq!(
            view.status(t, &[f64::NAN], t + max_age + 1),
            FeatureStatus::Stale
        );
        assert_eq!(view.status(t, &[1.0], Ts::MIN), FeatureStatus::Present);
        assert_eq!(presence(&[1.0, 2.0]), Vec::<bool>::new());
        assert_eq!(presence(&[1.0, f64::NAN]), vec![true, false]);
    }
}
