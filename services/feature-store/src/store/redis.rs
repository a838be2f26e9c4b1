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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use fred::bytes::Bytes;
use fred::bytes_utils::Str;
use fred::prelude::{
    Builder, Client, ClientLike, Config, Error as RedisError, ErrorKind, LuaInterface, Pool,
    ReconnectPolicy, TcpConfig, Value,
};
use fred::types::{ClusterHash, CustomCommand};
use fred::util::redis_keyslot;
use serde::{Deserialize, Serialize};
use stockcast_runtime::{ConfigError, Secret};

use super::{OnlineStore, OnlineVector, OnlineWrite, StoreError, Ts, ViewId};

const BACKEND: &str = "redis";

/// Compare-and-set of many keys: `KEYS[i]` gets the value `ARGV[2i-1]` (event time prefix,
/// then the values) with the TTL `ARGV[2i]` ms unless it holds a newer event time. Answers
/// one 1 (written) or 0 (kept) per key, in order.
pub const WRITE_SCRIPT: &str = r"
local applied = {}
for i, key in ipairs(KEYS) do
  local value = ARGV[2 * i - 1]
  local stored = redis.pcall('GET', key)
  local stored_time = type(stored) == 'string' and tonumber(string.sub(stored, 1, 12))
  if stored_time and stored_time > tonumber(string.sub(value, 1, 12)) then
    applied[i] = 0
  else
    redis.call('SET', key, value, 'PX', ARGV[2 * i])
    applied[i] = 1
  end
end
return applied
";

/// Characters of the event time at the start of every value.
pub const TIME_WIDTH: usize = 12;

/// Earliest event time a value can hold (`-` and 11 digits).
pub const MIN_EVENT_TIME: Ts = -99_999_999_999;

/// Latest event time a value can hold (12 digits).
pub const MAX_EVENT_TIME: Ts = 999_999_999_999;

/// Most keys in one `MGET` or one script call, so that no single command keeps Redis busy
/// for long; a larger request is split into several commands of one pipeline.
pub const MAX_KEYS_PER_COMMAND: usize = 1_000;

/// Longest TTL sent to Redis (100 years); longer ones are cut to it.
const MAX_TTL_MS: u128 = 100 * 365 * 86_400 * 1_000;

/// The `[online.redis]`-style settings of the Redis online store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`, or `redis-cluster://host:port` for Redis
    /// Cluster (a secret: it may hold a password). `rediss` for TLS.
    pub url: Secret,
    /// Prefix of every key the service writes; see the module doc for the layout.
    pub key_prefix: String,
    /// Connections in the pool (each one multiplexes many calls).
    pub pool_size: usize,
    /// Longest wait for one call (connect, read or write batch), milliseconds.
    pub timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("redis://127.0.0.1:6379"),
            key_prefix: "stockcast:fs".to_owned(),
            pool_size: 4,
            timeout_ms: 1_000,
        }
    }
}

