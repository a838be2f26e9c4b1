//! `stockcast ingest` against a running ingestion service on its embedded defaults (SQLite in
//! memory, in-process bus), as a user runs it against the demo.

use std::io::{Read as _, Write as _};
use std::process::Output;
use std::time::Duration;

use stockcast_testkit::process::ChildGuard;

struct Service {
    _process: ChildGuard,
    addr: String,
    metrics: String,
}

fn start_service() -> Service {
    let port = stockcast_testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{}", stockcast_testkit::free_port());
    let mut command = super::stockcast();
    command
        .args(["serve", "ingestion", "--grpc-addr", &listen])
        .args(["--metrics-addr", &metrics])
        .env("STOCKCAST_INGESTION__INGEST__CSV_DIR", std::env::temp_dir());
    let mut process = ChildGuard::spawn("ingestion", command);
    process.wait_for_port(&listen, Duration::from_secs(20));
    Service {
        _process: process,
        addr: format!("http://{listen}"),
        metrics,
    }
}

impl Service {
    /// The service's Prometheus text.
    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(&self.metrics).expect("metrics endpoint");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }
}

/// `stockcast ingest ARGS… --addr <service>`: the connection flag after the subcommand, where
/// people type it.
fn ingest(service: &Service, args: &[&str]) -> (Output, String) {
    let out = super::stockcast()
        .arg("ingest")
        .args(args)
        .args(["--addr", &service.addr])
        .output()
        .expect("run stockcast ingest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// Two good rows, one the service refuses (high 11 < low 12, line 4) and one the reader
/// cannot read (line 5).
const ACME: &str = "Date,Open,High,Low,Close,Adj Close,Volume\n\
                    2024-01-02,10,11,9,10.5,10.4,1000\n\
                    2024-01-03,10.5,12,10,11.5,11.4,1200\n\
                    2024-01-04,11.5,11,12,11,10.9,900\n\
                    2024-01-05,11,x,10,10.8,10.7,800\n";

/// A summary line: `label` followed by spaces and `value`.
fn has_row(text: &str, label: &str, value: &str) -> bool {
    text.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(label) && words.next() == Some(value)
    })
}

#[test]
fn every_refused_row_is_counted_by_reason_and_named_by_line() {
    let service = start_service();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.csv");
    std::fs::write(&file, ACME).unwrap();
    let path = file.to_str().unwrap();
    let (out, text) = ingest(
        &service,
        &["csv", path, "--symbol", "ACME", "--max-rejects", "2"],
    );
    assert!(out.status.success(), "{text}");
    assert!(has_row(&text, "accepted", "2"), "{text}");
    assert!(has_row(&text, "rejected", "2"), "{text}");
    // By reason, with the file's line numbers (not stream positions).
    assert!(
        text.lines()
            .any(|l| l.contains("INCONSISTENT_OHLC") && l.contains("line 4")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("MALFORMED") && l.contains("line 5")),
        "{text}"
    );
    assert!(
        text.contains("line 5: column \"High\" is \"x\", not a number"),
        "{text}"
    );
    // The unreadable row went through the service like the refused one: the rejection
    // metric counts both (and the service dead-lettered both with their lines).
    let metrics = service.metrics();
    for reason in ["REJECT_REASON_MALFORMED", "REJECT_REASON_INCONSISTENT_OHLC"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("stockcast_ingestion_rejections_total")
                    && l.contains(reason)
                    && l.ends_with(" 1")),
            "{reason} not counted once:\n{metrics}"
        );
    }

    // The same file again without --max-rejects: stored rows are duplicates, and the two
    // refused rows make the import a failure.
    let (out, text) = ingest(&service, &["csv", path, "--symbol", "ACME"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(has_row(&text, "accepted", "0"), "{text}");
    assert!(has_row(&text, "duplicates", "2"), "{text}");
    assert!(text.contains("more than --max-rejects 0"), "{text}");
}

#[test]
fn an_import_that_accepts_nothing_fails() {
    let service = start_service();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("goog.csv");
    std::fs::write(&file, ACME).unwrap();
    // A lower-case symbol: the service refuses every row.
    let (out, text) = ingest(
        &service,
        &[
            "csv",
            file.to_str().unwrap(),
            "--symbol",
            "goog",
            "--max-rejects",
            "100",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("nothing was accepted"), "{text}");
    assert!(has_row(&text, "accepted", "0"), "{text}");
    assert!(text.contains("INVALID_SYMBOL"), "{text}");

    let header_only = dir.path().join("empty.csv");
    std::fs::write(&header_only, "Date,Open,High,Low,Close,Volume\n").unwrap();
    let (out, text) = ingest(
        &service,
        &["csv", header_only.to_str().unwrap(), "--symbol", "GOOG"],
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("nothing was accepted"), "{text}");
}

#[test]
fn a_missing_symbol_names_the_flag() {
    let service = start_service();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.csv");
    std::fs::write(&file, ACME).unwrap();
    let (out, text) = ingest(&service, &["csv", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("--symbol"), "{text}");
    assert!(!text.contains("symbol parameter"), "{text}");
}

#[test]
fn a_synthetic_backfill_runs_to_completion() {
    let service = start_service();
    let (out, text) = ingest(
        &service,
        &[
            "synthetic",
            "--symbols",
            "SYN.A,SYN.B",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-01",
        ],
    );
    assert!(out.status.success(), "{text}");
    // 2024-01-01 .. 2024-02-29: 44 weekdays per symbol.
    assert!(text.contains("accepted=88"), "{text}");
}

#[test]
fn a_missing_service_is_a_clear_error() {
    let out = super::stockcast()
        .args([
            "ingest",
            "--addr",
            "http://127.0.0.1:1",
            "synthetic",
            "--symbols",
            "X",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("cannot reach the ingestion service at http://127.0.0.1:1"),
        "{text}"
    );
}
