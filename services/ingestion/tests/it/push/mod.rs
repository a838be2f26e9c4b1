//! PushBars end to end, in-process on a real PostgreSQL and Kafka-protocol broker: the
//! response, the stored rows, the bar events and the dead letters of one stream; duplicates
//! and corrections; streams longer than a batch; and a database that is down.

mod outage;
mod records;

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::service::{Proxy, Service, eventually, read_to_marker, settings};
use prost::Message as _;
use stockcast_bus::conformance::{assert_quiet, recv_n};
use stockcast_bus::{Consumer, MESSAGE_TYPE_HEADER};
use stockcast_ingestion::store::{BarStore, PostgresStore};
use stockcast_market::{Interval, format_ts};
use stockcast_proto::stockcast::events::v1::dead_letter_record::Origin;
use stockcast_proto::stockcast::events::v1::{DeadLetterRecord, IngestPath, MarketBarEvent};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::types::v1::{Bar, Interval as PbInterval, RejectReason};
use tokio_stream::wrappers::ReceiverStream;

/// 2100-01-01 00:00 UTC: after every bar of these tests.
const Y2100: i64 = 4_102_444_800;
const DAY: i64 = 86_400;
/// 2024-01-02 00:00 UTC, a Tuesday.
const DAY0: i64 = 1_704_153_600;
/// 2024-01-02 14:30 UTC, a session open.
const OPEN0: i64 = DAY0 + 14 * 3_600 + 1_800;

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// A valid bar: open 100, `close`, one above and below the body, volume 1000.
fn bar(symbol: &str, interval: PbInterval, at: i64, close: f64) -> Bar {
    Bar {
        symbol: symbol.to_owned(),
        interval: interval as i32,
        ts: ts(at),
        open: 100.0,
        high: close.max(100.0) + 1.0,
        low: close.min(100.0) - 1.0,
        close,
        volume: 1_000.0,
        source: String::new(),
    }
}

fn daily(symbol: &str, day: i64, close: f64) -> Bar {
    bar(symbol, PbInterval::Interval1Day, DAY0 + day * DAY, close)
}

async fn push(
    service: &Service,
    messages: Vec<Vec<Bar>>,
) -> Result<pb::PushBarsResponse, tonic::Status> {
    let requests = messages
        .into_iter()
        .map(|bars| pb::PushBarsRequest {
            bars,
            ..Default::default()
        })
        .collect::<Vec<_>>();
    service
        .client
        .clone()
        .push_bars(tokio_stream::iter(requests))
        .await
        .map(tonic::Response::into_inner)
}

/// The bar as the service stores and publishes it: pushed with no source, it gets `push`.
fn as_published(bar: &Bar) -> Bar {
    Bar {
        source: "push".to_owned(),
        ..bar.clone()
    }
}

fn decode_event(message: &stockcast_bus::Message) -> MarketBarEvent {
    assert_eq!(
        message.message_type(),
        Some("stockcast.events.v1.MarketBarEvent"),
        "{MESSAGE_TYPE_HEADER} header"
    );
    let event: MarketBarEvent = message.decode().expect("decode MarketBarEvent");
    let bar = event.bar.as_ref().expect("event without bar");
    assert_eq!(message.key.as_ref(), bar.symbol.as_bytes(), "key = symbol");
    event
}

async fn stored(store: &PostgresStore, symbol: &str, interval: Interval) -> Vec<(Bar, i32)> {
    store
        .bars(symbol, interval, 0, Y2100)
        .await
        .expect("bars")
        .into_iter()
        .map(|s| {
            assert_eq!(s.source, "push", "stored source of {:?}", s.bar);
            (s.bar.to_proto("push"), s.revision)
        })
        .collect()
}

/// One expected rejection: index, symbol, field, code and a fragment of the reason naming
/// the value.
struct Expected {
    bar: Bar,
    field: &'static str,
    code: RejectReason,
    names: String,
}

