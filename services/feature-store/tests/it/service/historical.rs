//! Point-in-time correct history with labels on a series built to expose leakage, in streamed chunks.

use super::*;

const H: usize = 5;

/// What a point-in-time row of `bars` as of `as_of` must be: the index of the last bar
/// closed at or before `as_of`, the status judged at `as_of`, and the label over `h` bars.
fn expected(
    view: &View,
    bars: &[Bar],
    as_of: i64,
    h: usize,
) -> (Option<usize>, pb::FeatureStatus, Option<f64>) {
    let closed = bars.partition_point(|b| view.event_time(b.ts) <= as_of);
    let Some(k) = closed.checked_sub(1) else {
        return (None, pb::FeatureStatus::NotFound, None);
    };
    let values = view.compute(&bars[..=k]).pop().unwrap();
    let status = if as_of - view.event_time(bars[k].ts) > view.max_age.as_secs() as i64 {
        pb::FeatureStatus::Stale
    } else if values.iter().any(|v| v.is_nan()) {
        pb::FeatureStatus::WarmingUp
    } else {
        pb::FeatureStatus::Present
    };
    let label = bars
        .get(k + h)
        .map(|later| (later.close / bars[k].close).ln());
    (Some(k), status, label)
}

/// Asserts one answered row against [`expected`] with precomputed vectors.
fn check_row(
    view: &View,
    row: &pb::HistoricalFeatureRow,
    bars: &[Bar],
    vectors: &[Vec<f64>],
    as_of: i64,
    h: usize,
) {
    let (k, status, label) = expected(view, bars, as_of, h);
    let what = format!("{} as of {as_of}", row.symbol);
    assert_eq!(row.timestamp.unwrap().seconds, as_of, "{what}");
    assert_eq!(row_status(row), status, "{what}");
    assert_eq!(row.label, label, "{what}: label");
    match k {
        None => {
            assert!(row.event_time.is_none(), "{what}");
            assert!(row.values.is_empty() && row.present.is_empty(), "{what}");
        }
        Some(k) => {
            assert_eq!(
                row.event_time.unwrap().seconds,
                view.event_time(bars[k].ts),
                "{what}: event time"
            );
            assert!(same_bits(&row.values, &vectors[k]), "{what}: values");
            let mask: Vec<bool> = if vectors[k].iter().any(|v| v.is_nan()) {
                vectors[k].iter().map(|v| !v.is_nan()).collect()
            } else {
                Vec::new()
            };
            assert_eq!(row.present, mask, "{what}: presence");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn historical_features_are_point_in_time_correct() {
    let view = View::compile(&default_view()).unwrap();
    let svc = Service::start(real_settings("fs-svc-pit", vec![default_view()])).await;
    let jump = jumpy("JUMP", T0, 120, 0);
    let alt = jumpy("ALT", T0 + 30 * DAY, 90, 5);
    svc.publish(&interleave(&[jump.clone(), alt.clone()])).await;
    await_online(&svc.client, &view, &[&jump, &alt]).await;
    let mut client = svc.client();
    let vj = view.compute(&jump);
    let va = view.compute(&alt);
    let e = |bars: &[Bar], k: usize| view.event_time(bars[k].ts);
    let n = jump.len();

    // The series exposes leakage: neighbouring vectors and labels differ sharply.
    let lr = view.names.iter().position(|f| f == "log_return_1").unwrap();
    assert!(
        (vj[60][lr] - vj[59][lr]).abs() > 0.02,
        "{} {}",
        vj[60][lr],
        vj[59][lr]
    );
    let l = |k: usize| (jump[k + H].close / jump[k].close).ln();
    assert!((l(60) - l(59)).abs() > 0.02);

    // (symbol, as-of seconds, as-of nanos)
    let asked: Vec<(&str, i64, i32)> = vec![
        ("JUMP", e(&jump, 60), 0),                  // exactly a vector's event time
        ("JUMP", e(&jump, 60) - 1, 0),              // 1 s before it: the previous vector
        ("JUMP", e(&jump, 60) - 1, 999_999_999),    // still before it
        ("JUMP", e(&jump, 60) + 3_600, 0),          // between two bars
        ("JUMP", e(&jump, 0) - 1, 0),               // before the first vector
        ("JUMP", e(&jump, 0), 0),                   // the first vector, warming up
        ("JUMP", e(&jump, n - 1 - H), 0),           // exactly H bars follow
        ("JUMP", e(&jump, n - H), 0),               // H - 1 bars follow: no label
        ("JUMP", e(&jump, n - 1), 0),               // the last vector
        ("JUMP", e(&jump, n - 1) + 10 * DAY, 0),    // past the max age: STALE
        ("JUMP", e(&jump, n - 1) + 4 * DAY, 0),     // exactly the max age: not stale yet
        ("JUMP", e(&jump, n - 1) + 4 * DAY + 1, 0), // 1 s older than the max age
        ("ALT", e(&alt, 0) - 1, 0),                 // JUMP has data then, ALT none
        ("ALT", e(&alt, 40), 0),
        ("UNKNOWN", e(&jump, 60), 0),
        ("JUMP", e(&jump, 60), 0), // a duplicate row
    ];
    let mut request = entity_rows(
        asked
            .iter()
            .map(|(s, t, nanos)| {
                (
                    *s,
                    Some(prost_types::Timestamp {
                        seconds: *t,
                        nanos: *nanos,
                    }),
                )
            })
            .collect(),
    );
    request.label = Some(pb::LabelSpec {
        horizon_bars: H as i32,
    });
    let chunks = historical(&mut client, request).await;
    assert_eq!(chunks.len(), 1);
    let header = chunks[0].header.as_ref().expect("header");
    assert_eq!(header.feature_names, view.names);
    assert_eq!(header.feature_view_version, 1);
    assert_eq!(header.total_rows, asked.len() as i64);
    let rows = &chunks[0].rows;
    assert_eq!(rows.len(), asked.len());
    for (row, (symbol, as_of, _)) in rows.iter().zip(&asked) {
        assert_eq!(row.symbol, *symbol);
        let (bars, vectors) = match *symbol {
            "JUMP" => (&jump[..], &vj[..]),
            "ALT" => (&alt[..], &va[..]),
            _ => (&[][..], &[][..]),
        };
        check_row(&view, row, bars, vectors, *as_of, H);
    }
    // The cases above, spelled out where leakage would show.
    assert!(same_bits(&rows[0].values, &vj[60]));
    assert_eq!(rows[0].label, Some(l(60)));
    assert!(same_bits(&rows[1].values, &vj[59]));
    assert_eq!(rows[1].label, Some(l(59)));
    assert!(same_bits(&rows[2].values, &vj[59]));
    assert_eq!(rows[4].label, None, "no label without a vector");
    assert!(rows[6].label.is_some() && rows[7].label.is_none() && rows[8].label.is_none());
    use pb::FeatureStatus::{NotFound, Present, Stale, WarmingUp};
    let statuses: Vec<pb::FeatureStatus> = rows.iter().map(row_status).collect();
    #[rustfmt::skip]
    let want = [
        Present, Present, Present, Present, NotFound, WarmingUp, Present, Present, Present,
        Stale, Present, Stale, NotFound, WarmingUp, NotFound, Present,
    ];
    assert_eq!(statuses, want);
    assert_eq!(rows[0], rows[15]);

    // A span query in chunks of 7 rows: header first only, rows by symbol then time.
    let total = jump.len() + alt.len();
    let chunks = historical(
        &mut client,
        span_request("default", 0, &["JUMP", "ALT"], 7, Some(H as i32)),
    )
    .await;
    assert_eq!(chunks.len(), total.div_ceil(7), "210 rows in chunks of 7");
    assert!(chunks[0].header.is_some());
    assert!(
        chunks[1..].iter().all(|c| c.header.is_none()),
        "header in the first chunk only"
    );
    assert!(chunks.iter().all(|c| c.rows.len() == 7));
    let rows: Vec<pb::HistoricalFeatureRow> = chunks.into_iter().flat_map(|c| c.rows).collect();
    assert_rows_exact(&view, &rows, &[&jump, &alt]);
    for row in &rows {
        let at = row.event_time.unwrap().seconds;
        let (bars, vectors) = if row.symbol == "JUMP" {
            (&jump[..], &vj[..])
        } else {
            (&alt[..], &va[..])
        };
        check_row(&view, row, bars, vectors, at, H);
    }

    // 30,000 entity rows stream in chunks, in request order.
    let many: Vec<(&str, i64)> = (0..30_000_i64)
        .map(|i| {
            let symbol = ["JUMP", "ALT", "NONE"][(i % 3) as usize];
            (symbol, T0 - 5 * DAY + (i * 7_919 * 3_600) % (140 * DAY))
        })
        .collect();
    let mut request = entity_rows(many.iter().map(|(s, t)| (*s, ts(*t))).collect());
    request.max_rows_per_chunk = 4_096;
    request.label = Some(pb::LabelSpec { horizon_bars: 3 });
    let chunks = historical(&mut client, request).await;
    let sizes: Vec<usize> = chunks.iter().map(|c| c.rows.len()).collect();
    let mut want_sizes = vec![4_096; 7];
    want_sizes.push(30_000 - 7 * 4_096);
    assert_eq!(sizes, want_sizes);
    assert_eq!(chunks[0].header.as_ref().unwrap().total_rows, 30_000);
    assert!(chunks[1..].iter().all(|c| c.header.is_none()));
    let mut found = 0;
    for (row, (symbol, as_of)) in chunks.iter().flat_map(|c| &c.rows).zip(&many) {
        assert_eq!(row.symbol, *symbol);
        let (bars, vectors) = match *symbol {
            "JUMP" => (&jump[..], &vj[..]),
            "ALT" => (&alt[..], &va[..]),
            _ => (&[][..], &[][..]),
        };
        check_row(&view, row, bars, vectors, *as_of, 3);
        found += usize::from(row.event_time.is_some());
    }
    assert!(
        found > 10_000,
        "most rows of known symbols find a vector: {found}"
    );

    let settings = svc.settings.clone();
    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}
