//! A real SIGTERM: health turns NOT_SERVING while calls are still accepted, then the server
//! stops accepting, drains the call in flight and returns.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::support::*;
use stockcast_runtime::{ServerSettings, Shutdown};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_not_serving_then_drains_the_call_in_flight() {
    if !stockcast_testkit::process::in_own_process(
        "sigterm::sigterm_turns_not_serving_then_drains_the_call_in_flight",
    ) {
        return;
    }
    let settings = ServerSettings {
        shutdown_delay_ms: 600,
        shutdown_grace_ms: 5_000,
        ..settings()
    };
    let server = start(settings, Shutdown::on_signals()).await;

    assert_eq!(
        health(server.addr).await.unwrap(),
        ServingStatus::NotServing as i32,
        "NOT_SERVING until the dependency answers"
    );
    server.ready.store(true, Ordering::SeqCst);
    wait_health(server.addr, ServingStatus::Serving, Duration::from_secs(5)).await;

    let call_channel = channel(server.addr);
    let in_flight = tokio::spawn(slow_call(call_channel.clone(), 1_200));
    tokio::time::sleep(Duration::from_millis(150)).await;

    let sent = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());

    wait_health(
        server.addr,
        ServingStatus::NotServing,
        Duration::from_millis(500),
    )
    .await;
    // Flipping the dependency back must not turn a stopping server SERVING again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        health(server.addr).await.unwrap(),
        ServingStatus::NotServing as i32
    );

    assert!(
        in_flight
            .await
            .unwrap()
            .expect("the call in flight completes"),
        "the call in flight answers live=true"
    );
    server.handle.await.unwrap().expect("serve returns cleanly");
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "serve returned before the in-flight call ended"
    );
    assert!(
        health(server.addr).await.is_err(),
        "a stopped server accepts no new calls"
    );
}
