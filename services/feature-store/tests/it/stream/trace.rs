//! A trace crosses the bus: the span of the batch that computes features from a bar is a
//! child of the span that published it (W3C context in the record headers).

use std::sync::Arc;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use stockcast_feature_store::store::memory::MemoryOnline;
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_feature_store::view::{View, default_view};
use stockcast_runtime::Shutdown;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::support::stream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feature_batch_span_continues_the_publishers_trace() {
    // It sets the process's global trace subscriber.
    if !stockcast_testkit::process::in_own_process(
        "stream::trace::the_feature_batch_span_continues_the_publishers_trace",
    ) {
        return;
    }
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let b = stream::Backends {
        bus: Arc::new(stockcast_bus::MemoryBus::new()),
        online: Arc::new(MemoryOnline::new()),
        offline: open(&DatabaseSettings::default(), &Shutdown::new())
            .await
            .unwrap(),
    };
    let (topic, group) = stream::topic(&*b.bus, "fs-trace").await;
    let bars = stream::series("TRACE", 3, 1.0);
    let span = tracing::info_span!("publish");
    let published = span.context().span().span_context().clone();
    assert!(published.is_valid(), "the publishing span is sampled");
    stream::publish(&*b.bus, &topic, &bars)
        .instrument(span)
        .await;

    let view = View::compile(&default_view()).unwrap();
    let catalog = stream::catalog(&[default_view()]);
    let symbols = vec!["TRACE".to_owned()];
    stream::run_until(
        stream::processor(&b, &catalog, stream::settings(&group, 10)),
        &topic,
        || async { stream::count_rows(&*b.offline, &view.id, &symbols).await >= 3 },
    )
    .await
    .unwrap();

    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let batch = spans
        .iter()
        .find(|s| s.name == "feature_batch")
        .unwrap_or_else(|| {
            panic!(
                "no feature_batch span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(batch.span_context.trace_id(), published.trace_id());
    assert_eq!(batch.parent_span_id, published.span_id());
}
