//! Point-in-time history: no leakage of later rows or bars into a row or its label, input order, spans paged with a cursor.

use super::*;

/// Close of bar `i` of the leakage series: ln(C[j+h]/C[j]) = ((j+h)² − j²)/10, so the
/// label names which bars it used; any off-by-one shows.
fn leak_close(i: i64) -> f64 {
    ((i * i) as f64 / 10.0).exp()
}

fn leak_label(j: i64, h: i64) -> f64 {
    (((j + h) * (j + h) - j * j) as f64) / 10.0
}

/// Bars 0..=9 of `LEAK`; rows of view 1 at the close of bars 1, 3 and 5 whose values encode
/// their event time; decoys in view 2 and another symbol at the close of bars 2 and 4.
async fn write_leakage_series(store: &Arc<dyn OfflineStore>) {
    let encoded = |i: i64| row("LEAK", et(i), vec![et(i) as f64, i as f64, f64::NAN]);
    store
        .write(&WriteBatch {
            bars: (0..10)
                .map(|i| bar("LEAK", i, leak_close(i)))
                .chain((0..10).map(|i| bar("DECOY", i, 1.0 + i as f64)))
                .collect(),
            views: vec![
                rows_of(view(1), vec![encoded(1), encoded(3), encoded(5)]),
                rows_of(
                    view(2),
                    vec![
                        row("LEAK", et(2), vec![-1.0]),
                        row("LEAK", et(4), vec![-1.0]),
                    ],
                ),
                rows_of(
                    view(1),
                    vec![
                        row("DECOY", et(2), vec![-2.0]),
                        row("DECOY", et(4), vec![-2.0]),
                    ],
                ),
            ],
            revisions: Vec::new(),
            chunk: None,
        })
        .await
        .unwrap();
}

fn assert_label(row: &HistoricalRow, expected: Option<f64>) {
    match (row.label, expected) {
        (Some(got), Some(want)) => assert!(
            (got - want).abs() < 1e-9,
            "label at {} is {got}, expected {want}",
            row.as_of
        ),
        (got, want) => assert_eq!(got, want, "label at {}", row.as_of),
    }
}

fn assert_vector_of(row: &HistoricalRow, bar: Option<i64>) {
    match bar {
        None => assert_eq!(row.vector, None, "vector at {}", row.as_of),
        Some(i) => {
            let vector = row.vector.as_ref().unwrap_or_else(|| {
                panic!("no vector at {}, expected the one of bar {i}", row.as_of)
            });
            assert_eq!(vector.event_time, et(i), "vector at {}", row.as_of);
            assert_eq!(vector.values[0], et(i) as f64);
            assert_eq!(vector.values[1], i as f64);
            assert!(vector.values[2].is_nan());
        }
    }
}

pub async fn point_in_time_never_leaks(store: Arc<dyn OfflineStore>) {
    write_leakage_series(&store).await;
    // (as-of, bar of the expected vector, bar of C[0] for the label).
    let cases: Vec<(Ts, Option<i64>, Option<i64>)> = vec![
        (et(3), Some(3), Some(3)),     // exactly at an event time and a bar close
        (et(3) - 1, Some(1), Some(2)), // one second before both
        (et(3) + 1, Some(3), Some(3)), // one second after
        (et(4), Some(3), Some(4)),     // between rows (bar 4 closed, no row at it)
        (et(1) - 1, None, Some(0)),    // before the first row
        (ts(0), None, None),           // at the first bar's open: nothing closed yet
        (et(0) - 1, None, None),       // one second before the first bar closes
        (et(0), None, Some(0)),        // exactly at the first bar's close
        (et(7), Some(5), Some(7)),     // C[2] = bar 9, the last stored bar
        (et(8), Some(5), Some(8)),     // C[2] would be bar 10: not stored
        (et(9) + 10_000, Some(5), Some(9)),
    ];
    let rows: Vec<(String, Ts)> = cases.iter().map(|c| ("LEAK".to_owned(), c.0)).collect();
    let answered = store
        .point_in_time(PointInTimeQuery {
            view: &view(1),
            interval: IV,
            rows: &rows,
            label_horizon: Some(2),
        })
        .await
        .unwrap();
    assert_eq!(answered.len(), cases.len());
    for (row, (as_of, vector_bar, c0_bar)) in answered.iter().zip(&cases) {
        assert_eq!(row.symbol, "LEAK");
        assert_eq!(row.as_of, *as_of);
        assert_vector_of(row, *vector_bar);
        let expected = c0_bar.filter(|j| j + 2 <= 9).map(|j| leak_label(j, 2));
        assert_label(row, expected);
    }

    // Horizon 1 and 9 from bar 0; no label unless asked.
    let first = vec![("LEAK".to_owned(), et(0))];
    for (horizon, expected) in [
        (1, Some(leak_label(0, 1))),
        (9, Some(leak_label(0, 9))),
        (10, None),
    ] {
        let answered = store
            .point_in_time(PointInTimeQuery {
                view: &view(1),
                interval: IV,
                rows: &first,
                label_horizon: Some(horizon),
            })
            .await
            .unwrap();
        assert_label(&answered[0], expected);
    }
    let unlabelled = store
        .point_in_time(PointInTimeQuery {
            view: &view(1),
            interval: IV,
            rows: &first,
            label_horizon: None,
        })
        .await
        .unwrap();
    assert_eq!(unlabelled[0].label, None);
}

