//! The embedded online store: the latest vector per (view, version, symbol) in a map.
//!
//! It keeps Redis' semantics so that the embedded default and production behave alike:
//! a write applies unless the key holds a *newer* event time (an equal one is replaced),
//! each write sets the key's expiry to its TTL, and an expired key reads as absent and no
//! longer blocks older writes (in Redis it is gone). Expired entries are dropped on the
//! next write to their key, and swept from the whole map every [`SWEEP_EVERY`] writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

use async_trait::async_trait;

use super::{OnlineStore, OnlineVector, OnlineWrite, StoreError, ViewId};

/// Writes between two sweeps of expired entries.
pub const SWEEP_EVERY: usize = 4_096;

#[derive(Debug, Clone)]
struct Entry {
    event_time: super::Ts,
    values: Vec<f64>,
    /// `None` when the TTL is too long to represent (never expires).
    expires_at: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// View version → symbol → entry; nested so that a read looks up by `&ViewId` and `&str`
/// without building a key.
type Entries = HashMap<ViewId, HashMap<String, Entry>>;

/// The in-memory online store of the embedded default.
#[derive(Debug, Default)]
pub struct MemoryOnline {
    entries: RwLock<Entries>,
    writes_since_sweep: AtomicUsize,
}

impl MemoryOnline {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn sweep(entries: &mut Entries, now: Instant) {
        entries.retain(|_, symbols| {
            symbols.retain(|_, entry| entry.live(now));
            !symbols.is_empty()
        });
    }
}

#[async_trait]
impl OnlineStore for MemoryOnline {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn write(&self, writes: &[OnlineWrite]) -> Result<Vec<bool>, StoreError> {
        let now = Instant::now();
        let mut applied = Vec::with_capacity(writes.len());
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        for write in writes {
            let expires_at = now.checked_add(write.ttl);
            let symbols = match entries.get_mut(&write.view) {
                Some(symbols) => symbols,
                None => entries.entry(write.view.clone()).or_default(),
            };
            let apply = match symbols.get_mut(write.symbol.as_str()) {
                Some(entry) if entry.live(now) && entry.event_time > write.event_time => false,
                Some(entry) => {
                    entry.event_time = write.event_time;
                    entry.values.clone_from(&write.values);
                    entry.expires_at = expires_at;
                    true
                }
                None => {
                    symbols.insert(
                        write.symbol.clone(),
                        Entry {
                            event_time: write.event_time,
                            values: write.values.clone(),
                            expires_at,
                        },
                    );
                    true
                }
            };
            applied.push(apply);
        }
        let since = self
            .writes_since_sweep
            .fetch_add(writes.len(), Ordering::Relaxed)
            + writes.len();
        if since >= SWEEP_EVERY {
            self.writes_since_sweep.store(0, Ordering::Relaxed);
            Self::sweep(&mut entries, now);
        }
        Ok(applied)
    }

    async fn read(
        &self,
        view: &ViewId,
        symbols: &[String],
    ) -> Result<Vec<Option<OnlineVector>>, StoreError> {
        let now = Instant::now();
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let Some(stored) = entries.get(view) else {
            return Ok(vec![None; symbols.len()]);
        };
        Ok(symbols
            .iter()
            .map(|symbol| {
                stored
                    .get(symbol.as_str())
                    .filter(|entry| entry.live(now))
                    .map(|entry| OnlineVector {
                        event_time: entry.event_time,
                        values: entry.values.clone(),
                    })
            })
            .collect())
    }
}
