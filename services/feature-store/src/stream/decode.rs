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
