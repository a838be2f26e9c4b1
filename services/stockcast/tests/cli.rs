//! The `stockcast` binary as users run it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stockcast(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stockcast"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run stockcast")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_explains_the_commands() {
    let out = stockcast(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in ["demo", "serve", "embedded"] {
        assert!(help.contains(word), "help lacks {word:?}:\n{help}");
    }
}

#[test]
fn an_invalid_config_value_exits_64_naming_the_key() {
    let out = stockcast(
        &["serve", "ingestion"],
        &[("STOCKCAST_INGESTION__SERVER__REQUEST_TIMEOUT_MS", "soon")],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("server.request_timeout_ms"), "{stderr}");
}

#[test]
fn an_unknown_key_exits_64_naming_it() {
    let out = stockcast(&["serve", "inference", "--set", "server.grpc_adr=1"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("grpc_adr"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn print_config_shows_the_layered_values() {
    let out = stockcast(
        &[
            "serve",
            "feature-store",
            "--print-config",
            "--set",
            "server.concurrency_limit=7",
        ],
        &[("STOCKCAST_FEATURE_STORE__TELEMETRY__LOG_FORMAT", "json")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = text(&out.stdout);
    assert!(config.contains("concurrency_limit = 7"), "{config}");
    assert!(
        config.contains("grpc_addr = \"127.0.0.1:50052\""),
        "per-service default port:\n{config}"
    );
    assert!(config.contains("log_format = \"json\""), "{config}");
}

#[test]
fn print_config_into_a_closed_pipe_exits_cleanly() {
    // `stockcast serve … --print-config | head -0`: the reader is gone before anything is
    // written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockcast"))
        .args(["serve", "ingestion", "--print-config"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn a_served_service_stops_cleanly_on_sigterm() {
    let port = stockcast_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockcast"))
        .args([
            "serve",
            "risk-metrics",
            "--grpc-addr",
            &addr,
            "--set",
            "server.metrics_addr=127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "service never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "service did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut logs = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut logs)
        .expect("read");
    assert!(status.success(), "exit {status:?}\n{logs}");
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(logs.contains("grpc server stopped"), "{logs}");
}

#[test]
fn the_demo_starts_every_service_and_stops_after_its_duration() {
    let out = stockcast(
        &[
            "demo",
            "--duration",
            "1s",
            "--base-port",
            "0",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    let logs = text(&out.stdout);
    assert!(out.status.success(), "{logs}\n{}", text(&out.stderr));
    assert!(logs.contains("stockcast demo ready"), "{logs}");
    for service in [
        "ingestion",
        "feature-store",
        "inference",
        "model-registry-proxy",
        "risk-metrics",
    ] {
        assert!(logs.contains(service), "{service} missing from\n{logs}");
    }
    assert!(logs.contains("stockcast demo stopped"), "{logs}");
    assert!(
        logs.contains("backfill done"),
        "the demo generates bars:\n{logs}"
    );
    // The feature store consumed them and serves the default view for every demo symbol.
    let served = logs
        .lines()
        .filter(|l| l.contains("online features") && l.contains("DEMO."))
        .count();
    assert_eq!(served, 5, "the demo serves features:\n{logs}");
    assert!(!logs.contains("NOT_FOUND"), "{logs}");
}

/// Starts `stockcast serve SERVICE` with its database at a port where nothing listens, waits
/// until it retries, sends SIGTERM and returns how it exited with its logs.
fn sigterm_while_the_database_is_down(
    service: &str,
    url_key: &str,
) -> (std::process::ExitStatus, String, Duration) {
    use std::io::BufRead;
    let closed = stockcast_testkit::free_port();
    let addr = format!("127.0.0.1:{}", stockcast_testkit::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockcast"))
        .args([
            "serve",
            service,
            "--grpc-addr",
            &addr,
            "--set",
            "server.metrics_addr=127.0.0.1:0",
            "--set",
            &format!("{url_key}=postgres://postgres@127.0.0.1:{closed}/nothing"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut logs = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs.contains("retrying") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                logs.push_str(&line);
                logs.push('\n');
            }
            Err(_) => panic!("{service} never retried its database:\n{logs}"),
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let sent = Instant::now();
    let deadline = sent + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{service} did not stop after SIGTERM:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    reader.join().expect("reader");
    logs.extend(rx.try_iter().map(|l| l + "\n"));
    (status, logs, took)
}

#[test]
fn sigterm_while_waiting_for_the_database_stops_each_service_at_once() {
    for (service, key) in [
        ("ingestion", "storage.url"),
        ("feature-store", "offline.url"),
        ("model-registry-proxy", "storage.url"),
    ] {
        let (status, logs, took) = sigterm_while_the_database_is_down(service, key);
        assert!(status.success(), "{service}: exit {status:?}\n{logs}");
        assert!(
            logs.contains("stopped before the dependency was reachable"),
            "{service}:\n{logs}"
        );
        // The start-up wait alone lasts 13 to 26 s; SIGTERM must not wait it out (nor the
        // 20 s shutdown grace).
        assert!(
            took < Duration::from_secs(15),
            "{service} took {took:?} to stop:\n{logs}"
        );
    }
}
