//! A local HTTP server that answers like Alpha Vantage from recorded responses (the fixtures
//! in `libs/testkit/fixtures/alpha_vantage`), for the market source's tests and ingestion's
//! end-to-end tests.
//!
//! Replies are scripted: one script for every symbol ([`AvServer::serving`]), or one script
//! per requested symbol ([`AvServer::script`]) so that several jobs can run against one server
//! at once. A symbol's own script serves fixtures with their `"2. Symbol": "IBM"` replaced by
//! the requested symbol; the script for every symbol serves them byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures::StreamExt;

/// The fake API key the tests configure; it must never show up in errors, logs, dead letters
/// or job records.
pub const API_KEY: &str = "TESTKEY0123456789";

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// HTTP 200 with a fixture file's bytes.
    Fixture(&'static str),
    /// This status and body.
    Status(u16, String),
    /// Announces a fixture's full length, sends half of it, then closes the connection.
    Truncated(&'static str),
    /// A fixture after a delay.
    Slow(Duration, &'static str),
}

#[derive(Debug, Default)]
struct Shared {
    /// Replies for any symbol without a script of its own.
    fallback: Mutex<VecDeque<Reply>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    queries: Mutex<Vec<String>>,
}

/// The server; it lives as long as the test's runtime.
#[derive(Debug, Clone)]
pub struct AvServer {
    /// Endpoint to configure as `alpha_vantage.base_url`.
    pub url: String,
    shared: Arc<Shared>,
}

impl AvServer {
    /// Starts a server with no scripts; a request for a symbol without one gets HTTP 404.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/query", axum::routing::get(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/query"),
            shared,
        }
    }

    /// Starts a server answering every request with `script` in order; the last reply repeats
    /// once the others are used. Fixtures are served unchanged.
    pub async fn serving(script: Vec<Reply>) -> Self {
        check(&script);
        let server = Self::start().await;
        *server.shared.fallback.lock().unwrap() = script.into();
        server
    }

    /// Answers requests for `symbol` with `script` in order; the last reply repeats. Replaces
    /// any earlier script of the symbol.
    pub fn script(&self, symbol: &str, script: Vec<Reply>) {
        check(&script);
        self.shared
            .scripts
            .lock()
            .unwrap()
            .insert(symbol.to_owned(), script.into());
    }

    /// The raw query strings received, in order.
    pub fn raw_queries(&self) -> Vec<String> {
        self.shared.queries.lock().unwrap().clone()
    }

    /// The decoded query parameters of every request received, in order.
    pub fn queries(&self) -> Vec<BTreeMap<String, String>> {
        self.raw_queries().iter().map(|q| decode_query(q)).collect()
    }

    /// The decoded parameters of request `n`.
    pub fn params(&self, n: usize) -> BTreeMap<String, String> {
        decode_query(&self.raw_queries()[n])
    }

    /// The decoded query parameters of the requests for `symbol`, in order.
    pub fn queries_for(&self, symbol: &str) -> Vec<BTreeMap<String, String>> {
        self.queries()
            .into_iter()
            .filter(|q| q.get("symbol").map(String::as_str) == Some(symbol))
            .collect()
    }
}

/// The next reply of `script`: the first until only the last is left, which then repeats.
fn next(script: &mut VecDeque<Reply>) -> Option<Reply> {
    if script.len() > 1 {
        script.pop_front()
    } else {
        script.front().cloned()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let symbol = decode_query(&query).remove("symbol").unwrap_or_default();
    shared.queries.lock().unwrap().push(query);
    let own = shared
        .scripts
        .lock()
        .unwrap()
        .get_mut(&symbol)
        .and_then(next);
    let (reply, rename) = match own {
        Some(reply) => (Some(reply), Some(symbol.as_str())),
        None => (next(&mut shared.fallback.lock().unwrap()), None),
    };
    let Some(reply) = reply else {
        return json(
            StatusCode::NOT_FOUND,
            format!("no script for symbol {symbol:?}").into_bytes(),
        );
    };
    let body = |name: &str| match rename {
        Some(symbol) => fixture_for(name, symbol),
        None => fixture(name),
    };
    match reply {
        Reply::Fixture(name) => json(StatusCode::OK, body(name)),
        Reply::Status(status, text) => json(StatusCode::from_u16(status).unwrap(), text.into()),
        Reply::Slow(delay, name) => {
            tokio::time::sleep(delay).await;
            json(StatusCode::OK, body(name))
        }
        Reply::Truncated(name) => {
            let body = body(name);
            let half = Bytes::from(body[..body.len() / 2].to_vec());
            let pieces: Vec<Result<Bytes, io::Error>> =
                vec![Ok(half), Err(io::Error::other("connection cut"))];
            // The pause makes the first half reach the client before the cut.
            let stream = futures::stream::iter(pieces).then(|piece| async move {
                if piece.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                piece
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, body.len())
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// Fails the calling test at once on an empty script or a fixture that does not exist: a
/// panic inside the server's task would only drop the connection, and the client under test
/// would retry until its own timeout.
fn check(script: &[Reply]) {
    assert!(!script.is_empty(), "a script needs at least one reply");
    for reply in script {
        if let Reply::Fixture(name) | Reply::Truncated(name) | Reply::Slow(_, name) = reply {
            let path = fixture_path(name);
            assert!(path.is_file(), "no fixture {}", path.display());
        }
    }
}

fn fixture_path(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "fixtures/alpha_vantage", name]
        .iter()
        .collect()
}

/// The bytes of the recorded response `fixtures/alpha_vantage/<name>`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture as parsed JSON.
pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The fixture with its symbol replaced by `symbol`.
fn fixture_for(name: &str, symbol: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture(name)).expect("fixtures are UTF-8");
    text.replace(
        "\"2. Symbol\": \"IBM\"",
        &format!("\"2. Symbol\": \"{symbol}\""),
    )
    .into_bytes()
}

/// `a=b&c=d` with `%XX` and `+` decoded.
fn decode_query(query: &str) -> BTreeMap<String, String> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_percent_escapes_and_plus() {
        let decoded = decode_query("function=TIME_SERIES_DAILY&symbol=BRK.B&note=a+b%2Fc&x=%zz");
        assert_eq!(decoded["symbol"], "BRK.B");
        assert_eq!(decoded["note"], "a b/c");
        assert_eq!(decoded["x"], "%zz");
    }

    #[test]
    fn every_recorded_response_is_there_and_the_series_name_ibm() {
        let names = [
            "daily_ibm.json",
            "daily_ibm_bad_entries.json",
            "intraday_ibm_5min_dst.json",
            "intraday_ibm_5min_extended.json",
            "error_message.json",
            "information_daily_limit.json",
            "information_premium.json",
            "information_rate_limit.json",
            "note_rate_limit.json",
            "malformed.json",
            "no_series.json",
        ];
        for name in names {
            let text = String::from_utf8(fixture(name)).unwrap();
            assert!(!text.is_empty(), "{name}");
            if name.contains("ibm") {
                assert!(text.contains("\"2. Symbol\": \"IBM\""), "{name}");
            }
        }
    }
}
