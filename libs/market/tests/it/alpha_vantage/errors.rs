//! Error responses of every shape: each ends the fetch after exactly one request, with the
//! server's text; bad entries become unreadable records.

use super::*;

/// Each error shape of a 200 (or 4xx) response, as a fatal error after exactly one request.
#[tokio::test]
async fn error_responses_are_fatal_with_the_server_text() {
    let cases: [(Reply, Interval, &str); 9] = [
        (
            Reply::Fixture("error_message.json"),
            Interval::D1,
            "alpha vantage IBM/daily: Invalid API call. Please retry or visit \
             the documentation (https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY.",
        ),
        (
            Reply::Fixture("information_premium.json"),
            Interval::D1,
            "alpha vantage IBM/daily: premium endpoint: Thank you for using Alpha \
             Vantage! This is a premium endpoint.",
        ),
        (
            Reply::Fixture("no_series.json"),
            Interval::D1,
            "alpha vantage IBM/daily: response has no time series",
        ),
        (
            Reply::Fixture("malformed.json"),
            Interval::D1,
            "alpha vantage IBM/daily: response is not valid JSON: key must be a string at line 4 column 28",
        ),
        (
            Reply::Status(200, "[1, 2, 3]".into()),
            Interval::D1,
            "alpha vantage IBM/daily: response is not a JSON object: invalid type: sequence, \
             expected a JSON object",
        ),
        (
            Reply::Status(200, "{\"Meta Data\": {\"2. Symbol\": \"IBM\"".into()),
            Interval::D1,
            "alpha vantage IBM/daily: response body ends early (truncated JSON)",
        ),
        (
            Reply::Status(404, "not here".into()),
            Interval::D1,
            "alpha vantage IBM/daily: HTTP 404 Not Found: not here",
        ),
        // A daily series where 1-minute bars were asked for.
        (
            Reply::Fixture("daily_ibm.json"),
            Interval::M1,
            "alpha vantage IBM/latest: response holds \"Time Series (Daily)\", not the \
             requested \"Time Series (1min)\"",
        ),
        // A 5-minute series where 1-minute bars were asked for.
        (
            Reply::Fixture("intraday_ibm_5min_dst.json"),
            Interval::M1,
            "alpha vantage IBM/latest: response holds \"Time Series (5min)\", not the \
             requested \"Time Series (1min)\"",
        ),
    ];
    for (reply, interval, want) in cases {
        let server = AvServer::serving(vec![reply.clone()]).await;
        let av = source(&server);
        let spec = spec(interval, OutputSize::Compact, false);
        let chunk = av.plan(&spec).await.unwrap().remove(0);
        match av.fetch(&spec, &chunk).await {
            Err(SourceError::Fatal(message)) => {
                assert!(message.starts_with(want), "{reply:?}:\n{message}\n{want}");
                no_key(&message);
            }
            other => panic!("{reply:?}: {other:?}"),
        }
        assert_eq!(server.queries().len(), 1, "{reply:?} was retried");
    }
}

#[tokio::test]
async fn a_response_for_another_symbol_is_refused() {
    let server = AvServer::serving(vec![Reply::Fixture("daily_ibm.json")]).await;
    let av = source(&server);
    let spec = BackfillSpec {
        symbols: vec!["MSFT".into()],
        ..daily()
    };
    match av.fetch(&spec, &whole("MSFT/daily")).await {
        Err(SourceError::Fatal(message)) => assert_eq!(
            message,
            "alpha vantage MSFT/daily: response is for symbol \"IBM\", not the requested \"MSFT\""
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_entries_become_unreadable_records_and_the_rest_loads() {
    let server = AvServer::serving(vec![Reply::Fixture("daily_ibm_bad_entries.json")]).await;
    let av = source(&server);
    let records = av.fetch(&daily(), &whole("IBM/daily")).await.unwrap();
    assert_eq!(records.len(), 29);
    assert_eq!(bars(&records).len(), 27);
    let unreadable: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            SourceRecord::Unreadable(u) => Some(u),
            _ => None,
        })
        .collect();
    // In time order: 14 March (no volume) before 15 March (bad high).
    let summary: Vec<_> = unreadable
        .iter()
        .map(|u| {
            (
                u.rejection.code,
                u.rejection.field,
                u.rejection.reason.as_str(),
                u.symbol.as_str(),
                u.payload_type,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                RejectReason::MissingField,
                "volume",
                "\"5. volume\" is missing",
                "IBM",
                "application/json"
            ),
            (
                RejectReason::Malformed,
                "high",
                "\"2. high\" is \"abc\", not a number",
                "IBM",
                "application/json"
            ),
        ]
    );
    // The payload is the entry itself, under its date, as the server sent it.
    let payload: serde_json::Value = serde_json::from_slice(&unreadable[1].payload).unwrap();
    assert_eq!(payload["2024-03-15"]["2. high"], "abc");
    assert_eq!(payload["2024-03-15"]["1. open"].as_str().unwrap().len(), 8);
    // Entries are indexed in the order of the response, newest first.
    assert_eq!((unreadable[0].index, unreadable[1].index), (6, 5));
    // The unreadable records sit in time order among the bars.
    let position = records
        .iter()
        .position(|r| matches!(r, SourceRecord::Unreadable(_)))
        .unwrap();
    assert!(
        matches!(&records[position - 1], SourceRecord::Row(Row { bar: b, .. }) if b.ts == ts("2024-03-13T00:00:00Z"))
    );
}
