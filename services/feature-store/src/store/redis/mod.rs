//! The production online store on Redis (fred).
//!
//! # Key layout
//!
//! One Redis string per (view, version, symbol):
//!
//! ```text
//! {prefix}:{view}:v{version}:{symbol}      e.g. stockcast:fs:default:v1:AAPL
//!   bytes 0..12   event time, seconds since the epoch (UTC), ASCII decimal zero-padded to
//!                 12 characters: 001704153600 (before the epoch: -00000003600)
//!   bytes 12..    the values in the view's feature order, 8 bytes each, little-endian f64
//!                 (NaN = absent, stored bit for bit)
//! ```
//!
//! Event times from -99,999,999,999 to 999,999,999,999 fit (about year -1200 to 33600);
//! a write outside that range fails before anything is sent. The key's expiry is the TTL of
//! the last write that applied (at least 1 ms).
//!
//! # Writes
//!
//! One Lua script ([`WRITE_SCRIPT`]) takes many keys and compares each one on Redis' side:
//! per key it writes the value (`SET … PX ttl`) when the new event time is ≥ the stored one
//! (equal replaces: a recomputed vector) and answers 1; otherwise it leaves the key and its
//! expiry alone and answers 0. A script runs atomically, so no other client sees or changes
//! a key between its compare and its write, and repeats of a key within a batch apply in
//! order. An expired key is gone, so any write applies to it; a key that holds something
//! else (not a string, or no readable event time) is replaced. Event times compare as Lua
//! numbers parsed from the 12-character prefix, exact over the whole range.
//!
//! A batch is one `EVALSHA` per [`MAX_KEYS_PER_COMMAND`] keys (on Redis Cluster: per hash
//! slot, since a script's keys must share one), pipelined: one round trip. The script is
//! loaded at connect; when a node has lost it (a restart, `SCRIPT FLUSH`), the commands
//! answered `NOSCRIPT` did not run, so they are sent again as `EVAL` with the script's
//! text, which also puts it back in that node's cache. (Should another client load the
//! script between two commands of one batch, a later command may apply before an earlier
//! one is sent again: every key still ends at its newest event time, but a repeat of a key
//! more than [`MAX_KEYS_PER_COMMAND`] writes apart may report differently than in order.)
//!
//! # Reads
//!
//! One `MGET` of all the symbols' keys (per [`MAX_KEYS_PER_COMMAND`] keys, and on Redis
//! Cluster per hash slot, pipelined): one command and one reply for a usual request, one
//! round trip for any number of symbols.
//!
//! # Failures
//!
//! Every round trip (connect, a read, a write batch, a script load) is bounded by
//! `timeout_ms`. The pool reconnects with exponential backoff
//! (100 ms to 2 s, forever) after Redis restarts; while no connection is up, calls fail at
//! once with [`StoreError::Unavailable`] instead of waiting, and they work again as soon as
//! a connection is back.

mod codec;
mod commands;
mod settings;

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use fred::bytes_utils::Str;
use fred::prelude::{
    Builder, Client, ClientLike, Config, LuaInterface, Pool, ReconnectPolicy, TcpConfig, Value,
};
use fred::types::CustomCommand;

pub use self::codec::{MAX_EVENT_TIME, MIN_EVENT_TIME, TIME_WIDTH};
use self::codec::{decode, encode, record};
pub use self::commands::{MAX_KEYS_PER_COMMAND, WRITE_SCRIPT};
use self::commands::{bounded, cluster_hash, error, timed_out};
pub use self::settings::RedisSettings;
use super::{OnlineStore, OnlineVector, OnlineWrite, StoreError, ViewId};

const BACKEND: &str = "redis";

/// The online store on Redis: a pool of multiplexed connections and the loaded write script.
#[derive(Debug)]
pub struct RedisOnline {
    pool: Pool,
    prefix: String,
    timeout: Duration,
    /// SHA-1 of [`WRITE_SCRIPT`] as Redis reported it.
    script_sha: Str,
}

