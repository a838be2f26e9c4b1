//! `stockcast ingest` against a running ingestion service on its embedded defaults (SQLite in
//! memory, in-process bus), as a user runs it against the demo.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Service {
    child: Child,
    addr: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_service() -> Service {
    let port = stockcast_testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_stockcast"))
        .args(["serve", "ingestion", "--grpc-addr", &listen])
        .args(["--set", "server.metrics_addr=127.0.0.1:0"])
        .env("STOCKCAST_INGESTION__INGEST__CSV_DIR", std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the service");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "service never listened on {listen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Service {
        child,
        addr: format!("http://{listen}"),
    }
}

fn ingest(service: &Service, args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stockcast"))
        .args(["ingest", "--addr", &service.addr])
        .args(args)
        .output()
        .expect("run stockcast ingest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn a_csv_file_is_pushed_and_bad_rows_are_reported() {
    let service = start_service();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.csv");
    std::fs::write(
        &file,
        "Date,Open,High,Low,Close,Adj Close,Volume\n\
         2024-01-02,10,11,9,10.5,10.4,1000\n\
         2024-01-03,10.5,12,10,11.5,11.4,1200\n\
         2024-01-04,11.5,11,12,11,10.9,900\n\
         2024-01-05,11,x,10,10.8,10.7,800\n",
    )
    .unwrap();
    let (out, text) = ingest(
        &service,
        &["csv", file.to_str().unwrap(), "--symbol", "ACME"],
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("line=5") && text.contains("not a number"),
        "the unreadable row is named by line:\n{text}"
    );
    assert!(text.contains("accepted=2"), "{text}");
    assert!(
        text.contains("rejected=1"),
        "high 11 < low 12 is rejected by the service:\n{text}"
    );
    assert!(text.contains("unreadable=1"), "{text}");

    // The same file again: everything is a duplicate.
    let (out, text) = ingest(
        &service,
        &["csv", file.to_str().unwrap(), "--symbol", "ACME"],
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("accepted=0"), "{text}");
    assert!(text.contains("duplicates=2"), "{text}");
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
    let out = Command::new(env!("CARGO_BIN_EXE_stockcast"))
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
