//! A local HTTP server that answers like Alpha Vantage from recorded responses, and a log
//! capture, for the Alpha Vantage source tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, VecDeque};
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

/// The API key the tests configure; it must never show up in errors or logs.
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
    script: Mutex<VecDeque<Reply>>,
    queries: Mutex<Vec<String>>,
}

/// The server; dropped with the test's runtime.
#[derive(Debug)]
pub struct AvServer {
    /// Endpoint to configure as `base_url`.
    pub url: String,
    shared: Arc<Shared>,
}

impl AvServer {
    /// Serves `script` in order; the last reply repeats once the others are used.
    pub async fn start(script: Vec<Reply>) -> Self {
        assert!(!script.is_empty());
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            queries: Mutex::default(),
        });
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

    /// The raw query strings received, in order.
    pub fn queries(&self) -> Vec<String> {
        self.shared.queries.lock().unwrap().clone()
    }

    /// The decoded parameters of request `n`.
    pub fn params(&self, n: usize) -> BTreeMap<String, String> {
        let query = &self.queries()[n];
        reqwest::Url::parse(&format!("http://x/?{query}"))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    shared
        .queries
        .lock()
        .unwrap()
        .push(query.unwrap_or_default());
    let reply = {
        let mut script = shared.script.lock().unwrap();
        if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script.front().cloned().unwrap()
        }
    };
    match reply {
        Reply::Fixture(name) => json(StatusCode::OK, fixture(name)),
        Reply::Status(status, body) => json(StatusCode::from_u16(status).unwrap(), body.into()),
        Reply::Slow(delay, name) => {
            tokio::time::sleep(delay).await;
            json(StatusCode::OK, fixture(name))
        }
        Reply::Truncated(name) => {
            let body = fixture(name);
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

/// Everything logged while the guard lives (on this thread), as text.
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures every event at every level, from every crate, until the guard drops.
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let buffer = logs.0.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(buffer.clone()))
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// The text so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
