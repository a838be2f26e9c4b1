//! Steps 3 and 4: the newest vector of every (view, symbol) to the online store (compared
//! on event time inside the store, so it never moves backwards), then the bars, every
//! feature row and the new state snapshots to the offline store in one transaction.

use std::collections::BTreeMap;

use super::Processor;
use crate::error::Error;
use crate::store::{OnlineWrite, WriteBatch};
use crate::view::Ts;

impl Processor {
    /// Writes the newest vector per (view index, symbol); returns how many.
    pub(super) async fn write_online(
        &self,
        newest: BTreeMap<(usize, String), (Ts, Vec<f64>)>,
    ) -> Result<u64, Error> {
        let views = self.catalog.views();
        let writes: Vec<OnlineWrite> = newest
            .into_iter()
            .map(|((vi, symbol), (event_time, values))| OnlineWrite {
                view: views[vi].id.clone(),
                symbol,
                event_time,
                values,
                ttl: views[vi].online_ttl,
            })
            .collect();
        if !writes.is_empty() {
            self.online.write(&writes).await?;
        }
        Ok(writes.len() as u64)
    }

    /// Writes bars, rows and states in one transaction.
    pub(super) async fn write_offline(&self, write: &WriteBatch) -> Result<(), Error> {
        if !write.is_empty() {
            self.offline.write(write).await?;
        }
        Ok(())
    }
}
