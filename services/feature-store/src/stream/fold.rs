//! Step 2, second half: per symbol, drop redelivered bars, fold the new ones into each view
//! of their interval (or recompute the history when a bar is late or corrected), and
//! collect what steps 3 and 4 write.

use std::collections::BTreeMap;

use stockcast_market::{Bar, Interval};

use super::decode::{Groups, Incoming};
use super::restore::{Restored, StoredBars};
use super::{BatchStats, Processor};
use crate::error::Error;
use crate::store::{FeatureRow, StateSnapshot, StoreError, ViewWrite, WriteBatch};
use crate::view::{Ts, View, ViewState};

/// What one batch writes.
pub(super) struct Folded {
    /// The offline transaction: bars, rows and states.
    pub(super) write: WriteBatch,
    /// The newest vector per (view index in the catalog, symbol), for the online store.
    pub(super) newest: BTreeMap<(usize, String), (Ts, Vec<f64>)>,
}

impl Processor {
    /// Folds every group of the batch into its views.
    pub(super) async fn fold(
        &mut self,
        groups: Groups,
        mut restored: Restored,
        stored: &StoredBars,
        stats: &mut BatchStats,
    ) -> Result<Folded, Error> {
        let catalog = std::sync::Arc::clone(&self.catalog);
        let mut write = WriteBatch::default();
        let mut view_writes: BTreeMap<usize, ViewWrite> = BTreeMap::new();
        let mut newest = BTreeMap::new();
        for ((symbol, interval), incoming) in groups {
            let pos = restored
                .positions
                .get(&(symbol.clone(), interval))
                .copied()
                .flatten();
            let (fresh, revisions) = fresh_bars(&symbol, interval, incoming, pos, stored, stats);
            let Some(first_ts) = fresh.first().map(|b| b.ts) else {
                continue;
            };
            for (vi, view) in catalog.views().iter().enumerate() {
                if view.interval != interval {
                    continue;
                }
                let key = (vi, symbol.clone());
                let vw = view_writes.entry(vi).or_insert_with(|| ViewWrite {
                    view: view.id.clone(),
                    rows: Vec::new(),
                    states: Vec::new(),
                    keep_existing: false,
                });
                let state = restored
                    .states
                    .remove(&key)
                    .unwrap_or_else(|| view.new_state());
                let late = state.last_bar_ts.is_some_and(|p| first_ts <= p);
                let state = if late {
                    stats.recomputes += 1;
                    crate::metrics::recomputed(&view.id);
                    let (state, rows) = self.recompute(view, &symbol, &fresh, first_ts).await?;
                    vw.rows.extend(rows);
                    state
                } else {
                    fold_in(view, &symbol, state, &fresh, &mut vw.rows)
                };
                if let Some(last) = vw.rows.iter().rev().find(|r| r.symbol == symbol) {
                    newest.insert(key.clone(), (last.event_time, last.values.clone()));
                }
                let bytes = state.to_bytes();
                vw.states.push(StateSnapshot {
                    symbol: symbol.clone(),
                    last_bar_ts: state.last_bar_ts.unwrap_or(Ts::MIN),
                    bars_seen: state.bars_seen,
                    state: bytes.clone(),
                });
                self.cache.insert(key, (state, bytes));
            }
            // Keep `revisions` aligned with `bars`.
            write.revisions.resize(write.bars.len(), 0);
            write.bars.extend(fresh);
            write.revisions.extend(revisions);
        }
        stats.bars = write.bars.len() as u64;
        stats.rows = view_writes.values().map(|v| v.rows.len() as u64).sum();
        write.views = view_writes.into_values().collect();
        Ok(Folded { write, newest })
    }

    /// Recomputes `symbol`'s history with `fresh` merged over the stored bars, returning the
    /// final state and the rows of bars opened at or after `from`.
    async fn recompute(
        &self,
        view: &View,
        symbol: &str,
        fresh: &[Bar],
        from: Ts,
    ) -> Result<(ViewState, Vec<FeatureRow>), StoreError> {
        let mut overrides: BTreeMap<Ts, &Bar> = fresh.iter().map(|b| (b.ts, b)).collect();
        let mut state = view.new_state();
        let mut out = vec![0.0; view.features.len()];
        let mut rows = Vec::new();
        let mut emit = |state: &mut ViewState, bar: &Bar, rows: &mut Vec<FeatureRow>| {
            view.update(state, bar, &mut out);
            if bar.ts >= from {
                rows.push(FeatureRow {
                    symbol: symbol.to_owned(),
                    event_time: view.event_time(bar.ts),
                    values: out.clone(),
                });
            }
        };
        self.stored(view, symbol, (Ts::MIN, Ts::MAX), |bar| {
            // Fresh bars opened before this stored one come first.
            while let Some(entry) = overrides.first_entry() {
                if *entry.key() >= bar.ts {
                    break;
                }
                let b = entry.remove();
                emit(&mut state, b, &mut rows);
            }
            match overrides.remove(&bar.ts) {
                Some(b) => emit(&mut state, b, &mut rows),
                None => emit(&mut state, bar, &mut rows),
            }
        })
        .await?;
        while let Some((_, b)) = overrides.pop_first() {
            emit(&mut state, b, &mut rows);
        }
        Ok((state, rows))
    }
}

/// The bars of one (symbol, interval) that are new: redeliveries within the batch collapse
/// (the highest revision of a key wins, the last event among equal ones), bars equal to the
/// stored ones or older than them (a lower revision) are dropped; the rest in time order,
/// with their revisions. Counts the dropped ones as duplicates.
fn fresh_bars(
    symbol: &str,
    interval: Interval,
    incoming: Vec<Incoming>,
    pos: Option<Ts>,
    stored: &StoredBars,
    stats: &mut BatchStats,
) -> (Vec<Bar>, Vec<i32>) {
    let mut latest: BTreeMap<Ts, (Bar, i32)> = BTreeMap::new();
    for Incoming { bar, revision } in incoming {
        if let Some((prev, prev_revision)) = latest.get(&bar.ts)
            && (revision < *prev_revision || prev.same_values(&bar))
        {
            stats.duplicates += 1;
            continue;
        }
        latest.insert(bar.ts, (bar, revision));
    }
    let mut fresh: Vec<Bar> = Vec::with_capacity(latest.len());
    let mut revisions: Vec<i32> = Vec::with_capacity(latest.len());
    for (ts, (bar, revision)) in latest {
        if pos.is_some_and(|p| ts <= p)
            && stored
                .get(&(symbol.to_owned(), interval, ts))
                .is_some_and(|(s, r)| revision < *r || s.same_values(&bar))
        {
            stats.duplicates += 1;
            continue;
        }
        fresh.push(bar);
        revisions.push(revision);
    }
    (fresh, revisions)
}

/// Folds `fresh` (all after the state's last bar) into `state`, appending a row per bar.
fn fold_in(
    view: &View,
    symbol: &str,
    mut state: ViewState,
    fresh: &[Bar],
    rows: &mut Vec<FeatureRow>,
) -> ViewState {
    let mut out = vec![0.0; view.features.len()];
    for bar in fresh {
        view.update(&mut state, bar, &mut out);
        rows.push(FeatureRow {
            symbol: symbol.to_owned(),
            event_time: view.event_time(bar.ts),
            values: out.clone(),
        });
    }
    state
}