impl RedisSettings {
    /// Checks the values that parse but cannot work; `section` names where they sit.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let url = self.url.expose();
        const SCHEMES: [&str; 4] = [
            "redis://",
            "rediss://",
            "redis-cluster://",
            "rediss-cluster://",
        ];
        if !SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
            return Err(ConfigError::invalid(
                format!("{section}.url"),
                "must start with redis://, rediss://, redis-cluster:// or rediss-cluster://",
            ));
        }
        if self.key_prefix.is_empty() {
            return Err(ConfigError::invalid(
                format!("{section}.key_prefix"),
                "is empty",
            ));
        }
        if self.pool_size == 0 {
            return Err(ConfigError::invalid(
                format!("{section}.pool_size"),
                "must be greater than 0",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::invalid(
                format!("{section}.timeout_ms"),
                "must be greater than 0",
            ));
        }
        Ok(())
    }

    /// The call timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

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

    /// Splits the positions of `keys` into the groups of one command each: one group per
    /// [`MAX_KEYS_PER_COMMAND`] keys, and on Redis Cluster per hash slot too (with the slot,
    /// to route it). Positions keep their order within a group.
    fn groups(client: &Client, keys: &[String]) -> Vec<Group> {
        if !client.is_clustered() {
            return (0..keys.len())
                .collect::<Vec<_>>()
                .chunks(MAX_KEYS_PER_COMMAND)
                .map(|chunk| Group {
                    slot: None,
                    positions: chunk.to_vec(),
                })
                .collect();
        }
        let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, key) in keys.iter().enumerate() {
            by_slot
                .entry(redis_keyslot(key.as_bytes()))
                .or_default()
                .push(i);
        }
        by_slot
            .into_iter()
            .flat_map(|(slot, positions)| {
                positions
                    .chunks(MAX_KEYS_PER_COMMAND)
                    .map(|chunk| Group {
                        slot: Some(slot),
                        positions: chunk.to_vec(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Sends `commands` in one round trip under the timeout: a single command by itself, more
    /// as one pipeline. One result per command, or the error that failed them all.
    async fn run(
        &self,
        client: &Client,
        mut commands: Vec<(CustomCommand, Vec<Value>)>,
    ) -> Result<Vec<Result<Value, RedisError>>, StoreError> {
        let expected = commands.len();
        if expected == 1
            && let Some((command, args)) = commands.pop()
        {
            return match tokio::time::timeout(self.timeout, client.custom(command, args)).await {
                Ok(result) => Ok(vec![result]),
                Err(_) => Err(timed_out(self.timeout)),
            };
        }
        let pipeline = client.pipeline();
        for (command, args) in commands {
            let _: () = pipeline
                .custom(command, args)
                .await
                .map_err(|e| error(&e))?;
        }
        let results = match tokio::time::timeout(self.timeout, pipeline.try_all::<Value>()).await {
            Ok(results) => results,
            Err(_) => return Err(timed_out(self.timeout)),
        };
        let answered = results.len();
        if answered != expected {
            // The pipeline as a whole failed (connection lost, timeout): one error for all.
            return Err(match results.into_iter().find_map(Result::err) {
                Some(e) => error(&e),
                None => StoreError::Corrupt(format!(
                    "{answered} replies to a pipeline of {expected} commands"
                )),
            });
        }
        Ok(results)
    }

    /// The script command of one group of writes: `EVALSHA sha n key… value ttl…`, or with
    /// `EVAL` and the script's text when `with_text`.
    fn script_command(
        &self,
        group: &Group,
        keys: &[String],
        values: &[Bytes],
        writes: &[OnlineWrite],
        with_text: bool,
    ) -> (CustomCommand, Vec<Value>) {
        let n = group.positions.len();
        let mut args = Vec::with_capacity(2 + 3 * n);
        let (name, script) = if with_text {
            ("EVAL", Str::from_static(WRITE_SCRIPT))
        } else {
            ("EVALSHA", self.script_sha.clone())
        };
        args.push(Value::String(script));
        args.push(Value::Integer(n as i64));
        for &i in &group.positions {
            args.push(Value::from(keys[i].as_str()));
        }
        for &i in &group.positions {
            let ttl_ms = writes[i].ttl.as_millis().clamp(1, MAX_TTL_MS) as i64;
            args.push(Value::Bytes(values[i].clone()));
            args.push(Value::Integer(ttl_ms));
        }
        (
            CustomCommand::new_static(name, cluster_hash(group), false),
            args,
        )
    }
}

/// The positions of the keys that one command carries, and their hash slot on Redis Cluster.
#[derive(Debug)]
struct Group {
    slot: Option<u16>,
    positions: Vec<usize>,
}

/// Routes a group's command to the node of its slot (any node when not clustered).
fn cluster_hash(group: &Group) -> ClusterHash {
    ClusterHash::from(group.slot)
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

/// Stores the script's answer for one group: one 1 or 0 per key, in order.
fn record(applied: &mut [bool], group: &Group, reply: Value) -> Result<(), StoreError> {
    let Value::Array(answers) = reply else {
        return Err(StoreError::Corrupt(format!(
            "write script answered {reply:?}"
        )));
    };
    if answers.len() != group.positions.len() {
        return Err(StoreError::Corrupt(format!(
            "write script answered {} times for {} keys",
            answers.len(),
            group.positions.len()
        )));
    }
    for (&i, answer) in group.positions.iter().zip(answers) {
        applied[i] = match answer {
            Value::Integer(1) => true,
            Value::Integer(0) => false,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "write script answered {other:?} for a key"
                )));
            }
        };
    }
    Ok(())
}

/// A key's value: the event time (see the module doc), then the values.
fn encode(event_time: Ts, values: &[f64]) -> Result<Bytes, StoreError> {
    if !(MIN_EVENT_TIME..=MAX_EVENT_TIME).contains(&event_time) {
        return Err(StoreError::Failed {
            backend: BACKEND,
            reason: format!(
                "event time {event_time} outside {MIN_EVENT_TIME}..={MAX_EVENT_TIME} seconds"
            ),
        });
    }
    let mut time = String::with_capacity(TIME_WIDTH);
    // Writing into a String cannot fail.
    let _ = write!(time, "{event_time:0width$}", width = TIME_WIDTH);
    let mut bytes = Vec::with_capacity(TIME_WIDTH + values.len() * 8);
    bytes.extend_from_slice(time.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    Ok(Bytes::from(bytes))
}

/// One value of an `MGET` reply: `nil` when the key is absent (or holds another type).
fn decode(reply: &Value) -> Result<Option<OnlineVector>, StoreError> {
    if matches!(reply, Value::Null) {
        return Ok(None);
    }
    let bytes = reply
        .as_bytes()
        .ok_or_else(|| StoreError::Corrupt(format!("online value {reply:?}")))?;
    if bytes.len() < TIME_WIDTH || !(bytes.len() - TIME_WIDTH).is_multiple_of(8) {
        return Err(StoreError::Corrupt(format!(
            "online value of {} bytes, not {TIME_WIDTH} + a multiple of 8",
            bytes.len()
        )));
    }
    let (time, values) = bytes.split_at(TIME_WIDTH);
    let event_time = std::str::from_utf8(time)
        .ok()
        .and_then(|s| s.parse::<Ts>().ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "online event time {:?}",
                String::from_utf8_lossy(time)
            ))
        })?;
    let values = values
        .chunks_exact(8)
        .map(|chunk| {
            let mut le = [0u8; 8];
            le.copy_from_slice(chunk);
            f64::from_le_bytes(le)
        })
        .collect();
    Ok(Some(OnlineVector { event_time, values }))
}

