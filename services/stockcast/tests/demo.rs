//! `stockcast demo` as users run it: the addresses it takes and prints, the files it leaves,
//! the history it generates, and how long it takes to stop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use stockcast_proto::stockcast::features::v1 as fpb;
use stockcast_proto::stockcast::features::v1::feature_store_service_client::FeatureStoreServiceClient;

/// A running demo with its log lines (stdout) arriving on a channel.
struct Demo {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(args: &[&str], tmpdir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stockcast"))
            .arg("demo")
            .args(args)
            .env("TMPDIR", tmpdir)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the demo");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `text`; fails with the logs so far after `within`.
    fn wait_for(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no {text:?} in the demo's logs:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Waits for the process to end; `None` if it is still running after `within`.
    fn exit_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The rest of the logs, once the process has ended.
    fn rest(&mut self) -> String {
        self.seen.extend(self.lines.iter());
        self.seen.join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `key=value` field of a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        + key.len()
        + 1;
    line[start..].split_whitespace().next().unwrap()
}

fn demo_dirs(tmpdir: &Path) -> Vec<String> {
    std::fs::read_dir(tmpdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("stockcast-demo-"))
        .collect()
}

const LOCAL: [&str; 4] = [
    "--grpc-addr",
    "127.0.0.1:0",
    "--metrics-addr",
    "127.0.0.1:0",
];

#[test]
fn the_demo_takes_serve_style_addresses_and_prints_the_ports_it_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(&[&LOCAL[..], &["--no-data"]].concat(), tmp.path());
    demo.wait_for("stockcast demo ready", Duration::from_secs(60));
    let mut ports = Vec::new();
    for _ in 0..5 {
        let line = demo.wait_for("grpc=127.0.0.1:", Duration::from_secs(10));
        ports.push(field(&line, "grpc").to_owned());
    }
    let metrics = demo.wait_for("prometheus metrics on /metrics", Duration::from_secs(10));
    let metrics = field(&metrics, "metrics").to_owned();
    for addr in ports.iter().chain([&metrics]) {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        assert_ne!(addr.port(), 0, "the bound port is printed, not 0");
    }
    // What is printed is what answers.
    let mut stream = std::net::TcpStream::connect(&metrics).expect("metrics answer");
    std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    for addr in &ports {
        std::net::TcpStream::connect(addr).expect("a service answers on its printed port");
    }
    demo.signal("TERM");
    assert!(demo.exit_within(Duration::from_secs(30)).is_some());
}

#[test]
fn the_demo_removes_its_files_on_sigint_and_sigterm_unless_kept() {
    for signal in ["INT", "TERM"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut demo = Demo::start(&[&LOCAL[..], &["--no-data"]].concat(), tmp.path());
        demo.wait_for("stockcast demo ready", Duration::from_secs(60));
        assert_eq!(demo_dirs(tmp.path()).len(), 1, "the demo's files are there");
        demo.signal(signal);
        let status = demo.exit_within(Duration::from_secs(30));
        let logs = demo.rest();
        assert!(status.is_some_and(|s| s.success()), "{status:?}\n{logs}");
        assert_eq!(
            demo_dirs(tmp.path()),
            Vec::<String>::new(),
            "SIG{signal} left the demo's directory behind\n{logs}"
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("kept");
    let mut demo = Demo::start(
        &[
            &LOCAL[..],
            &["--no-data", "--keep-data", keep.to_str().unwrap()],
        ]
        .concat(),
        tmp.path(),
    );
    demo.wait_for("stockcast demo ready", Duration::from_secs(60));
    demo.signal("TERM");
    assert!(demo.exit_within(Duration::from_secs(30)).is_some());
    assert!(
        keep.join("models").is_dir(),
        "--keep-data keeps the local registry"
    );
    assert!(demo_dirs(tmp.path()).is_empty(), "no temporary directory");
}

/// The generated history ends with the last completed daily bar, so the newest vector's event
/// time (the close of its last bar) is not after now.
#[test]
fn the_demo_history_ends_at_the_last_completed_bar() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(&LOCAL, tmp.path());
    let line = demo.wait_for("online features", Duration::from_secs(120));
    let now = chrono::Utc::now();
    let event_time = line
        .split("event_time=")
        .nth(1)
        .unwrap()
        .split(" UTC")
        .next()
        .unwrap();
    let event_time = chrono::NaiveDateTime::parse_from_str(event_time, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc();
    assert!(event_time <= now, "vector dated {event_time}, after {now}");
    assert!(
        now - event_time <= chrono::Duration::days(4),
        "the history reaches the last completed bar (weekends aside): {event_time}"
    );
}

/// A client reading a historical-features stream slowly does not hold the demo past its
/// shutdown grace: the demo cuts the stream, as `serve` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_does_not_hold_the_demo_past_its_grace() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(&LOCAL, tmp.path());
    let mut feature_store = None;
    for i in 0..5 {
        let line = demo.wait_for("grpc=127.0.0.1:", Duration::from_secs(60));
        if i == 1 {
            feature_store = Some(field(&line, "grpc").to_owned());
        }
    }
    demo.wait_for("online features", Duration::from_secs(120));
    let addr = feature_store.unwrap();
    let mut client = FeatureStoreServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    // 200,000 point-in-time rows (about 40 MB of answer): far more than socket and HTTP/2
    // buffers hold while the client does not read.
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<fpb::EntityRow> = (0..200_000)
        .map(|i| fpb::EntityRow {
            symbol: format!("DEMO.{}", (b'A' + (i % 5) as u8) as char),
            timestamp: Some(prost_types::Timestamp {
                seconds: now - (i % 700) * 86_400,
                nanos: 0,
            }),
        })
        .collect();
    let request = fpb::GetHistoricalFeaturesRequest {
        feature_view: "default".to_owned(),
        entities: Some(fpb::get_historical_features_request::Entities::EntityRows(
            fpb::EntityRows { rows },
        )),
        max_rows_per_chunk: 100,
        ..Default::default()
    };
    let mut stream = client
        .get_historical_features(request)
        .await
        .unwrap()
        .into_inner();
    // The client reads a message every 50 ms: slowly, but it keeps the stream alive.
    stream.message().await.unwrap().expect("a first message");
    let reader = tokio::spawn(async move {
        while let Ok(Some(_)) = stream.message().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    demo.signal("TERM");
    // Grace 5 s plus the drain delay: well within a minute.
    let status = demo.exit_within(Duration::from_secs(60));
    let logs = demo.seen.join("\n");
    assert!(
        status.is_some(),
        "the demo still runs a minute after SIGTERM while a stream is open:\n{logs}"
    );
    reader.abort();
}
