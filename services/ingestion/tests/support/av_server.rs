//! A local HTTP server that answers like Alpha Vantage from recorded responses (adapted from
//! `libs/market/tests/av_support`), with one script of replies per requested symbol so that
//! several jobs can run against it at once. Fixture bodies are served with their
//! `"2. Symbol": "IBM"` replaced by the requested symbol.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

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

/// The fake API key the tests configure; it must never show up in errors, dead letters or
/// job records.
pub const API_KEY: &str = "TESTKEY0123456789";

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// HTTP 200 with a fixture file's bytes (symbol replaced).
    Fixture(&'static str),
    /// This status and body.
    Status(u16, String),
    /// Announces a fixture's full length, sends half of it, then closes the connection.
    Truncated(&'static str),
}

#[derive(Debug, Default)]
struct Shared {
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    queries: Mutex<Vec<BTreeMap<String, String>>>,
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

    /// Answers requests for `symbol` with `script` in order; the last reply repeats. Replaces
    /// any earlier script of the symbol.
    pub fn script(&self, symbol: &str, script: Vec<Reply>) {
        assert!(!script.is_empty());
        self.shared
            .scripts
            .lock()
            .unwrap()
            .insert(symbol.to_owned(), script.into());
    }

    /// The decoded query parameters of every request received, in order.
    pub fn queries(&self) -> Vec<BTreeMap<String, String>> {
        self.shared.queries.lock().unwrap().clone()
    }

    /// The decoded query parameters of the requests for `symbol`, in order.
    pub fn queries_for(&self, symbol: &str) -> Vec<BTreeMap<String, String>> {
        self.queries()
            .into_iter()
            .filter(|q| q.get("symbol").map(String::as_str) == Some(symbol))
            .collect()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let params = decode_query(&query.unwrap_or_default());
    let symbol = params.get("symbol").cloned().unwrap_or_default();
    shared.queries.lock().unwrap().push(params);
    let reply = {
        let mut scripts = shared.scripts.lock().unwrap();
        match scripts.get_mut(&symbol) {
            Some(script) if script.len() > 1 => script.pop_front(),
            Some(script) => script.front().cloned(),
            None => None,
        }
    };
    let Some(reply) = reply else {
        return json(
            StatusCode::NOT_FOUND,
            format!("no script for symbol {symbol:?}").into_bytes(),
        );
    };
    match reply {
        Reply::Fixture(name) => json(StatusCode::OK, fixture_for(name, &symbol)),
        Reply::Status(status, body) => json(StatusCode::from_u16(status).unwrap(), body.into()),
        Reply::Truncated(name) => {
            let body = fixture_for(name, &symbol);
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

/// The bytes of `tests/fixtures/alpha_vantage/<name>`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests/fixtures/alpha_vantage",
        name,
    ]
    .iter()
    .collect();
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
