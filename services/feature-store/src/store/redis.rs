//! The production online store on Redis (fred).
//!
//! # Key layout
//!
//! One Redis hash per (view, version, symbol):
//!
//! ```text
//! {prefix}:{view}:v{version}:{symbol}      e.g. stockcast:fs:default:v1:AAPL
//!   t  event time, decimal seconds since the epoch (UTC)
//!   v  the values in the view's feature order, 8 bytes each, little-endian f64
//!      (NaN = absent, stored bit for bit)
//! ```
//!
//! The key's expiry is the TTL of the last write that applied.
//!
//! # Writes
//!
//! Each key is written by one Lua script ([`WRITE_SCRIPT`]), so the comparison happens
//! atomically on Redis' side: it writes `t` and `v` when the new event time is ≥ the stored
//! one (equal replaces: a recomputed vector), sets the expiry, and returns 1; otherwise it
//! leaves the key and its expiry alone and returns 0. An expired key is gone, so any write
//! applies to it. A batch is one pipeline of `EVALSHA`, one round trip. The script is loaded
//! at connect; when Redis has lost it (a restart, `SCRIPT FLUSH`), the writes answered
//! `NOSCRIPT` did not run, so they are sent again after loading it.
//!
//! Event times compare as Lua numbers (doubles): exact for |t| < 2^53 seconds.
//!
//! # Reads
//!
//! One pipeline of `HMGET key t v` per symbol, one round trip for any number of symbols.
//!
//! # Failures
//!
//! Every round trip (connect, a read, a write batch, a script load) is bounded by
//! `timeout_ms`. The pool reconnects with exponential backoff
//! (100 ms to 2 s, forever) after Redis restarts; while no connection is up, calls fail at
//! once with [`StoreError::Unavailable`] instead of waiting, and they work again as soon as
//! a connection is back.

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use fred::bytes::Bytes;
use fred::bytes_utils::Str;
use fred::clients::Pipeline;
use fred::prelude::{
    Builder, Client, ClientLike, Config, Error as RedisError, ErrorKind, HashesInterface, Key,
    LuaInterface, Pool, ReconnectPolicy, TcpConfig, Value,
};
use fred::types::{ClusterHash, CustomCommand, MultipleKeys};
use serde::{Deserialize, Serialize};
use stockcast_runtime::{ConfigError, Secret};

use super::{OnlineStore, OnlineVector, OnlineWrite, StoreError, Ts, ViewId};

const BACKEND: &str = "redis";

/// Compare-and-set of one key: `KEYS[1]` the key, `ARGV` = event time, values, TTL in ms.
pub const WRITE_SCRIPT: &str = r"
local stored = redis.call('HGET', KEYS[1], 't')
if stored and tonumber(stored) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 't', ARGV[1], 'v', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Longest TTL sent to Redis (100 years); longer ones are cut to it.
const MAX_TTL_MS: u128 = 100 * 365 * 86_400 * 1_000;

/// How often a batch is sent again after Redis answered `NOSCRIPT`.
const SCRIPT_RELOADS: usize = 2;

