//! Step 2, first half: restore each view's engine state of every symbol in the batch (from
//! memory when it matches the stored snapshot, else from the snapshot, else by replaying
//! the stored bars), and read the stored bars a redelivery may repeat.

use std::collections::{BTreeMap, HashMap};

use stockcast_market::{Bar, Interval};
use tracing::{info, warn};

use super::Processor;
use super::decode::Groups;
use crate::error::Error;
use crate::store::{StateSnapshot, StoreError, for_each_bar};
use crate::view::{Ts, View, ViewState};

/// The engine states of a batch's symbols, before its bars are folded in.
pub(super) struct Restored {
    /// By (view index in the catalog, symbol).
    pub(super) states: HashMap<(usize, String), ViewState>,
    /// The furthest state position per (symbol, interval): bars up to it may be
    /// redeliveries.
    pub(super) positions: HashMap<(String, Interval), Option<Ts>>,
}

/// Stored bars (with their revisions) at the keys of a batch that may be redeliveries.
pub(super) type StoredBars = HashMap<(String, Interval, Ts), (Bar, i32)>;

impl Processor {
    /// Restores the state of every view of every (symbol, interval) in `groups`.
    pub(super) async fn restore(&mut self, groups: &Groups) -> Result<Restored, Error> {
        let catalog = std::sync::Arc::clone(&self.catalog);
        let mut intervals: BTreeMap<Interval, Vec<String>> = BTreeMap::new();
        for (symbol, interval) in groups.keys() {
            intervals.entry(*interval).or_default().push(symbol.clone());
        }
        let mut restored = Restored {
            states: HashMap::new(),
            positions: HashMap::new(),
        };
        for (interval, symbols) in &intervals {
            for (vi, view) in catalog.views().iter().enumerate() {
                if view.interval != *interval {
                    continue;
                }
                let snapshots = self.offline.states(&view.id, symbols).await?;
                let by_symbol: HashMap<&str, &StateSnapshot> =
                    snapshots.iter().map(|s| (s.symbol.as_str(), s)).collect();
                for symbol in symbols {
                    let key = (vi, symbol.clone());
                    let state = match by_symbol.get(symbol.as_str()) {
                        Some(snap) => self.resume(&key, view, snap).await?,
                        // No snapshot: a new symbol, or a view version added later; its
                        // state must reflect every stored bar, as the others' do.
                        None => self.replay(view, symbol).await?,
                    };
                    let pos = restored
                        .positions
                        .entry((symbol.clone(), *interval))
                        .or_insert(state.last_bar_ts);
                    // Bars up to the furthest position may be redeliveries.
                    *pos = (*pos).max(state.last_bar_ts);
                    restored.states.insert(key, state);
                }
            }
        }
        Ok(restored)
    }

    /// The state of `key` given its stored snapshot: the cached one while it matches, else
    /// the snapshot caught up with the bars stored after it, else a replay.
    async fn resume(
        &mut self,
        key: &(usize, String),
        view: &View,
        snap: &StateSnapshot,
    ) -> Result<ViewState, StoreError> {
        let symbol = key.1.as_str();
        match self.cache.remove(key) {
            // Ours, unless another consumer moved it since (a rebalance).
            Some((cached, bytes)) if bytes == snap.state => Ok(cached),
            _ => match ViewState::from_bytes(view, &snap.state) {
                Ok(mut s) => {
                    // Bars stored after the snapshot (its view version was not served for a
                    // while) are folded in, never skipped.
                    self.catch_up(view, symbol, &mut s).await?;
                    Ok(s)
                }
                Err(e) => {
                    warn!(view = %view.id, symbol, error = %e, "unusable state snapshot; replaying history");
                    self.replay(view, symbol).await
                }
            },
        }
    }

    /// The stored bars at the keys of `groups` at or before their position, which may be
    /// redeliveries.
    pub(super) async fn stored_bars(
        &self,
        groups: &Groups,
        positions: &HashMap<(String, Interval), Option<Ts>>,
    ) -> Result<StoredBars, Error> {
        let mut candidates: BTreeMap<Interval, Vec<(String, Ts)>> = BTreeMap::new();
        for ((symbol, interval), incoming) in groups {
            let Some(Some(pos)) = positions.get(&(symbol.clone(), *interval)) else {
                continue;
            };
            for i in incoming.iter().filter(|i| i.bar.ts <= *pos) {
                candidates
                    .entry(*interval)
                    .or_default()
                    .push((symbol.clone(), i.bar.ts));
            }
        }
        let mut stored = StoredBars::new();
        for (interval, keys) in &candidates {
            for bar in self.offline.bars_at(*interval, keys).await? {
                stored.insert((bar.0.symbol.clone(), bar.0.interval, bar.0.ts), bar);
            }
        }
        Ok(stored)
    }

    /// Replays every stored bar of `symbol` into a fresh state, page by page.
    async fn replay(&self, view: &View, symbol: &str) -> Result<ViewState, StoreError> {
        let mut state = view.new_state();
        let mut out = vec![0.0; view.features.len()];
        self.stored(view, symbol, (Ts::MIN, Ts::MAX), |bar| {
            view.update(&mut state, bar, &mut out)
        })
        .await?;
        if state.bars_seen > 0 {
            info!(view = %view.id, symbol, bars = state.bars_seen, "state rebuilt from stored bars");
        }
        Ok(state)
    }

    /// Folds the stored bars opened after `state`'s last bar into it.
    async fn catch_up(
        &self,
        view: &View,
        symbol: &str,
        state: &mut ViewState,
    ) -> Result<(), StoreError> {
        let Some(last) = state.last_bar_ts else {
            return Ok(());
        };
        let mut out = vec![0.0; view.features.len()];
        let range = (last.saturating_add(1), Ts::MAX);
        let n = self
            .stored(view, symbol, range, |bar| view.update(state, bar, &mut out))
            .await?;
        if n > 0 {
            info!(view = %view.id, symbol, bars = n, "state caught up with bars stored after its snapshot");
        }
        Ok(())
    }

    /// Calls `f` with every stored bar of `symbol` at the view's interval with
    /// `from <= ts < until`, in time order, a page (`stream.replay_page`) at a time.
    pub(super) async fn stored(
        &self,
        view: &View,
        symbol: &str,
        range: (Ts, Ts),
        f: impl FnMut(&Bar),
    ) -> Result<i64, StoreError> {
        let page = self.settings.replay_page;
        for_each_bar(self.offline.as_ref(), symbol, view.interval, range, page, f).await
    }
}
