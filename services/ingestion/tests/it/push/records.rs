//! Per-record behaviour of pushes: the pushed bytes in dead letters, repeats and
//! corrections, stream indexes across batches, and file lines with unreadable rows.

use super::*;

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
