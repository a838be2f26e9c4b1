//! PushBars end to end, in-process on a real PostgreSQL and Kafka-protocol broker: the
//! response, the stored rows, the bar events and the dead letters of one stream; duplicates
//! and corrections; streams longer than a batch; and a database that is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use prost::Message as _;
use stockcast_bus::conformance::{assert_quiet, recv_n};
use stockcast_bus::{Consumer, MESSAGE_TYPE_HEADER};
use stockcast_ingestion::store::{BarStore, PostgresStore};
use stockcast_market::{Interval, format_ts};
use stockcast_proto::stockcast::events::v1::dead_letter_record::Origin;
use stockcast_proto::stockcast::events::v1::{DeadLetterRecord, IngestPath, MarketBarEvent};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::types::v1::{Bar, Interval as PbInterval, RejectReason};
use support::service::{Proxy, Service, eventually, read_to_marker, settings};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_carry_the_pushed_bytes() {
    let service = Service::start(settings("push-bytes", |_| {})).await;
    let pushed = [
        // A client that leaves `source` empty, and one naming its feed.
        Bar {
            high: 100.5,
            ..daily("AAPL", 0, 101.0)
        },
        Bar {
            volume: -1.0,
            source: "feed-a".to_owned(),
            ..daily("MSFT", 0, 101.0)
        },
    ];
    let response = push(&service, vec![pushed.to_vec()]).await.expect("push");
    assert_eq!(response.rejected, 2, "{response:?}");
    let mut dlq = service.dlq_consumer().await;
    let letters = recv_n(dlq.as_mut(), 2).await;
    for message in letters {
        let letter: DeadLetterRecord = message.decode().expect("decode");
        let Some(Origin::Component(origin)) = &letter.origin else {
            panic!("component origin expected: {letter:?}");
        };
        let sent = &pushed[origin.index as usize];
        assert_eq!(
            Bar::decode(letter.payload.as_slice()).expect("a Bar"),
            *sent,
            "DeadLetterRecord.payload must be the pushed bar byte for byte (dead_letter.proto: \
             \"The original payload, byte for byte as received\"); ingest.rs re-encodes the \
             validated domain bar with `to_proto(&origin.source)`, which replaces the client's \
             `source`"
        );
        assert_eq!(letter.payload, sent.encode_to_vec());
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_push_is_a_no_op_and_a_changed_bar_a_correction() {
    let service = Service::start(settings("push-dup", |_| {})).await;
    let bars: Vec<Bar> = (0..5)
        .map(|day| daily("AAPL", day, 100.0 + day as f64))
        .collect();
    let first = push(&service, vec![bars.clone()]).await.expect("push");
    assert_eq!((first.accepted, first.duplicates), (5, 0), "{first:?}");
    let mut consumer = service.bars_consumer().await;
    let events = recv_n(consumer.as_mut(), 5).await;
    assert!(events.iter().all(|m| decode_event(m).revision == 0));
    let before = stored(&service.store, "AAPL", Interval::D1).await;
    assert_eq!(before.len(), 5);

    let again = push(&service, vec![bars[..2].to_vec(), bars[2..].to_vec()])
        .await
        .expect("push again");
    assert_eq!(
        (
            again.accepted,
            again.rejected,
            again.duplicates,
            again.corrections
        ),
        (0, 0, 5, 0),
        "{again:?}"
    );
    assert_quiet(consumer.as_mut(), Duration::from_secs(2)).await;
    assert!(
        read_to_marker(&*service.bus, consumer.as_mut(), &service.topic)
            .await
            .is_empty(),
        "a repeated push publishes nothing"
    );
    assert_eq!(stored(&service.store, "AAPL", Interval::D1).await, before);

    // Day 2 was close 102 (high 103, low 99); a corrected close inside the range.
    let old = bars[2].clone();
    let fixed = Bar {
        close: 102.5,
        ..old.clone()
    };
    let third = push(&service, vec![vec![fixed.clone()]])
        .await
        .expect("push correction");
    assert_eq!(
        (
            third.accepted,
            third.rejected,
            third.duplicates,
            third.corrections
        ),
        (0, 0, 0, 1),
        "{third:?}"
    );
    let events = read_to_marker(&*service.bus, consumer.as_mut(), &service.topic).await;
    assert_eq!(events.len(), 1, "one correction event");
    let event = decode_event(&events[0]);
    assert_eq!(event.revision, 1);
    assert_eq!(event.ingest_path, IngestPath::Push as i32);
    assert_eq!(event.bar, Some(as_published(&fixed)));
    let previous = event.previous.expect("previous values");
    assert_eq!(
        (
            previous.symbol.as_str(),
            previous.interval,
            previous.ts,
            previous.open,
            previous.high,
            previous.low,
            previous.close,
            previous.volume
        ),
        (
            old.symbol.as_str(),
            old.interval,
            old.ts,
            old.open,
            old.high,
            old.low,
            old.close,
            old.volume
        )
    );
    let after = stored(&service.store, "AAPL", Interval::D1).await;
    let mut want = before.clone();
    want[2] = (as_published(&fixed), 1);
    assert_eq!(after, want);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_a_batch_reports_stream_indexes() {
    let service = Service::start(settings("push-big", |s| s.ingest.batch_size = 100)).await;
    const N: usize = 1_050;
    const BAD: usize = 777;
    let mut bars: Vec<Bar> = (0..N)
        .map(|i| {
            bar(
                "BIG",
                PbInterval::Interval1Minute,
                OPEN0 + 60 * i as i64,
                100.0 + (i % 7) as f64 * 0.25,
            )
        })
        .collect();
    bars[BAD].high = bars[BAD].close - 0.5;
    // Messages of 64 bars: batch boundaries (every 100) fall inside messages.
    let messages: Vec<Vec<Bar>> = bars.chunks(64).map(<[Bar]>::to_vec).collect();
    let response = push(&service, messages).await.expect("push");
    assert_eq!(
        (
            response.accepted,
            response.rejected,
            response.duplicates,
            response.corrections
        ),
        (N as i64 - 1, 1, 0, 0),
        "{response:?}"
    );
    assert_eq!(response.rejections.len(), 1);
    let rejection = &response.rejections[0];
    assert_eq!(
        (
            rejection.index,
            rejection.field.as_str(),
            rejection.reason_code
        ),
        (BAD as i64, "high", RejectReason::InconsistentOhlc as i32),
        "{rejection:?}"
    );

    let rows = stored(&service.store, "BIG", Interval::M1).await;
    let want: Vec<(Bar, i32)> = bars
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != BAD)
        .map(|(_, b)| (as_published(b), 0))
        .collect();
    assert_eq!(rows.len(), N - 1);
    assert!(
        rows == want,
        "stored rows differ from the pushed valid bars"
    );

    let mut consumer = service.bars_consumer().await;
    let events = read_to_marker(&*service.bus, consumer.as_mut(), &service.topic).await;
    let published: BTreeSet<i64> = events
        .iter()
        .map(|m| decode_event(m).bar.unwrap().ts.unwrap().seconds)
        .collect();
    assert_eq!(events.len(), N - 1, "one event per accepted bar");
    let expected: BTreeSet<i64> = want.iter().map(|(b, _)| b.ts.unwrap().seconds).collect();
    assert_eq!(published, expected);

    let mut dlq = service.dlq_consumer().await;
    let letters = read_to_marker(&*service.bus, dlq.as_mut(), &service.dlq).await;
    assert_eq!(letters.len(), 1);
    let letter: DeadLetterRecord = letters[0].decode().expect("decode");
    match letter.origin {
        Some(Origin::Component(origin)) => assert_eq!(origin.index, BAD as i64),
        other => panic!("component origin expected, got {other:?}"),
    }
    service.stop().await;
}

/// A client reading a file (`stockcast ingest csv`) sends each bar's line and the rows it could
/// not read: both kinds of refusal are dead-lettered with their line, counted by reason, and
/// named by line in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_lines_and_unreadable_rows_are_dead_lettered_and_counted_by_line() {
    let service = Service::start(settings("push-lines", |_| {})).await;
    let good = daily("LINE", 0, 101.0);
    let bad = Bar {
        high: 99.0,
        ..daily("LINE", 1, 101.0)
    };
    let unreadable = pb::UnreadableRecord {
        line: 3,
        payload: b"2024-01-03,100,x,99,101,1000".to_vec(),
        payload_type: "text/csv".to_owned(),
        symbol: "LINE".to_owned(),
        field: "high".to_owned(),
        reason_code: RejectReason::Malformed as i32,
        reason: r#"column "High" is "x", not a number"#.to_owned(),
    };
    let request = pb::PushBarsRequest {
        bars: vec![good, bad],
        lines: vec![2, 4],
        unreadable: vec![unreadable.clone()],
    };
    let response = service
        .client
        .clone()
        .push_bars(tokio_stream::iter(vec![request]))
        .await
        .expect("push")
        .into_inner();
    assert_eq!(
        (response.accepted, response.rejected),
        (1, 2),
        "{response:?}"
    );
    let named: Vec<(i64, i32)> = response
        .rejections
        .iter()
        .map(|r| (r.index, r.reason_code))
        .collect();
    assert_eq!(
        named,
        [
            (3, RejectReason::Malformed as i32),
            (4, RejectReason::InconsistentOhlc as i32)
        ],
        "rejections name file lines in file order"
    );
    let by_reason: Vec<(i32, i64)> = response
        .rejected_by_reason
        .iter()
        .map(|r| (r.reason_code, r.count))
        .collect();
    assert_eq!(
        by_reason,
        [
            (RejectReason::Malformed as i32, 1),
            (RejectReason::InconsistentOhlc as i32, 1)
        ]
    );

    let mut dlq = service.dlq_consumer().await;
    let letters = read_to_marker(&*service.bus, dlq.as_mut(), &service.dlq).await;
    let mut lines: Vec<(i64, Vec<u8>)> = letters
        .iter()
        .map(|m| {
            let letter: DeadLetterRecord = m.decode().expect("decode");
            match letter.origin {
                Some(Origin::Component(origin)) => (origin.index, letter.payload),
                other => panic!("component origin expected, got {other:?}"),
            }
        })
        .collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        (3, unreadable.payload),
        "the row as the client read it"
    );
    assert_eq!(lines[1].0, 4);

    // A message whose lines do not match its bars is refused.
    let mismatched = pb::PushBarsRequest {
        bars: vec![daily("LINE", 2, 101.0)],
        lines: vec![5, 6],
        unreadable: Vec::new(),
    };
    let status = service
        .client
        .clone()
        .push_bars(tokio_stream::iter(vec![mismatched]))
        .await
        .expect_err("mismatched lines");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("lines"), "{status:?}");
    service.stop().await;
}

