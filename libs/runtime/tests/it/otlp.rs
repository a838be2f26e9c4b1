//! Traces leave the process over OTLP/gRPC, and a gRPC call's server span joins the caller's
//! trace through the `traceparent` metadata. The collector is a real OTLP/gRPC server in the
//! test (the protocol Jaeger's 4317 port speaks).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::support::*;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use stockcast_proto::inference::ServerLiveRequest;
use stockcast_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use stockcast_runtime::telemetry::TracePropagation;
use stockcast_runtime::{Shutdown, TelemetrySettings};
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_and_the_server_joins_the_callers_trace() {
    if !stockcast_testkit::process::in_own_process(
        "otlp::spans_are_exported_and_the_server_joins_the_callers_trace",
    ) {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let guard = stockcast_runtime::telemetry::init(
        "otlp-test",
        &TelemetrySettings {
            otlp_endpoint: Some(format!("http://{collector_addr}")),
            ..TelemetrySettings::default()
        },
    )
    .expect("telemetry");

    let shutdown = Shutdown::new();
    let server = start(settings(), shutdown.clone()).await;
    server.ready.store(true, Ordering::SeqCst);

    let caller = tracing::info_span!("caller");
    let caller_context = caller.context();
    let trace_id = caller_context.span().span_context().trace_id();
    let caller_span_id = caller_context.span().span_context().span_id();
    async {
        let mut client =
            GrpcInferenceServiceClient::with_interceptor(channel(server.addr), TracePropagation);
        client
            .server_live(ServerLiveRequest {})
            .await
            .expect("call");
    }
    .instrument(caller)
    .await;
    shutdown.trigger();
    server.handle.await.unwrap().unwrap();
    guard.shutdown(Duration::from_secs(5));

    let mut spans = Vec::new();
    let mut service_names = Vec::new();
    while let Ok(Some(request)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        for resource_spans in request.resource_spans {
            if let Some(resource) = &resource_spans.resource {
                for attribute in &resource.attributes {
                    if attribute.key == "service.name" {
                        service_names.push(format!("{:?}", attribute.value));
                    }
                }
            }
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans);
            }
        }
        if spans.iter().any(|s| s.name.contains("ServerLive"))
            && spans.iter().any(|s| s.name == "caller")
        {
            break;
        }
    }
    let server_span = spans
        .iter()
        .find(|s| s.name == "/inference.GRPCInferenceService/ServerLive")
        .unwrap_or_else(|| {
            panic!(
                "no server span exported; got {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        server_span.trace_id,
        trace_id.to_bytes().to_vec(),
        "server span joins the caller's trace"
    );
    assert_eq!(
        server_span.parent_span_id,
        caller_span_id.to_bytes().to_vec(),
        "parented on the caller's span"
    );
    assert!(
        spans.iter().any(|s| s.name == "caller"),
        "the caller span is exported too"
    );
    assert!(
        service_names
            .iter()
            .any(|n| n.contains("stockcast-otlp-test")),
        "resource carries service.name: {service_names:?}"
    );
}