/// Runs one call under the store's timeout.
async fn bounded<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(|e| error(&e)),
        Err(_) => Err(timed_out(timeout)),
    }
}

fn timed_out(timeout: Duration) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        reason: format!("no reply within {} ms", timeout.as_millis()),
    }
}

/// Maps a fred error: connection trouble and a server that cannot answer yet are
/// `Unavailable` (retrying later may work), a refused command is `Failed`.
fn error(e: &RedisError) -> StoreError {
    let details = e.details();
    let unavailable = match e.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Backpressure
        | ErrorKind::Routing
        | ErrorKind::Cluster => true,
        ErrorKind::Unknown => {
            let code = details.split_whitespace().next().unwrap_or("");
            let server_code = !code.is_empty()
                && code
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-');
            !server_code || matches!(code, "LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN")
        }
        _ => false,
    };
    let reason = format!("{:?}: {details}", e.kind());
    if unavailable {
        StoreError::Unavailable {
            backend: BACKEND,
            reason,
        }
    } else {
        StoreError::Failed {
            backend: BACKEND,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_and_refuse_unknown_keys() {
        let settings: RedisSettings = serde_json::from_str(r#"{"pool_size": 8}"#).unwrap();
        assert_eq!(settings.pool_size, 8);
        assert_eq!(settings.key_prefix, "stockcast:fs");
        assert_eq!(settings.timeout(), Duration::from_secs(1));
        assert_eq!(settings.url.expose(), "redis://127.0.0.1:6379");
        settings.validate("online.redis").unwrap();
        assert!(serde_json::from_str::<RedisSettings>(r#"{"poolsize": 8}"#).is_err());
    }

    #[test]
    fn settings_hide_the_url_and_name_the_bad_key() {
        let settings = RedisSettings {
            url: Secret::new("redis://:hunter2@cache:6379"),
            ..RedisSettings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert!(
            !serde_json::to_string(&settings)
                .unwrap()
                .contains("hunter2")
        );
        let bad = RedisSettings {
            timeout_ms: 0,
            ..RedisSettings::default()
        };
        let message = bad.validate("online.redis").unwrap_err().to_string();
        assert!(message.contains("online.redis.timeout_ms"), "{message}");
        let bad = RedisSettings {
            url: Secret::new("postgres://x"),
            ..RedisSettings::default()
        };
        let message = bad.validate("online.redis").unwrap_err().to_string();
        assert!(message.contains("online.redis.url"), "{message}");
    }

    #[test]
    fn values_encode_as_documented_and_decode_back() {
        let bytes = encode(1_704_153_600, &[1.0, f64::NAN]).unwrap();
        assert_eq!(&bytes[..TIME_WIDTH], b"001704153600");
        assert_eq!(&bytes[TIME_WIDTH..TIME_WIDTH + 8], &1.0f64.to_le_bytes());
        let vector = decode(&Value::Bytes(bytes)).unwrap().unwrap();
        assert_eq!(vector.event_time, 1_704_153_600);
        assert_eq!(vector.values[0], 1.0);
        assert!(vector.values[1].is_nan());

        for t in [MIN_EVENT_TIME, -3_600, -1, 0, 1, MAX_EVENT_TIME] {
            let bytes = encode(t, &[]).unwrap();
            assert_eq!(bytes.len(), TIME_WIDTH, "{t}");
            // Redis hands a valid UTF-8 value over as a string.
            let text = Str::from_inner(bytes).unwrap();
            let vector = decode(&Value::String(text)).unwrap().unwrap();
            assert_eq!((vector.event_time, vector.values), (t, Vec::new()));
        }
        assert_eq!(&encode(-3_600, &[]).unwrap()[..], b"-00000003600");
        for t in [MIN_EVENT_TIME - 1, MAX_EVENT_TIME + 1, Ts::MIN, Ts::MAX] {
            assert!(
                matches!(encode(t, &[]), Err(StoreError::Failed { .. })),
                "{t}"
            );
        }
    }

    #[test]
    fn replies_decode_or_are_corrupt() {
        assert_eq!(decode(&Value::Null).unwrap(), None);
        let corrupt = [
            Value::Integer(1),
            Value::Bytes(Bytes::from_static(b"00170415360")),
            Value::Bytes(Bytes::from_static(b"001704153600\0\0\0\0\0\0\0")),
            Value::Bytes(Bytes::from_static(b"0017041536x0")),
            Value::Array(vec![Value::Null, Value::Null]),
        ];
        for reply in corrupt {
            assert!(
                matches!(decode(&reply), Err(StoreError::Corrupt(_))),
                "{reply:?}"
            );
        }
        let group = Group {
            slot: None,
            positions: vec![2, 0],
        };
        let mut applied = vec![false; 3];
        record(
            &mut applied,
            &group,
            Value::Array(vec![Value::Integer(1), Value::Integer(0)]),
        )
        .unwrap();
        assert_eq!(applied, vec![false, false, true]);
        for reply in [
            Value::Array(vec![Value::Integer(1)]),
            Value::Array(vec![Value::Integer(1), Value::Integer(2)]),
            Value::Integer(1),
        ] {
            assert!(matches!(
                record(&mut applied, &group, reply),
                Err(StoreError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn server_refusals_fail_and_connection_trouble_is_unavailable() {
        let refused = RedisError::new(ErrorKind::Unknown, "ERR wrong number of arguments");
        assert!(matches!(error(&refused), StoreError::Failed { .. }));
        let wrong_type = RedisError::new(ErrorKind::InvalidArgument, "WRONGTYPE Operation");
        assert!(matches!(error(&wrong_type), StoreError::Failed { .. }));
        let loading = RedisError::new(ErrorKind::Unknown, "LOADING Redis is loading");
        assert!(matches!(error(&loading), StoreError::Unavailable { .. }));
        let io = RedisError::new(ErrorKind::IO, "broken pipe");
        assert!(matches!(error(&io), StoreError::Unavailable { .. }));
        let closed = RedisError::new(ErrorKind::Unknown, "Too many failed write attempts.");
        assert!(matches!(error(&closed), StoreError::Unavailable { .. }));
    }
}
