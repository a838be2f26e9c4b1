//! Message-size limits, applied by the server to every service it runs.
//!
//! tonic checks sizes per generated server (and answers OUT_OF_RANGE). The server sets those
//! limits itself ([`MessageLimits`]) and, in front of every route, reads the length prefix of
//! each request message as it arrives ([`LimitedBody`]): a message over the limit is refused
//! with RESOURCE_EXHAUSTED, the conventional code, before any of it is buffered.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

/// A generated tonic server whose decoding and encoding limits can be set.
pub trait MessageLimits {
    /// The server with requests and responses limited to `bytes` per message.
    fn message_limits(self, bytes: usize) -> Self;
}

macro_rules! message_limits {
    ($($module:ident :: $server:ident : $service:ident),* $(,)?) => {$(
        impl<T: $module::$service> MessageLimits for $module::$server<T> {
            fn message_limits(self, bytes: usize) -> Self {
                // One byte of slack: the request body check refuses first, with its own code.
                self.max_decoding_message_size(bytes.saturating_add(1))
                    .max_encoding_message_size(bytes)
            }
        }
    )*};
}

mod generated {
    pub use stockcast_proto::inference::grpc_inference_service_server as kserve;
    pub use stockcast_proto::stockcast::features::v1::feature_store_service_server as features;
    pub use stockcast_proto::stockcast::inference::v1::inference_service_server as inference;
    pub use stockcast_proto::stockcast::ingestion::v1::ingestion_service_server as ingestion;
    pub use stockcast_proto::stockcast::registry::v1::model_registry_service_server as registry;
    pub use stockcast_proto::stockcast::risk::v1::risk_metrics_service_server as risk;
}
use generated::*;

message_limits!(
    ingestion::IngestionServiceServer: IngestionService,
    features::FeatureStoreServiceServer: FeatureStoreService,
    inference::InferenceServiceServer: InferenceService,
    kserve::GrpcInferenceServiceServer: GrpcInferenceService,
    registry::ModelRegistryServiceServer: ModelRegistryService,
    risk::RiskMetricsServiceServer: RiskMetricsService,
);

/// Length of a gRPC message prefix: compression flag and big-endian length.
const PREFIX: usize = 5;

/// A request body that fails with RESOURCE_EXHAUSTED as soon as a message's length prefix
/// says it is longer than the limit.
#[derive(Debug)]
pub struct LimitedBody {
    inner: Body,
    limit: usize,
    /// Bytes of the current message's payload still to pass.
    payload_left: usize,
    /// The part of a length prefix seen so far.
    prefix: [u8; PREFIX],
    prefix_len: usize,
    /// The length of a message over the limit, once seen: the bytes before it pass, then
    /// the body fails.
    over: Option<usize>,
    failed: bool,
}

impl LimitedBody {
    /// Wraps `inner`, allowing messages of at most `limit` bytes.
    pub fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            payload_left: 0,
            prefix: [0; PREFIX],
            prefix_len: 0,
            over: None,
            failed: false,
        }
    }

    /// Reads the message boundaries in `data`; the first message over the limit, if any, as
    /// its length and where its prefix starts in `data` (0 when it started in an earlier
    /// chunk).
    fn scan(&mut self, data: &Bytes) -> Option<(usize, usize)> {
        let mut rest = &data[..];
        while !rest.is_empty() {
            if self.payload_left > 0 {
                let step = self.payload_left.min(rest.len());
                self.payload_left -= step;
                rest.advance(step);
                continue;
            }
            let step = (PREFIX - self.prefix_len).min(rest.len());
            self.prefix[self.prefix_len..self.prefix_len + step].copy_from_slice(&rest[..step]);
            self.prefix_len += step;
            rest.advance(step);
            if self.prefix_len == PREFIX {
                self.prefix_len = 0;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as usize;
                if len > self.limit {
                    let end = data.len() - rest.len();
                    return Some((len, end.saturating_sub(PREFIX)));
                }
                self.payload_left = len;
            }
        }
        None
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        if let Some(len) = self.over {
            self.failed = true;
            let limit = self.limit;
            return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                "a request message of {len} bytes is over the limit of {limit} bytes \
                 (server.max_message_bytes)"
            )))));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let Some(data) = frame.data_ref() else {
            return Poll::Ready(Some(Ok(frame)));
        };
        match self.scan(data) {
            None => Poll::Ready(Some(Ok(frame))),
            Some((len, start)) => {
                // The messages before the one over the limit are delivered first (a stream
                // keeps what it received before the break).
                self.over = Some(len);
                let before = data.slice(..start);
                if before.is_empty() {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(Frame::data(before))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend(std::iter::repeat_n(7u8, len));
        out
    }

    fn scan_in_pieces(limit: usize, stream: &[u8], piece: usize) -> Option<usize> {
        let mut body = LimitedBody::new(Body::empty(), limit);
        stream
            .chunks(piece.max(1))
            .find_map(|chunk| body.scan(&Bytes::copy_from_slice(chunk)))
            .map(|(len, _)| len)
    }

    #[test]
    fn the_messages_before_the_one_over_the_limit_are_kept() {
        let mut stream = message(10);
        stream.extend(message(3));
        let first_two = stream.len();
        stream.extend(message(101));
        let mut body = LimitedBody::new(Body::empty(), 100);
        let (len, start) = body.scan(&Bytes::from(stream)).unwrap();
        assert_eq!((len, start), (101, first_two));
    }

    #[test]
    fn messages_within_the_limit_pass_however_they_are_split() {
        let mut stream = message(10);
        stream.extend(message(0));
        stream.extend(message(100));
        for piece in [1, 2, 3, 5, 6, 7, 64, 1000] {
            assert_eq!(scan_in_pieces(100, &stream, piece), None, "piece {piece}");
        }
    }

    #[test]
    fn the_first_message_over_the_limit_is_found_however_it_is_split() {
        let mut stream = message(10);
        stream.extend(message(101));
        stream.extend(message(5));
        for piece in [1, 2, 3, 4, 5, 6, 7, 64, 1000] {
            assert_eq!(
                scan_in_pieces(100, &stream, piece),
                Some(101),
                "piece {piece}"
            );
        }
    }
}
