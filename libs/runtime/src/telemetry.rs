//! Logs and traces: a `tracing` subscriber writing text or JSON, OTLP trace export when an
//! endpoint is configured, and W3C trace-context propagation through gRPC metadata.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, TelemetrySettings};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `telemetry.log_filter` does not parse.
    #[error("config key `telemetry.log_filter`: {0}")]
    Filter(String),
    /// The OTLP exporter cannot be built for `telemetry.otlp_endpoint`.
    #[error("config key `telemetry.otlp_endpoint`: {0}")]
    Exporter(String),
}

/// Keeps trace export alive; [`TelemetryGuard::shutdown`] flushes it, last in shutdown.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes buffered spans, bounded by `timeout`.
    pub fn shutdown(self, timeout: Duration) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown_with_timeout(timeout)
        {
            tracing::warn!(%error, "trace export did not flush");
        }
    }
}

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Installs the process-wide subscriber. Only the first call in a process installs anything
/// (the all-in-one demo runs five services in one process); later calls return an inert guard.
pub fn init(service: &str, settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    if INSTALLED.get().is_some() {
        return Ok(TelemetryGuard::default());
    }
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
        _ => EnvFilter::try_new(&settings.log_filter),
    }
    .map_err(|e| TelemetryError::Filter(e.to_string()))?;

    let fmt = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(true)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = match &settings.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(service, endpoint, settings.sample_ratio)?),
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("stockcast"))
            .boxed()
    });

    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    let _ = INSTALLED.set(());
    if installed && let Some(endpoint) = &settings.otlp_endpoint {
        tracing::info!(endpoint, service, "exporting traces over otlp");
    }
    Ok(TelemetryGuard { provider })
}

fn tracer_provider(
    service: &str,
    endpoint: &str,
    sample_ratio: f64,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(format!("stockcast-{service}"))
                .build(),
        )
        .build())
}

/// Writes the current span's trace context (`traceparent`, `tracestate`) into outgoing gRPC
/// metadata.
pub fn inject_context(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
}

/// Reads the caller's trace context from incoming gRPC (or any HTTP/2) headers.
pub fn extract_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// A tonic client interceptor that propagates the current trace to the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracePropagation;

impl tonic::service::Interceptor for TracePropagation {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_context(request.metadata_mut());
        Ok(request)
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