fn invalid_bars() -> Vec<Expected> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let future = (now / DAY + 2) * DAY;
    let nan = Bar {
        open: f64::NAN,
        ..daily("NANX", 0, 101.0)
    };
    let high_below = Bar {
        open: 100.0,
        close: 102.0,
        high: 101.0,
        low: 99.0,
        ..daily("HIGH", 0, 102.0)
    };
    let low_above = Bar {
        open: 100.0,
        close: 102.0,
        high: 103.0,
        low: 100.5,
        ..daily("LOW", 0, 102.0)
    };
    let negative_volume = Bar {
        volume: -5.0,
        ..daily("VOL", 0, 101.0)
    };
    let misaligned = Bar {
        ts: ts(DAY0 + 7),
        ..daily("ALIGN", 0, 101.0)
    };
    let unspecified = Bar {
        interval: PbInterval::Unspecified as i32,
        ..daily("IVL", 0, 101.0)
    };
    let missing_ts = Bar {
        ts: None,
        ..daily("NOTS", 0, 101.0)
    };
    vec![
        Expected {
            bar: nan,
            field: "open",
            code: RejectReason::InvalidPrice,
            names: "open NaN".into(),
        },
        Expected {
            bar: high_below,
            field: "high",
            code: RejectReason::InconsistentOhlc,
            names: "high 101".into(),
        },
        Expected {
            bar: low_above,
            field: "low",
            code: RejectReason::InconsistentOhlc,
            names: "low 100.5".into(),
        },
        Expected {
            bar: negative_volume,
            field: "volume",
            code: RejectReason::InvalidVolume,
            names: "volume -5".into(),
        },
        Expected {
            bar: daily("aapl", 0, 101.0),
            field: "symbol",
            code: RejectReason::InvalidSymbol,
            names: "\"aapl\"".into(),
        },
        Expected {
            bar: daily("", 0, 101.0),
            field: "symbol",
            code: RejectReason::InvalidSymbol,
            names: "symbol is empty".into(),
        },
        Expected {
            bar: daily("ABCDEFGHIJKLMNOPQ", 0, 101.0),
            field: "symbol",
            code: RejectReason::InvalidSymbol,
            names: "\"ABCDEFGHIJKLMNOPQ\"".into(),
        },
        Expected {
            bar: misaligned,
            field: "ts",
            code: RejectReason::InvalidTimestamp,
            names: format_ts(DAY0 + 7),
        },
        Expected {
            bar: Bar {
                ts: ts(future),
                ..daily("FUTR", 0, 101.0)
            },
            field: "ts",
            code: RejectReason::FutureTimestamp,
            names: format_ts(future),
        },
        Expected {
            bar: unspecified,
            field: "interval",
            code: RejectReason::InvalidInterval,
            names: "interval is unspecified".into(),
        },
        Expected {
            bar: missing_ts,
            field: "ts",
            code: RejectReason::MissingField,
            names: "ts is missing".into(),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_validated_stored_published_and_dead_lettered_per_record() {
    let service = Service::start(settings("push", |_| {})).await;
    let valid = [
        daily("AAPL", 0, 101.0),
        daily("AAPL", 1, 99.5),
        daily("MSFT", 0, 102.0),
        daily("BRK.B", 0, 100.0),
    ];
    let invalid = invalid_bars();
    // Stream order: valid bars interleaved with each invalid kind, over three messages.
    let mut stream: Vec<(Bar, Option<&Expected>)> = Vec::new();
    let mut bad = invalid.iter();
    for good in &valid {
        stream.push((good.clone(), None));
        for e in bad.by_ref().take(3) {
            stream.push((e.bar.clone(), Some(e)));
        }
    }
    assert!(bad.next().is_none(), "every invalid kind is in the stream");
    let all: Vec<Bar> = stream.iter().map(|(b, _)| b.clone()).collect();
    let messages = vec![all[..4].to_vec(), all[4..10].to_vec(), all[10..].to_vec()];

    let response = push(&service, messages).await.expect("push");
    assert_eq!(
        (
            response.accepted,
            response.rejected,
            response.duplicates,
            response.corrections
        ),
        (4, 11, 0, 0),
        "{response:?}"
    );
    let expected: Vec<(i64, &Expected)> = stream
        .iter()
        .enumerate()
        .filter_map(|(i, (_, e))| e.map(|e| (i as i64, e)))
        .collect();
    assert_eq!(response.rejections.len(), expected.len(), "{response:?}");
    for (rejection, (index, e)) in response.rejections.iter().zip(&expected) {
        assert_eq!(
            (
                rejection.index,
                rejection.symbol.as_str(),
                rejection.field.as_str(),
                rejection.reason_code
            ),
            (*index, e.bar.symbol.as_str(), e.field, e.code as i32),
            "{rejection:?}"
        );
        assert!(
            rejection.reason.contains(&e.names),
            "reason {:?} should name {:?}",
            rejection.reason,
            e.names
        );
    }

    // Stored: exactly the valid bars, revision 0.
    for symbol in ["AAPL", "MSFT", "BRK.B"] {
        let want: Vec<(Bar, i32)> = valid
            .iter()
            .filter(|b| b.symbol == symbol)
            .map(|b| (as_published(b), 0))
            .collect();
        assert_eq!(
            stored(&service.store, symbol, Interval::D1).await,
            want,
            "{symbol}"
        );
    }
    let coverage = service
        .store
        .coverage(None, "", None, 100)
        .await
        .expect("coverage");
    assert_eq!(
        coverage
            .iter()
            .map(|c| (c.symbol.as_str(), c.bar_count))
            .collect::<Vec<_>>(),
        vec![("AAPL", 2), ("BRK.B", 1), ("MSFT", 1)],
        "nothing rejected is stored"
    );

    // Published: one event per valid bar, nothing else.
    let mut bars = service.bars_consumer().await;
    let events = read_to_marker(&*service.bus, bars.as_mut(), &service.topic).await;
    let mut got: Vec<Bar> = Vec::new();
    for message in &events {
        let event = decode_event(message);
        assert_eq!(event.revision, 0);
        assert_eq!(event.previous, None);
        assert_eq!(event.ingest_path, IngestPath::Push as i32);
        assert_eq!(event.backfill_job_id, "");
        assert!(event.ingested_at.is_some());
        got.push(event.bar.unwrap());
    }
    let want: Vec<Bar> = valid.iter().map(as_published).collect();
    assert_eq!(sorted(got), sorted(want));

    // Dead-lettered: one record per rejected bar, with its origin, reason and payload.
    let mut dlq = service.dlq_consumer().await;
    let letters = read_to_marker(&*service.bus, dlq.as_mut(), &service.dlq).await;
    assert_eq!(
        letters.len(),
        expected.len(),
        "one dead letter per rejection"
    );
    let mut seen = BTreeSet::new();
    for message in &letters {
        assert_eq!(
            message.message_type(),
            Some("stockcast.events.v1.DeadLetterRecord")
        );
        let letter: DeadLetterRecord = message.decode().expect("decode DeadLetterRecord");
        let Some(Origin::Component(origin)) = &letter.origin else {
            panic!("expected a component origin: {letter:?}");
        };
        assert_eq!(origin.input, "push");
        assert!(!origin.location.is_empty(), "client location");
        assert_eq!(origin.backfill_job_id, "");
        let (_, e) = expected
            .iter()
            .find(|(i, _)| *i == origin.index)
            .unwrap_or_else(|| panic!("dead letter for index {} not rejected", origin.index));
        assert!(
            seen.insert(origin.index),
            "two letters for {}",
            origin.index
        );
        assert_eq!(letter.reason_code, e.code as i32, "index {}", origin.index);
        assert_eq!(letter.field, e.field, "index {}", origin.index);
        assert!(letter.reason.contains(&e.names), "{:?}", letter.reason);
        assert_eq!(letter.symbol, e.bar.symbol);
        assert_eq!(message.key.as_ref(), e.bar.symbol.as_bytes());
        assert_eq!(letter.rejected_by, "ingestion");
        assert_eq!(letter.attempts, 1);
        assert_eq!(letter.payload_type, "stockcast.types.v1.Bar");
        // The payload is the pushed bar. Its `source` is compared in
        // `dead_letters_carry_the_pushed_bytes`; here everything else, as bytes (NaN != NaN).
        let payload = Bar::decode(letter.payload.as_slice()).expect("payload is a Bar");
        let without_source = |bar: &Bar| {
            Bar {
                source: String::new(),
                ..bar.clone()
            }
            .encode_to_vec()
        };
        assert_eq!(
            without_source(&payload),
            without_source(&e.bar),
            "payload of index {}: {payload:?}",
            origin.index
        );
    }
    service.stop().await;
}

fn sorted(mut bars: Vec<Bar>) -> Vec<Bar> {
    bars.sort_by_key(|b| (b.symbol.clone(), b.ts.map(|t| t.seconds)));
    bars
}
