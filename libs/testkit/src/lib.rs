//! Test support shared by the workspace's tests.
//!
//! Tests that need a real server ask this crate for its address. The address comes from the
//! environment written by `scripts/deps.sh up` (sourced by `scripts/test.sh`) or defaults to
//! the standard loopback port; when nothing answers there the test panics and says how to
//! start the server. No test passes because a server was missing.
//!
//! It also holds what tests of several crates need: [`process::ChildGuard`] for child
//! processes, [`bin::stockcast`] for the `stockcast` binary, and [`hostile`] values for
//! property suites.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

#[cfg(feature = "alpha-vantage")]
pub mod alpha_vantage;
pub mod bin;
pub mod hostile;
pub mod process;

/// A server that tests need.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// Human name.
    pub name: &'static str,
    /// Environment variable holding its address or URL.
    pub env: &'static str,
    /// Default address or URL.
    pub default: &'static str,
    /// Argument to `scripts/deps.sh up` that starts it.
    pub deps_arg: &'static str,
}

/// PostgreSQL (URL).
pub const POSTGRES: Server = Server {
    name: "PostgreSQL",
    env: "STOCKCAST_TEST_PG_URL",
    default: "postgres://postgres@127.0.0.1:5432/stockcast_test",
    deps_arg: "pg",
};

/// Redis (URL).
pub const REDIS: Server = Server {
    name: "Redis",
    env: "STOCKCAST_TEST_REDIS_URL",
    default: "redis://127.0.0.1:6379",
    deps_arg: "redis",
};

/// A Kafka-protocol broker (bootstrap servers).
pub const KAFKA: Server = Server {
    name: "Kafka-protocol broker",
    env: "STOCKCAST_TEST_KAFKA_BROKERS",
    default: "127.0.0.1:9092",
    deps_arg: "kafka",
};

/// An MLflow tracking server (URL).
pub const MLFLOW: Server = Server {
    name: "MLflow tracking server",
    env: "STOCKCAST_TEST_MLFLOW_URL",
    default: "http://127.0.0.1:5050",
    deps_arg: "mlflow",
};

impl Server {
    /// The configured address or URL, after checking that something accepts TCP
    /// connections there. Panics with how to start the server otherwise.
    pub fn require(&self) -> String {
        let value = std::env::var(self.env)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.default.to_owned());
        let authority = authority(&value);
        let reachable = authority
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr: SocketAddr| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
            });
        assert!(
            reachable,
            "{name} is not reachable at {value} ({env}). Start it with `scripts/deps.sh up {arg}` \
             and `source \"${{STOCKCAST_STATE_DIR:-/tmp/stockcast-deps}}/env\"`, or run every test \
             with `scripts/test.sh`, which starts what is missing.",
            name = self.name,
            env = self.env,
            arg = self.deps_arg,
        );
        value
    }
}

/// `host:port` of a URL or a comma-separated broker list (its first entry).
fn authority(value: &str) -> String {
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let end = rest.find(['/', ',', '?']).unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// A name unique to this call, e.g. `feat_3f2a9c01b2d4`: for schemas, topics, key prefixes.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a child process to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("no free port on 127.0.0.1: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_of_urls_and_broker_lists() {
        assert_eq!(
            authority("postgres://postgres@127.0.0.1:5432/db"),
            "127.0.0.1:5432"
        );
        assert_eq!(authority("redis://127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(authority("127.0.0.1:9092,127.0.0.1:9093"), "127.0.0.1:9092");
        assert_eq!(authority("http://127.0.0.1:5050"), "127.0.0.1:5050");
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique("t"), unique("t"));
    }

    #[test]
    #[should_panic(expected = "scripts/deps.sh up kafka")]
    fn a_missing_server_fails_with_how_to_start_it() {
        let nowhere = Server {
            env: "STOCKCAST_TEST_NOWHERE",
            default: "127.0.0.1:1",
            ..KAFKA
        };
        nowhere.require();
    }
}
