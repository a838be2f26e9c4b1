//! The commands of one batch: keys grouped into commands (per size and, on Redis Cluster,
//! per hash slot), sent in one round trip under the timeout, and Redis' errors mapped to
//! store errors.

use std::collections::BTreeMap;
use std::time::Duration;

use fred::bytes::Bytes;
use fred::bytes_utils::Str;
use fred::prelude::{Client, ClientLike, Error as RedisError, ErrorKind, Value};
use fred::types::{ClusterHash, CustomCommand};
use fred::util::redis_keyslot;

use super::{BACKEND, RedisOnline};
use crate::store::{OnlineWrite, StoreError};

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

/// Most keys in one `MGET` or one script call, so that no single command keeps Redis busy
/// for long; a larger request is split into several commands of one pipeline.
pub const MAX_KEYS_PER_COMMAND: usize = 1_000;

/// Longest TTL sent to Redis (100 years); longer ones are cut to it.
const MAX_TTL_MS: u128 = 100 * 365 * 86_400 * 1_000;

impl RedisOnline {
    /// Splits the positions of `keys` into the groups of one command each: one group per
    /// [`MAX_KEYS_PER_COMMAND`] keys, and on Redis Cluster per hash slot too (with the slot,
    /// to route it). Positions keep their order within a group.
    pub(super) fn groups(client: &Client, keys: &[String]) -> Vec<Group> {
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
    pub(super) async fn run(
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
    pub(super) fn script_command(
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
pub(super) struct Group {
    pub(super) slot: Option<u16>,
    pub(super) positions: Vec<usize>,
}

/// Routes a group's command to the node of its slot (any node when not clustered).
pub(super) fn cluster_hash(group: &Group) -> ClusterHash {
    ClusterHash::from(group.slot)
}

/// Runs one call under the store's timeout.
pub(super) async fn bounded<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(|e| error(&e)),
        Err(_) => Err(timed_out(timeout)),
    }
}

pub(super) fn timed_out(timeout: Duration) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        reason: format!("no reply within {} ms", timeout.as_millis()),
    }
}

/// Maps a fred error: connection trouble and a server that cannot answer yet are
/// `Unavailable` (retrying later may work), a refused command is `Failed`.
pub(super) fn error(e: &RedisError) -> StoreError {
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
