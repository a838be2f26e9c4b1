//! Where a broken push says to resend from: the index of the first record not stored, in the
//! records' own numbering (the client's lines, or stream positions), never a count of
//! records.

use super::*;

/// Pushes `messages` then a message that cannot be read (two lines for one bar), which breaks
/// the stream; the status message.
async fn broken_push(service: &Embedded, mut messages: Vec<pb::PushBarsRequest>) -> String {
    messages.push(pb::PushBarsRequest {
        bars: vec![daily("BRK", DAY0)],
        lines: vec![1, 2],
        ..Default::default()
    });
    let status = service
        .client
        .clone()
        .push_bars(tokio_stream::iter(messages))
        .await
        .expect_err("an unreadable message breaks the stream");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status.message().to_owned()
}

fn bars(symbol: &str, days: std::ops::Range<i64>) -> Vec<Bar> {
    days.map(|d| daily(symbol, DAY0 + d * DAY)).collect()
}

#[tokio::test]
async fn with_lines_the_resend_index_is_the_line_of_the_first_record_not_stored() {
    let service = Embedded::start(|s| s.ingest.batch_size = 3).await;
    let message = broken_push(
        &service,
        vec![pb::PushBarsRequest {
            bars: bars("LNS", 0..5),
            lines: vec![10, 20, 30, 40, 50],
            ..Default::default()
        }],
    )
    .await;
    // Lines 10, 20 and 30 make the complete batch that is stored; 40 and 50 are dropped.
    assert!(
        message.ends_with("bars before index 40 are stored, resend from index 40"),
        "{message}"
    );
    assert_eq!(stored(&service, "LNS").await, 3);
    service.stop().await;
}

#[tokio::test]
async fn unreadable_records_do_not_shift_the_resend_index_of_bars() {
    let service = Embedded::start(|s| s.ingest.batch_size = 3).await;
    let unreadable = pb::UnreadableRecord {
        line: 1_000,
        payload: b"garbage".to_vec(),
        reason: "not a bar".to_owned(),
        ..Default::default()
    };
    let message = broken_push(
        &service,
        vec![
            // Bars 0 and 1 and the unreadable record make the stored batch.
            pb::PushBarsRequest {
                bars: bars("UNR", 0..2),
                unreadable: vec![unreadable],
                ..Default::default()
            },
            // Bars 2 and 3 are the open batch, dropped at the break.
            pb::PushBarsRequest {
                bars: bars("UNR", 2..4),
                ..Default::default()
            },
        ],
    )
    .await;
    assert!(
        message.ends_with("bars before index 2 are stored, resend from index 2"),
        "{message}"
    );
    assert_eq!(stored(&service, "UNR").await, 2);
    service.stop().await;
}

#[tokio::test]
async fn after_complete_batches_only_the_resend_index_is_one_past_the_last_stored() {
    let service = Embedded::start(|s| s.ingest.batch_size = 2).await;
    let message = broken_push(
        &service,
        vec![pb::PushBarsRequest {
            bars: bars("ALL", 0..4),
            lines: vec![3, 5, 8, 13],
            ..Default::default()
        }],
    )
    .await;
    assert!(
        message.ends_with("bars before index 14 are stored, resend from index 14"),
        "{message}"
    );
    assert_eq!(stored(&service, "ALL").await, 4);
    service.stop().await;
}
