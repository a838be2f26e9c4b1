//! The processor as the handler of the bus's consume loop.

use async_trait::async_trait;
use stockcast_bus::{ApplyError, BatchHandler, BusError, Message, Prepared};

use super::Processor;
use super::decode::Work;
use crate::error::Error;

/// The processor as the consume loop's handler.
pub(super) struct Handler<'a>(pub(super) &'a mut Processor);

#[async_trait]
impl BatchHandler for Handler<'_> {
    type Work = Work;
    type Error = Error;

    fn prepare(&mut self, batch: &[Message]) -> Prepared<Work> {
        self.0.batches += 1;
        self.0.decode_batch(batch)
    }

    /// A store failure retries the batch; anything else (a fail point) stops the processor.
    async fn apply(&mut self, work: &Work) -> Result<(), ApplyError<Error>> {
        match self.0.process(work).await {
            Ok(stats) => {
                self.0.totals += stats;
                Ok(())
            }
            Err(e @ Error::Store(_)) => Err(ApplyError::Transient(e)),
            Err(e) => Err(ApplyError::Fatal(e)),
        }
    }

    /// A child of the first event's producer trace (so a trace shows the hop from ingestion
    /// to the feature store), linked to the other events' traces.
    fn span(&self, batch: &[Message]) -> tracing::Span {
        let span = tracing::info_span!("feature_batch", events = batch.len());
        stockcast_bus::batch_span_parent(&span, batch);
        span
    }

    fn consume_failed(&mut self, _error: &BusError) {
        crate::metrics::consume_failed();
    }

    fn apply_retried(&mut self, _error: &Error) {
        // Nothing was committed: the batch is retried as a whole, and the state cache may be
        // ahead of the stores, so drop it.
        self.0.cache.clear();
        crate::metrics::batch_retried();
    }

    fn committed(&mut self, records: usize) {
        self.0
            .committed
            .fetch_add(records as u64, std::sync::atomic::Ordering::Relaxed);
    }
}
