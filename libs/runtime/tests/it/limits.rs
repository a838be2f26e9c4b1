//! Load shedding, the grace period, and request metrics.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::support::*;
use stockcast_runtime::{ServerSettings, Shutdown};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_concurrency_limit_are_shed_and_counted() {
    // Counts metrics of the process-wide recorder.
    if !stockcast_testkit::process::in_own_process(
        "limits::calls_beyond_the_concurrency_limit_are_shed_and_counted",
    ) {
        return;
    }
    let _ = stockcast_runtime::metrics::handle();
    let shutdown = Shutdown::new();
    let server = start(
        ServerSettings {
            concurrency_limit: 1,
            ..settings()
        },
        shutdown.clone(),
    )
    .await;
    server.ready.store(true, Ordering::SeqCst);

    let busy = tokio::spawn(slow_call(channel(server.addr), 500));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shed = slow_call(channel(server.addr), 0).await.unwrap_err();
    assert_eq!(shed.code(), tonic::Code::ResourceExhausted, "{shed:?}");
    assert!(shed.message().contains("limit of 1"), "{}", shed.message());
    assert!(busy.await.unwrap().unwrap());
    assert!(
        slow_call(channel(server.addr), 0).await.unwrap(),
        "served once the slot is free"
    );

    let text = stockcast_runtime::metrics::handle().render();
    let ok = r#"stockcast_grpc_server_requests_total{service="lifecycle-test",method="/inference.GRPCInferenceService/ServerLive",code="OK"} 2"#;
    let exhausted = r#"stockcast_grpc_server_requests_total{service="lifecycle-test",method="/inference.GRPCInferenceService/ServerLive",code="RESOURCE_EXHAUSTED"} 1"#;
    assert!(text.contains(ok), "missing {ok} in\n{text}");
    assert!(text.contains(exhausted), "missing {exhausted} in\n{text}");
    assert!(
        text.contains("stockcast_grpc_server_shed_total{service=\"lifecycle-test\"} 1"),
        "{text}"
    );
    shutdown.trigger();
    server.handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_outliving_the_grace_period_are_cut() {
    let shutdown = Shutdown::new();
    let server = start(
        ServerSettings {
            shutdown_grace_ms: 200,
            ..settings()
        },
        shutdown.clone(),
    )
    .await;
    server.ready.store(true, Ordering::SeqCst);
    wait_health(server.addr, ServingStatus::Serving, Duration::from_secs(5)).await;

    let stuck = tokio::spawn(slow_call(channel(server.addr), 30_000));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    shutdown.trigger();
    server.handle.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "serve must return after the grace period, took {:?}",
        started.elapsed()
    );
    stuck.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outliving_the_request_timeout_is_cancelled() {
    let shutdown = Shutdown::new();
    let server = start(
        ServerSettings {
            request_timeout_ms: 100,
            ..settings()
        },
        shutdown.clone(),
    )
    .await;
    let error = slow_call(channel(server.addr), 2_000).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Cancelled, "{error:?}");
    shutdown.trigger();
    server.handle.await.unwrap().unwrap();
}

#[allow(clippy::unwrap_used)]
async fn model_infer(addr: std::net::SocketAddr, bytes: usize) -> tonic::Status {
    use stockcast_proto::inference::ModelInferRequest;
    use stockcast_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
    let request = ModelInferRequest {
        model_name: "m".to_owned(),
        raw_input_contents: vec![vec![0u8; bytes].into()],
        ..Default::default()
    };
    GrpcInferenceServiceClient::new(channel(addr))
        .max_decoding_message_size(usize::MAX)
        .model_infer(request)
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_message_limit_is_resource_exhausted() {
    let shutdown = Shutdown::new();
    let server = start(
        ServerSettings {
            max_message_bytes: 4096,
            ..settings()
        },
        shutdown.clone(),
    )
    .await;
    server.ready.store(true, Ordering::SeqCst);

    // Within the limit the request is decoded and reaches the (unimplemented) method.
    let within = model_infer(server.addr, 1000).await;
    assert_eq!(within.code(), tonic::Code::Unimplemented, "{within:?}");
    let over = model_infer(server.addr, 10_000).await;
    assert_eq!(over.code(), tonic::Code::ResourceExhausted, "{over:?}");
    assert!(
        over.message().contains("limit of 4096 bytes"),
        "{}",
        over.message()
    );
    assert!(
        over.message().contains("server.max_message_bytes"),
        "{}",
        over.message()
    );
    shutdown.trigger();
    server.handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_limit_replaces_tonics_four_mib_default() {
    let shutdown = Shutdown::new();
    let server = start(settings(), shutdown.clone()).await;
    server.ready.store(true, Ordering::SeqCst);
    // 6 MiB: over tonic's 4 MiB default, under the 16 MiB default of server.max_message_bytes.
    let big = model_infer(server.addr, 6 << 20).await;
    assert_eq!(big.code(), tonic::Code::Unimplemented, "{big:?}");
    let huge = model_infer(server.addr, 17 << 20).await;
    assert_eq!(huge.code(), tonic::Code::ResourceExhausted, "{huge:?}");
    shutdown.trigger();
    server.handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_client_abandons_gives_back_its_slot_and_is_counted_cancelled() {
    // Counts metrics of the process-wide recorder.
    if !stockcast_testkit::process::in_own_process(
        "limits::a_call_the_client_abandons_gives_back_its_slot_and_is_counted_cancelled",
    ) {
        return;
    }
    let _ = stockcast_runtime::metrics::handle();
    let shutdown = Shutdown::new();
    let server = start(
        ServerSettings {
            concurrency_limit: 1,
            ..settings()
        },
        shutdown.clone(),
    )
    .await;
    server.ready.store(true, Ordering::SeqCst);

    // The client gives up after 100 ms; the handler would sleep for 30 s.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        slow_call(channel(server.addr), 30_000),
    )
    .await;
    assert!(abandoned.is_err(), "the call should still be running");
    // The one slot is free again: a new call is served, not shed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match slow_call(channel(server.addr), 0).await {
            Ok(live) => {
                assert!(live);
                break;
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                assert!(
                    Instant::now() < deadline,
                    "the abandoned call kept its slot"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    let text = stockcast_runtime::metrics::handle().render();
    let cancelled = r#"stockcast_grpc_server_requests_total{service="lifecycle-test",method="/inference.GRPCInferenceService/ServerLive",code="CANCELLED"} 1"#;
    assert!(text.contains(cancelled), "missing {cancelled} in\n{text}");
    assert!(
        text.contains(r#"stockcast_grpc_server_in_flight{service="lifecycle-test"} 0"#),
        "{text}"
    );
    shutdown.trigger();
    server.handle.await.unwrap().unwrap();
}