async fn assert_nothing_published(service: &Service, consumer: &mut dyn Consumer) {
    let events = read_to_marker(&*service.bus, consumer, &service.topic).await;
    assert!(
        events.is_empty(),
        "{} bar events published for a failed push",
        events.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_while_the_database_is_down_is_unavailable_and_says_where_to_resend() {
    let schema = stockcast_testkit::unique("ingest_down");
    let unreachable = PostgresStore::connect_lazy(
        "postgres://postgres@127.0.0.1:1/x",
        &schema,
        2,
        Duration::from_millis(500),
    )
    .expect("lazy pool");
    let service = Service::start_on(settings("push-down", |_| {}), unreachable).await;
    let bars: Vec<Bar> = (0..3).map(|day| daily("AAPL", day, 101.0)).collect();
    let status = push(&service, vec![bars])
        .await
        .expect_err("a push with the database down must fail");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("database"),
        "says what is down: {}",
        status.message()
    );
    assert!(
        status.message().contains("resend from index 0"),
        "says where to resend from: {}",
        status.message()
    );
    let mut consumer = service.bars_consumer().await;
    assert_nothing_published(&service, consumer.as_mut()).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_lost_mid_stream_keeps_the_stored_batches_and_says_where_to_resend() {
    let url = stockcast_testkit::POSTGRES.require();
    let schema = stockcast_testkit::unique("ingest_cut");
    let direct = support::service::store_at(&url, &schema).await;
    let proxy = Proxy::start(support::service::postgres_addr(&url)).await;
    let proxied = PostgresStore::connect_lazy(
        &support::service::with_addr(&url, proxy.addr),
        &schema,
        2,
        Duration::from_secs(1),
    )
    .expect("lazy pool");
    let service =
        Service::start_on(settings("push-cut", |s| s.ingest.batch_size = 100), proxied).await;

    let bars: Vec<Bar> = (0..150)
        .map(|i| bar("CUT", PbInterval::Interval1Minute, OPEN0 + 60 * i, 101.0))
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut client = service.client.clone();
    let call = tokio::spawn(async move { client.push_bars(ReceiverStream::new(rx)).await });
    tx.send(pb::PushBarsRequest {
        bars: bars[..100].to_vec(),
        ..Default::default()
    })
    .await
    .expect("send first batch");
    // The first 100 bars make a full batch, stored while the stream is still open.
    eventually("first batch stored", Duration::from_secs(30), || async {
        let n = direct
            .bars("CUT", Interval::M1, 0, Y2100)
            .await
            .expect("bars")
            .len();
        (n == 100).then_some(())
    })
    .await;
    proxy.cut();
    tx.send(pb::PushBarsRequest {
        bars: bars[100..].to_vec(),
        ..Default::default()
    })
    .await
    .expect("send second batch");
    drop(tx);
    let status = call
        .await
        .expect("push task")
        .expect_err("the second batch cannot be stored");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("resend from index 100"),
        "says where to resend from: {}",
        status.message()
    );
    let rows = direct
        .bars("CUT", Interval::M1, 0, Y2100)
        .await
        .expect("bars");
    assert_eq!(
        rows.len(),
        100,
        "the first batch stays, the second is not stored"
    );

    let mut consumer = service.bars_consumer().await;
    let events = read_to_marker(&*service.bus, consumer.as_mut(), &service.topic).await;
    let published: BTreeSet<i64> = events
        .iter()
        .map(|m| decode_event(m).bar.unwrap().ts.unwrap().seconds)
        .collect();
    assert_eq!(events.len(), 100, "events of the stored batch only");
    assert_eq!(
        published,
        (0..100).map(|i| OPEN0 + 60 * i).collect::<BTreeSet<_>>()
    );
    service.stop().await;
    let _ = direct.drop_schema().await;
}