pub async fn point_in_time_keeps_input_order_and_isolation(store: Arc<dyn OfflineStore>) {
    write_leakage_series(&store).await;
    let rows = vec![
        ("LEAK".to_owned(), et(5)),
        ("NOPE".to_owned(), et(5)),
        ("LEAK".to_owned(), et(2)),
        ("DECOY".to_owned(), et(3)),
        ("LEAK".to_owned(), et(5)),
        ("LEAK".to_owned(), et(0)),
    ];
    let answered = store
        .point_in_time(PointInTimeQuery {
            view: &view(1),
            interval: IV,
            rows: &rows,
            label_horizon: Some(1),
        })
        .await
        .unwrap();
    let got: Vec<(String, Ts)> = answered
        .iter()
        .map(|r| (r.symbol.clone(), r.as_of))
        .collect();
    assert_eq!(got, rows);
    assert_vector_of(&answered[0], Some(5));
    assert_eq!(answered[1].vector, None);
    assert_eq!(answered[1].label, None);
    // View 2's row at bar 2 does not leak into view 1.
    assert_vector_of(&answered[2], Some(1));
    assert_eq!(
        answered[3].vector,
        Some(OnlineVector {
            event_time: et(2),
            values: vec![-2.0]
        })
    );
    assert_label(&answered[3], Some((5.0f64 / 4.0).ln()));
    // Vectors hold NaN, which is never equal to itself: compare the rendering.
    assert_eq!(format!("{:?}", answered[4]), format!("{:?}", answered[0]));
    assert_vector_of(&answered[5], None);
    // Bars of another interval give no label.
    let daily = store
        .point_in_time(PointInTimeQuery {
            view: &view(1),
            interval: Interval::D1,
            rows: &rows[..1],
            label_horizon: Some(1),
        })
        .await
        .unwrap();
    assert_vector_of(&daily[0], Some(5));
    assert_eq!(daily[0].label, None);
    let version2 = store
        .point_in_time(PointInTimeQuery {
            view: &view(2),
            interval: IV,
            rows: &rows[..1],
            label_horizon: None,
        })
        .await
        .unwrap();
    assert_eq!(version2[0].vector.as_ref().unwrap().event_time, et(4));
    assert!(
        store
            .point_in_time(PointInTimeQuery {
                view: &view(1),
                interval: IV,
                rows: &[],
                label_horizon: Some(1),
            })
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn span_pages_across_symbols_with_a_cursor(store: Arc<dyn OfflineStore>) {
    // Three symbols with rows at bars 0..6; bars for labels on B only.
    let mut views = Vec::new();
    for symbol in ["C", "A", "B"] {
        views.push(rows_of(
            view(1),
            (0..6).map(|i| row(symbol, et(i), vec![i as f64])).collect(),
        ));
    }
    views.push(rows_of(view(2), vec![row("A", et(1), vec![99.0])]));
    store
        .write(&WriteBatch {
            bars: (0..8).map(|i| bar("B", i, leak_close(i))).collect(),
            views,
            revisions: Vec::new(),
            chunk: None,
        })
        .await
        .unwrap();
    // Unsorted, repeated, and one without rows; range = bars 1..=4.
    let symbols = ["C", "B", "ZZZ", "A", "B"].map(str::to_owned);
    let (from, until) = (et(1), et(5));
    let mut pages = Vec::new();
    let mut after: Option<(String, Ts)> = None;
    loop {
        let page = store
            .span(SpanQuery {
                view: &view(1),
                interval: IV,
                symbols: &symbols,
                from,
                until,
                after: after.as_ref().map(|(s, t)| (s.as_str(), *t)),
                limit: 3,
                label_horizon: Some(2),
            })
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some((last.symbol.clone(), last.as_of));
        pages.push(page);
        assert!(pages.len() < 10, "paging does not end");
    }
    let rows: Vec<&HistoricalRow> = pages.iter().flatten().collect();
    let keys: Vec<(&str, Ts)> = rows.iter().map(|r| (r.symbol.as_str(), r.as_of)).collect();
    let mut expected = Vec::new();
    for symbol in ["A", "B", "C"] {
        for i in 1..5 {
            expected.push((symbol, et(i)));
        }
    }
    assert_eq!(keys, expected);
    assert_eq!(pages.len(), 4);
    for row in &rows {
        let vector = row.vector.as_ref().unwrap();
        assert_eq!(vector.event_time, row.as_of);
        let i = (row.as_of - et(0)) / SEC;
        assert_eq!(vector.values, vec![i as f64]);
        // The row's label starts at the bar it closes: C[0] = bar i, C[2] = bar i + 2.
        if row.symbol == "B" {
            assert_label(row, Some(leak_label(i, 2)));
        } else {
            assert_label(row, None);
        }
    }
    // A cursor in the middle of a symbol, and one past every symbol.
    let tail = store
        .span(SpanQuery {
            view: &view(1),
            interval: IV,
            symbols: &symbols,
            from,
            until,
            after: Some(("B", et(2))),
            limit: 3,
            label_horizon: None,
        })
        .await
        .unwrap();
    let keys: Vec<(&str, Ts)> = tail.iter().map(|r| (r.symbol.as_str(), r.as_of)).collect();
    assert_eq!(keys, vec![("B", et(3)), ("B", et(4)), ("C", et(1))]);
    assert!(tail.iter().all(|r| r.label.is_none()));
    let none = store
        .span(SpanQuery {
            view: &view(1),
            interval: IV,
            symbols: &symbols,
            from,
            until,
            after: Some(("ZZZ", 0)),
            limit: 3,
            label_horizon: None,
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}