impl RedisOnline {
    /// Connects the pool and loads the write script. Fails with
    /// [`StoreError::Unavailable`] when Redis does not answer within the timeout.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        let config = Config::from_url(settings.url.expose()).map_err(|e| StoreError::Failed {
            backend: BACKEND,
            reason: format!("redis url: {}", e.details()),
        })?;
        let timeout = settings.timeout();
        let pool = Builder::from_config(config)
            .with_performance_config(|perf| perf.default_command_timeout = timeout)
            .with_connection_config(|conn| {
                conn.connection_timeout = timeout;
                conn.internal_command_timeout = timeout;
                conn.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..TcpConfig::default()
                };
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build_pool(settings.pool_size.max(1))
            .map_err(|e| error(&e))?;
        let connected = match tokio::time::timeout(timeout, pool.init()).await {
            Ok(Ok(_connection_task)) => Ok(()),
            Ok(Err(e)) => Err(error(&e)),
            Err(_) => Err(timed_out(timeout)),
        };
        if let Err(e) = connected {
            let _ = pool.quit().await;
            return Err(e);
        }
        let mut store = Self {
            pool,
            prefix: settings.key_prefix.clone(),
            timeout,
            script_sha: Str::default(),
        };
        match store.load_script().await {
            Ok(sha) => store.script_sha = sha,
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        }
        Ok(store)
    }

    /// The key of one symbol of one view version (see the module doc).
    pub fn key(&self, view: &ViewId, symbol: &str) -> String {
        let mut key =
            String::with_capacity(self.prefix.len() + view.name.len() + symbol.len() + 16);
        // Writing into a String cannot fail.
        let _ = write!(
            key,
            "{}:{}:v{}:{}",
            self.prefix, view.name, view.version, symbol
        );
        key
    }

    /// Closes every connection of the pool; later calls fail.
    pub async fn close(&self) {
        let _ = self.pool.quit().await;
    }

    /// A connected client, or `Unavailable` at once while every connection is down.
    fn client(&self) -> Result<&Client, StoreError> {
        let client = self.pool.next_connected();
        if client.is_connected() {
            Ok(client)
        } else {
            Err(StoreError::Unavailable {
                backend: BACKEND,
                reason: "not connected (reconnecting)".to_owned(),
            })
        }
    }

    async fn load_script(&self) -> Result<Str, StoreError> {
        let client = self.client()?;
        bounded(self.timeout, client.script_load::<Str, _>(WRITE_SCRIPT)).await
    }
}

impl Drop for RedisOnline {
    fn drop(&mut self) {
        // Stop the reconnect loops of the pool's connections.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = self.pool.clone();
            runtime.spawn(async move {
                let _ = pool.quit().await;
            });
        }
    }
}

#[async_trait]
impl OnlineStore for RedisOnline {
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client()?;
        bounded(self.timeout, client.ping::<()>(None)).await
    }

    async fn write(&self, writes: &[OnlineWrite]) -> Result<Vec<bool>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        // Every value is encoded before anything is sent: a bad one fails the whole batch.
        let values = writes
            .iter()
            .map(|w| encode(w.event_time, &w.values))
            .collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<String> = writes
            .iter()
            .map(|w| self.key(&w.view, &w.symbol))
            .collect();
        let client = self.client()?;
        let groups = Self::groups(client, &keys);
        let mut applied = vec![false; writes.len()];

        let commands = groups
            .iter()
            .map(|g| self.script_command(g, &keys, &values, writes, false))
            .collect();
        let mut missing = Vec::new();
        for (group, result) in groups.iter().zip(self.run(client, commands).await?) {
            match result {
                Ok(reply) => record(&mut applied, group, reply)?,
                Err(e) if e.details().starts_with("NOSCRIPT") => missing.push(group),
                Err(e) => return Err(error(&e)),
            }
        }
        if missing.is_empty() {
            return Ok(applied);
        }
        tracing::info!(
            commands = missing.len(),
            "redis lost the online write script, sending it again"
        );
        let commands = missing
            .iter()
            .map(|g| self.script_command(g, &keys, &values, writes, true))
            .collect();
        for (group, result) in missing.iter().zip(self.run(client, commands).await?) {
            record(&mut applied, group, result.map_err(|e| error(&e))?)?;
        }
        Ok(applied)
    }

    async fn read(
        &self,
        view: &ViewId,
        symbols: &[String],
    ) -> Result<Vec<Option<OnlineVector>>, StoreError> {
        if symbols.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = symbols.iter().map(|s| self.key(view, s)).collect();
        let client = self.client()?;
        let groups = Self::groups(client, &keys);
        let commands = groups
            .iter()
            .map(|group| {
                let args = group
                    .positions
                    .iter()
                    .map(|&i| Value::from(keys[i].as_str()))
                    .collect();
                (
                    CustomCommand::new_static("MGET", cluster_hash(group), false),
                    args,
                )
            })
            .collect();
        let mut read = vec![None; symbols.len()];
        for (group, result) in groups.iter().zip(self.run(client, commands).await?) {
            let reply = result.map_err(|e| error(&e))?;
            let Value::Array(replies) = reply else {
                return Err(StoreError::Corrupt(format!("MGET answered {reply:?}")));
            };
            if replies.len() != group.positions.len() {
                return Err(StoreError::Corrupt(format!(
                    "MGET of {} keys answered {} values",
                    group.positions.len(),
                    replies.len()
                )));
            }
            for (&i, reply) in group.positions.iter().zip(replies) {
                read[i] = decode(&reply)?;
            }
        }
        Ok(read)
    }
}