/// The `[online.redis]`-style settings of the Redis online store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` (a secret: it may hold a password).
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
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(ConfigError::invalid(
                format!("{section}.url"),
                "must start with redis:// or rediss://",
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

    async fn write_once(
        &self,
        client: &Client,
        writes: &[OnlineWrite],
        pending: &[usize],
    ) -> Result<Vec<Result<Value, RedisError>>, StoreError> {
        let pipeline = client.pipeline();
        for &i in pending {
            let write = &writes[i];
            let mut values = Vec::with_capacity(write.values.len() * 8);
            for value in &write.values {
                values.extend_from_slice(&value.to_le_bytes());
            }
            let ttl_ms = write.ttl.as_millis().min(MAX_TTL_MS) as i64;
            // EVALSHA sha 1 key t v ttl (fred's pipelines take scripts as custom commands).
            let args = vec![
                Value::String(self.script_sha.clone()),
                Value::Integer(1),
                Value::from(self.key(&write.view, &write.symbol)),
                Value::Integer(write.event_time),
                Value::Bytes(Bytes::from(values)),
                Value::Integer(ttl_ms),
            ];
            let _: () = pipeline
                .custom(evalsha(), args)
                .await
                .map_err(|e| error(&e))?;
        }
        self.send(&pipeline, pending.len()).await
    }

    /// Sends a pipeline of `expected` commands in one round trip under the timeout: one
    /// result per command, or the error that failed the whole pipeline.
    async fn send(
        &self,
        pipeline: &Pipeline<Client>,
        expected: usize,
    ) -> Result<Vec<Result<Value, RedisError>>, StoreError> {
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
        let client = self.client()?;
        let mut applied = vec![false; writes.len()];
        let mut pending: Vec<usize> = (0..writes.len()).collect();
        for attempt in 0..=SCRIPT_RELOADS {
            let results = self.write_once(client, writes, &pending).await?;
            let mut missing = Vec::new();
            for (&i, result) in pending.iter().zip(results) {
                match result {
                    Ok(Value::Integer(n)) => applied[i] = n == 1,
                    Ok(other) => {
                        return Err(StoreError::Corrupt(format!(
                            "write script answered {other:?}"
                        )));
                    }
                    Err(e) if e.details().starts_with("NOSCRIPT") => missing.push(i),
                    Err(e) => return Err(error(&e)),
                }
            }
            if missing.is_empty() {
                return Ok(applied);
            }
            if attempt < SCRIPT_RELOADS {
                tracing::info!(
                    keys = missing.len(),
                    "redis lost the online write script, loading it again"
                );
                self.load_script().await?;
            }
            pending = missing;
        }
        Err(StoreError::Failed {
            backend: BACKEND,
            reason: format!(
                "NOSCRIPT after loading the write script {} times",
                SCRIPT_RELOADS
            ),
        })
    }

    async fn read(
        &self,
        view: &ViewId,
        symbols: &[String],
    ) -> Result<Vec<Option<OnlineVector>>, StoreError> {
        if symbols.is_empty() {
            return Ok(Vec::new());
        }
        const FIELDS: [Key; 2] = [Key::from_static_str("t"), Key::from_static_str("v")];
        let client = self.client()?;
        let pipeline = client.pipeline();
        for symbol in symbols {
            let _: () = pipeline
                .hmget(self.key(view, symbol), MultipleKeys::from(FIELDS.to_vec()))
                .await
                .map_err(|e| error(&e))?;
        }
        self.send(&pipeline, symbols.len())
            .await?
            .into_iter()
            .map(|result| decode(result.map_err(|e| error(&e))?))
            .collect()
    }
}

/// `EVALSHA`, routed in a cluster by its key (argument 2: after the hash and the key count).
fn evalsha() -> CustomCommand {
    CustomCommand::new_static("EVALSHA", ClusterHash::Offset(2), false)
}

/// One `HMGET key t v` reply: `[nil, nil]` when the key is absent.
fn decode(reply: Value) -> Result<Option<OnlineVector>, StoreError> {
    let Value::Array(fields) = reply else {
        return Err(StoreError::Corrupt(format!("HMGET answered {reply:?}")));
    };
    let [t, v] = <[Value; 2]>::try_from(fields)
        .map_err(|f| StoreError::Corrupt(format!("HMGET answered {} fields", f.len())))?;
    match (t, v) {
        (Value::Null, Value::Null) => Ok(None),
        (t, v) => {
            let event_time = event_time(&t)?;
            let bytes = v
                .as_bytes()
                .ok_or_else(|| StoreError::Corrupt(format!("online values {v:?}")))?;
            if bytes.len() % 8 != 0 {
                return Err(StoreError::Corrupt(format!(
                    "online values of {} bytes, not a multiple of 8",
                    bytes.len()
                )));
            }
            let values = bytes
                .chunks_exact(8)
                .map(|chunk| {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(chunk);
                    f64::from_le_bytes(le)
                })
                .collect();
            Ok(Some(OnlineVector { event_time, values }))
        }
    }
}

fn event_time(value: &Value) -> Result<Ts, StoreError> {
    match value {
        Value::Integer(t) => Ok(*t),
        other => other
            .as_bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<Ts>().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("online event time {other:?}"))),
    }
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
    fn replies_decode_or_are_corrupt() {
        let values: Vec<u8> = [1.0f64, f64::NAN]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let reply = Value::Array(vec![
            Value::String(Str::from("1704153600")),
            Value::Bytes(Bytes::from(values)),
        ]);
        let vector = decode(reply).unwrap().unwrap();
        assert_eq!(vector.event_time, 1_704_153_600);
        assert_eq!(vector.values[0], 1.0);
        assert!(vector.values[1].is_nan());
        assert_eq!(
            decode(Value::Array(vec![Value::Null, Value::Null])).unwrap(),
            None
        );
        let short = Value::Array(vec![
            Value::Integer(1),
            Value::Bytes(Bytes::from_static(&[0; 7])),
        ]);
        assert!(matches!(decode(short), Err(StoreError::Corrupt(_))));
        let half = Value::Array(vec![Value::Null, Value::Bytes(Bytes::new())]);
        assert!(matches!(decode(half), Err(StoreError::Corrupt(_))));
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
