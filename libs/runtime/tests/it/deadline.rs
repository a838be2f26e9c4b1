//! The caller's deadline ends a call with DEADLINE_EXCEEDED, answered by the server; the
//! server's own request timeout with CANCELLED.

use super::support::*;
use stockcast_runtime::{ServerSettings, Shutdown};
use tonic::Code;

/// `ServerLive` sleeping `sleep_ms`, with `grpc-timeout` set to `deadline`, sent over a bare
/// HTTP/2 connection: a tonic client would end the call itself at its deadline (and answer
/// CANCELLED on its own), so the code seen here is the one the server answered.
async fn call_with_deadline(addr: std::net::SocketAddr, sleep_ms: u64, deadline: &str) -> Code {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!(
        "http://{addr}/inference.GRPCInferenceService/ServerLive"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("grpc-timeout", deadline)
    .header("x-sleep-ms", sleep_ms.to_string())
    .body(())
    .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    // An empty `ServerLiveRequest`: no compression, length 0.
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = response.await.unwrap();
    let status = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
            .map(Code::from_i32)
    };
    if let Some(code) = status(response.headers()) {
        return code;
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        data.unwrap();
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    status(&trailers).expect("grpc-status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_ms_deadline_is_deadline_exceeded_and_the_server_timeout_cancelled() {
    let shutdown = Shutdown::new();
    let server = start(
        ServerSettings {
            request_timeout_ms: 300,
            ..settings()
        },
        shutdown.clone(),
    )
    .await;
    for _ in 0..50 {
        let code = call_with_deadline(server.addr, 1_000, "1m").await;
        assert_eq!(code, Code::DeadlineExceeded);
    }
    assert_eq!(
        call_with_deadline(server.addr, 200, "50m").await,
        Code::DeadlineExceeded
    );
    // The server's timeout (300 ms) comes before the caller's deadline (10 s).
    assert_eq!(
        call_with_deadline(server.addr, 2_000, "10S").await,
        Code::Cancelled
    );
    assert_eq!(call_with_deadline(server.addr, 0, "10S").await, Code::Ok);
    shutdown.trigger();
    server.handle.await.unwrap().unwrap();
}
