//! Step 1: decode and check every event of a batch; an unreadable or invalid one becomes a
//! dead letter with the reason (published by the consume loop, never retried).

use std::collections::BTreeMap;

use stockcast_bus::{DeadLetter, Message, Prepared};
use stockcast_market::{Bar, Interval};
use stockcast_proto::stockcast::events::v1::MarketBarEvent;
use stockcast_proto::stockcast::types::v1::RejectReason;

use super::Processor;
use crate::SERVICE;
use crate::view::Ts;

/// One decoded event of a batch.
#[derive(Clone)]
pub(super) struct Incoming {
    pub(super) bar: Bar,
    /// Ingestion's revision of the bar (0 = first version).
    pub(super) revision: i32,
}

/// Usable bars in arrival order, by (symbol, interval).
pub(super) type Groups = BTreeMap<(String, Interval), Vec<Incoming>>;

/// A decoded batch (its dead letters are published by the consume loop).
#[derive(Default)]
pub(super) struct Work {
    pub(super) events: u64,
    pub(super) groups: Groups,
    pub(super) dead_letters: u64,
}

impl Processor {
    /// Decodes a batch: usable bars by (symbol, interval), dead letters by topic.
    pub(super) fn decode_batch(&self, batch: &[Message]) -> Prepared<Work> {
        let mut prepared = Prepared::new(Work {
            events: batch.len() as u64,
            ..Work::default()
        });
        let now = self.clock.now_seconds();
        for message in batch {
            match self.decode(message, now) {
                Ok((bar, revision)) => prepared
                    .work
                    .groups
                    .entry((bar.symbol.clone(), bar.interval))
                    .or_default()
                    .push(Incoming { bar, revision }),
                Err(letter) => prepared.dead_letter(message, letter, &self.settings.group),
            }
        }
        prepared.work.dead_letters = prepared.dead_letter_count() as u64;
        prepared
    }

    fn decode(&self, message: &Message, now: Ts) -> Result<(Bar, i32), DeadLetter> {
        let letter = |code: RejectReason, field: &str, reason: String| {
            DeadLetter::new(SERVICE, code, reason).field(field)
        };
        if let Some(kind) = message.message_type()
            && kind != <MarketBarEvent as prost::Name>::full_name()
        {
            return Err(letter(
                RejectReason::UnknownPayloadType,
                "",
                format!("payload type {kind:?} is not stockcast.events.v1.MarketBarEvent"),
            ));
        }
        let event: MarketBarEvent = message.decode().map_err(|e| {
            letter(
                RejectReason::Malformed,
                "",
                format!("not a MarketBarEvent: {e}"),
            )
        })?;
        let Some(bar) = event.bar.as_ref() else {
            return Err(letter(
                RejectReason::MissingField,
                "bar",
                "event has no bar".to_owned(),
            ));
        };
        let bar = Bar::try_from(bar)
            .map_err(|r| letter(r.code, r.field, r.reason).symbol(&bar.symbol))?;
        self.validator
            .check(&bar, now)
            .map_err(|r| letter(r.code, r.field, r.reason).symbol(&bar.symbol))?;
        if event.revision < 0 {
            return Err(letter(
                RejectReason::Malformed,
                "revision",
                format!("revision {} is negative", event.revision),
            )
            .symbol(&bar.symbol));
        }
        Ok((bar, event.revision))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message as _;
    use stockcast_market::ValidationSettings;
    use stockcast_runtime::clock::ManualClock;

    use super::*;
    use crate::store::memory::MemoryOnline;
    use crate::stream::StreamSettings;
    use crate::view::{Catalog, default_view};

    #[tokio::test]
    async fn whether_a_bar_is_in_the_future_is_judged_by_the_injected_clock() {
        let bar = Bar {
            symbol: "AAPL".into(),
            interval: Interval::D1,
            ts: 1_700_006_400,
            open: 100.0,
            high: 101.0,
            low: 99.0,
            close: 100.5,
            volume: 1.0e6,
        };
        let event = MarketBarEvent {
            bar: Some(bar.to_proto("test")),
            ..MarketBarEvent::default()
        };
        let message = Message {
            topic: "bars".into(),
            partition: 0,
            offset: 0,
            key: "AAPL".into(),
            payload: event.encode_to_vec().into(),
            headers: Vec::new(),
            timestamp_ms: None,
        };
        // The bar closes a day after it opens: at its open time it is in the future.
        let clock = ManualClock::at_ms(bar.ts * 1_000);
        let processor = Processor::new(
            Arc::new(Catalog::new(&[default_view()]).unwrap()),
            Arc::new(MemoryOnline::new()),
            crate::store::sql::open(&Default::default(), &stockcast_runtime::Shutdown::new())
                .await
                .unwrap(),
            Arc::new(stockcast_bus::MemoryBus::new()),
            StreamSettings::default(),
            &ValidationSettings::default(),
            Arc::new(clock.clone()),
        )
        .unwrap();
        let decoded = |p: &Processor| p.decode_batch(std::slice::from_ref(&message)).work;
        let early = decoded(&processor);
        assert_eq!((early.dead_letters, early.groups.len()), (1, 0));
        clock.set_ms((bar.ts + 86_400) * 1_000);
        let on_time = decoded(&processor);
        assert_eq!((on_time.dead_letters, on_time.groups.len()), (0, 1));
    }
}
