//! W3C trace context in record headers.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::record::{Header, Message};

/// Adds `traceparent`/`tracestate` of the current span, replacing any already there.
pub(crate) fn inject(headers: &mut Vec<Header>) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

struct HeaderInjector<'a>(&'a mut Vec<Header>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|h| h.key != key);
        self.0.push(Header {
            key: key.to_owned(),
            value: value.into_bytes(),
        });
    }
}

struct HeaderExtractor<'a>(&'a Message);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.header(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.headers.iter().map(|h| h.key.as_str()).collect()
    }
}

impl Message {
    /// The producer's trace context, to parent the span that processes this record.
    pub fn trace_context(&self) -> opentelemetry::Context {
        TraceContextPropagator::new().extract(&HeaderExtractor(self))
    }
}
