//! `stockcast serve <service>` as a process: it stops cleanly on SIGTERM, also while it is
//! still waiting for its database.

use std::time::{Duration, Instant};

use stockcast_testkit::process::ChildGuard;

#[test]
fn a_served_service_stops_cleanly_on_sigterm() {
    let addr = format!("127.0.0.1:{}", stockcast_testkit::free_port());
    let mut command = super::stockcast();
    command.args([
        "serve",
        "risk-metrics",
        "--grpc-addr",
        &addr,
        "--set",
        "server.metrics_addr=127.0.0.1:0",
    ]);
    let mut service = ChildGuard::spawn("risk-metrics", command);
    service.wait_for_port(&addr, Duration::from_secs(20));
    let status = service.terminate(Duration::from_secs(20));
    let logs = service.output();
    assert!(status.success(), "exit {status:?}\n{logs}");
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(logs.contains("grpc server stopped"), "{logs}");
}

/// Starts `stockcast serve SERVICE` with its database at a port where nothing listens, waits
/// until it retries, sends SIGTERM and returns how it exited with its logs.
fn sigterm_while_the_database_is_down(
    service: &str,
    url_key: &str,
) -> (std::process::ExitStatus, String, Duration) {
    let closed = stockcast_testkit::free_port();
    let addr = format!("127.0.0.1:{}", stockcast_testkit::free_port());
    let mut command = super::stockcast();
    command.args([
        "serve",
        service,
        "--grpc-addr",
        &addr,
        "--set",
        "server.metrics_addr=127.0.0.1:0",
        "--set",
        &format!("{url_key}=postgres://postgres@127.0.0.1:{closed}/nothing"),
    ]);
    let mut child = ChildGuard::spawn(service, command);
    child.wait_for_line("retrying", Duration::from_secs(20));
    let sent = Instant::now();
    let status = child.terminate(Duration::from_secs(30));
    let took = sent.elapsed();
    (status, child.output(), took)
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
