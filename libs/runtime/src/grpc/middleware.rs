//! The tower layer in front of every gRPC route: load shedding at the concurrency limit,
//! a server span parented on the caller's trace, and request metrics by method and status
//! code, recorded when the response body ends (so streaming calls count their real status).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http_body::Frame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::{Code, Status};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{GRPC_DURATION, GRPC_IN_FLIGHT, GRPC_REQUESTS, GRPC_SHED};
use crate::telemetry::extract_context;

/// Wraps routes with [`GrpcMiddleware`].
#[derive(Debug, Clone)]
pub struct GrpcMiddlewareLayer {
    service: &'static str,
    permits: Arc<Semaphore>,
    limit: usize,
    message_limit: Option<usize>,
}

impl GrpcMiddlewareLayer {
    /// At most `limit` calls at once for the service called `service`.
    pub fn new(service: &'static str, limit: usize) -> Self {
        Self {
            service,
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            message_limit: None,
        }
    }

    /// Refuses request messages over `bytes` with RESOURCE_EXHAUSTED.
    pub fn with_message_limit(self, bytes: usize) -> Self {
        Self {
            message_limit: Some(bytes),
            ..self
        }
    }
}

impl<S> tower::Layer<S> for GrpcMiddlewareLayer {
    type Service = GrpcMiddleware<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMiddleware {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct GrpcMiddleware<S> {
    inner: S,
    layer: GrpcMiddlewareLayer,
}

impl<S> tower::Service<http::Request<Body>> for GrpcMiddleware<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<MeteredBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.layer.service;
        let method: Arc<str> = Arc::from(request.uri().path());
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            metrics::counter!(GRPC_SHED, "service" => service).increment(1);
            let status = Status::resource_exhausted(format!(
                "{service} is at its limit of {} concurrent calls; retry with backoff",
                self.layer.limit
            ));
            let record = Record::new(service, method, None, tracing::Span::none());
            let response = status.into_http::<Body>();
            return Box::pin(async move { Ok(MeteredBody::wrap(response, Some(record))) });
        };

        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let _ = span.set_parent(extract_context(request.headers()));
        let record = Record::new(service, method, Some(permit), span.clone());
        // Taken before tonic's own timer starts (it wraps this layer), so at the caller's
        // deadline this answers first: DEADLINE_EXCEEDED rather than tonic's CANCELLED.
        let deadline = super::deadline::client_timeout(request.headers())
            .map(|timeout| tokio::time::Instant::now() + timeout);
        let request = match self.layer.message_limit {
            Some(limit) => request.map(|body| Body::new(super::LimitedBody::new(body, limit))),
            None => request,
        };

        // The ready clone is the one to call; keep a fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            // Recorded as CANCELLED if this future is dropped before the handler answers (the
            // client reset the stream): the permit and the in-flight gauge are given back.
            let mut pending = Pending(Some(record));
            let call = inner.call(request).instrument(span);
            let response = match deadline {
                None => call.await?,
                Some(deadline) => match tokio::time::timeout_at(deadline, call).await {
                    Ok(response) => response?,
                    Err(_) => Status::deadline_exceeded("the call outlived the caller's deadline")
                        .into_http::<Body>(),
                },
            };
            let record = pending.0.take();
            Ok(MeteredBody::wrap(response, record))
        })
    }
}

/// A call's record until its handler answers.
struct Pending(Option<Record>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(record) = self.0.take() {
            record.finish(Code::Cancelled);
        }
    }
}

/// What is recorded once a call ends.
struct Record {
    service: &'static str,
    method: Arc<str>,
    started: Instant,
    permit: Option<OwnedSemaphorePermit>,
    span: tracing::Span,
}

impl Record {
    fn new(
        service: &'static str,
        method: Arc<str>,
        permit: Option<OwnedSemaphorePermit>,
        span: tracing::Span,
    ) -> Self {
        if permit.is_some() {
            metrics::gauge!(GRPC_IN_FLIGHT, "service" => service).increment(1.0);
        }
        Self {
            service,
            method,
            started: Instant::now(),
            permit,
            span,
        }
    }

    fn finish(self, code: Code) {
        let name = code_name(code);
        // Unknown paths are answered UNIMPLEMENTED; never let them mint label values.
        let method: &str = if code == Code::Unimplemented {
            "unimplemented"
        } else {
            &self.method
        };
        let labels = [
            ("service", self.service.to_owned()),
            ("method", method.to_owned()),
            ("code", name.to_owned()),
        ];
        metrics::counter!(GRPC_REQUESTS, &labels).increment(1);
        metrics::histogram!(GRPC_DURATION, &labels).record(self.started.elapsed().as_secs_f64());
        self.span.record("rpc.grpc.status_code", code as i32);
        if self.permit.is_some() {
            metrics::gauge!(GRPC_IN_FLIGHT, "service" => self.service).decrement(1.0);
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the call's metrics when it ends or is dropped, and holds
    /// the concurrency permit until then.
    pub struct MeteredBody {
        #[pin]
        inner: Body,
        header_code: Option<Code>,
        record: Option<Record>,
    }

    impl PinnedDrop for MeteredBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(record) = this.record.take() {
                // Ended before its trailers: the client went away or the call was cut.
                record.finish(this.header_code.unwrap_or(Code::Cancelled));
            }
        }
    }
}

impl std::fmt::Debug for MeteredBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredBody").finish_non_exhaustive()
    }
}

impl MeteredBody {
    fn wrap(response: http::Response<Body>, record: Option<Record>) -> http::Response<Self> {
        let header_code = grpc_status(response.headers());
        response.map(|inner| Self {
            inner,
            header_code,
            record,
        })
    }
}

impl http_body::Body for MeteredBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status)
                    && let Some(record) = this.record.take()
                {
                    record.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(record) = this.record.take() {
                    record.finish(status.code());
                }
            }
            Poll::Ready(None) => {
                if let Some(record) = this.record.take() {
                    record.finish(this.header_code.unwrap_or(Code::Unknown));
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
}

/// The canonical upper-case name of a gRPC status code, as used in metric labels.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
