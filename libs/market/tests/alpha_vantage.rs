//! The Alpha Vantage source against a local HTTP server serving recorded responses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod av_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use av_support::{API_KEY, AvServer, Logs, Reply};
use chrono::{DateTime, Utc};
use stockcast_market::sources::alpha_vantage::{
    AlphaVantage, AlphaVantageParams, AlphaVantageSettings, OutputSize, RequestBudget,
    until_next_utc_midnight,
};
use stockcast_market::sources::csv::CsvParams;
use stockcast_market::sources::{
    BackfillSpec, Chunk, ChunkPosition, Row, Source, SourceError, SourceParams, SourceRecord,
};
use stockcast_market::{Bar, Interval};
use stockcast_proto::stockcast::types::v1::RejectReason;

fn ts(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text).unwrap().timestamp()
}

fn settings(server: &AvServer) -> AlphaVantageSettings {
    AlphaVantageSettings {
        base_url: server.url.clone(),
        api_key: stockcast_runtime::Secret::new(API_KEY),
        calls_per_minute: 1_000,
        calls_per_day: 1_000,
        request_timeout_ms: 5_000,
        max_retries: 3,
        retry_base_ms: 10,
    }
}

fn source(server: &AvServer) -> AlphaVantage {
    AlphaVantage::new(settings(server)).unwrap()
}

fn spec(interval: Interval, output_size: OutputSize, extended_hours: bool) -> BackfillSpec {
    BackfillSpec {
        symbols: vec!["IBM".into()],
        interval,
        start: ts("2000-01-01T00:00:00Z"),
        end: ts("2030-01-01T00:00:00Z"),
        params: SourceParams::AlphaVantage(AlphaVantageParams {
            output_size,
            extended_hours,
        }),
    }
}

fn daily() -> BackfillSpec {
    spec(Interval::D1, OutputSize::Compact, false)
}

fn whole(key: &str) -> Chunk {
    Chunk {
        key: key.into(),
        symbol: key.split('/').next().map(str::to_owned),
        position: ChunkPosition::Whole,
    }
}

fn month(symbol: &str, month: &str) -> Chunk {
    Chunk {
        key: format!("{symbol}/{month}"),
        symbol: Some(symbol.into()),
        position: ChunkPosition::Month(month.into()),
    }
}

fn bars(records: &[SourceRecord]) -> Vec<Bar> {
    records
        .iter()
        .filter_map(|r| match r {
            SourceRecord::Row(Row { bar: b, .. }) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn assert_ascending(bars: &[Bar]) {
    assert!(bars.windows(2).all(|w| w[0].ts < w[1].ts), "not ascending");
}

fn expected_params(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_key(text: &str) {
    assert!(!text.contains(API_KEY), "the API key leaked: {text}");
}

#[tokio::test]
async fn a_daily_series_loads_with_the_exact_parameters() {
    let server = AvServer::start(vec![Reply::Fixture("daily_ibm.json")]).await;
    let av = source(&server);
    let spec = daily();
    let chunks = av.plan(&spec).await.unwrap();
    assert_eq!(chunks, vec![whole("IBM/daily")]);

    let records = av.fetch(&spec, &chunks[0]).await.unwrap();
    let bars = bars(&records);
    assert_eq!(records.len(), 29);
    assert_eq!(bars.len(), 29);
    assert_ascending(&bars);
    // The oldest entry of the fixture, at 00:00 UTC of its trading date.
    assert_eq!(bars[0].ts, ts("2024-02-12T00:00:00Z"));
    assert_eq!(bars[0].symbol, "IBM");
    assert_eq!(bars[0].interval, Interval::D1);
    assert_eq!(bars[28].ts, ts("2024-03-22T00:00:00Z"));
    // Presidents' Day is not a trading day.
    assert!(bars.iter().all(|b| b.ts != ts("2024-02-19T00:00:00Z")));
    let fixture: serde_json::Value =
        serde_json::from_slice(&av_support::fixture("daily_ibm.json")).unwrap();
    let entry = &fixture["Time Series (Daily)"]["2024-02-12"];
    let number = |field: &str| entry[field].as_str().unwrap().parse::<f64>().unwrap();
    assert_eq!(
        (
            bars[0].open,
            bars[0].high,
            bars[0].low,
            bars[0].close,
            bars[0].volume
        ),
        (
            number("1. open"),
            number("2. high"),
            number("3. low"),
            number("4. close"),
            number("5. volume")
        )
    );

    assert_eq!(
        server.params(0),
        expected_params(&[
            ("function", "TIME_SERIES_DAILY"),
            ("symbol", "IBM"),
            ("outputsize", "compact"),
            ("datatype", "json"),
            ("apikey", API_KEY),
        ])
    );

    let full = spec_with_output(daily(), OutputSize::Full);
    av.fetch(&full, &whole("IBM/daily")).await.unwrap();
    assert_eq!(server.params(1)["outputsize"], "full");
}

fn spec_with_output(mut spec: BackfillSpec, output_size: OutputSize) -> BackfillSpec {
    if let SourceParams::AlphaVantage(params) = &mut spec.params {
        params.output_size = output_size;
    }
    spec
}

#[tokio::test]
async fn intraday_times_convert_from_us_eastern_across_the_dst_change() {
    let server = AvServer::start(vec![Reply::Fixture("intraday_ibm_5min_dst.json")]).await;
    let av = source(&server);
    let spec = BackfillSpec {
        start: ts("2024-03-01T05:00:00Z"),
        end: ts("2024-04-01T04:00:00Z"),
        ..spec(Interval::M5, OutputSize::Full, false)
    };
    let chunks = av.plan(&spec).await.unwrap();
    assert_eq!(chunks, vec![month("IBM", "2024-03")]);
    let bars = bars(&av.fetch(&spec, &chunks[0]).await.unwrap());
    assert_eq!(bars.len(), 156);
    assert_ascending(&bars);

    // Friday 8 March is on EST (UTC-5), Monday 11 March on EDT (UTC-4).
    assert_eq!(bars[0].ts, ts("2024-03-08T14:30:00Z"));
    assert_eq!(bars[77].ts, ts("2024-03-08T20:55:00Z"));
    assert_eq!(bars[78].ts, ts("2024-03-11T13:30:00Z"));
    assert_eq!(bars[155].ts, ts("2024-03-11T19:55:00Z"));
    assert!(bars.iter().all(|b| b.interval == Interval::M5));
    assert!(bars.iter().all(|b| b.ts % 300 == 0));

    assert_eq!(
        server.params(0),
        expected_params(&[
            ("function", "TIME_SERIES_INTRADAY"),
            ("symbol", "IBM"),
            ("interval", "5min"),
            ("outputsize", "full"),
            ("extended_hours", "false"),
            ("month", "2024-03"),
            ("datatype", "json"),
            ("apikey", API_KEY),
        ])
    );
}

#[tokio::test]
async fn extended_hours_compact_asks_for_the_latest_bars() {
    let server = AvServer::start(vec![Reply::Fixture("intraday_ibm_5min_extended.json")]).await;
    let av = source(&server);
    let spec = spec(Interval::M5, OutputSize::Compact, true);
    let chunks = av.plan(&spec).await.unwrap();
    assert_eq!(chunks, vec![whole("IBM/latest")]);
    let bars = bars(&av.fetch(&spec, &chunks[0]).await.unwrap());
    assert_eq!(bars.len(), 192);
    assert_ascending(&bars);
    // 04:00 and 19:55 EST.
    assert_eq!(bars[0].ts, ts("2024-03-08T09:00:00Z"));
    assert_eq!(bars[191].ts, ts("2024-03-09T00:55:00Z"));
    assert_eq!(
        server.params(0),
        expected_params(&[
            ("function", "TIME_SERIES_INTRADAY"),
            ("symbol", "IBM"),
            ("interval", "5min"),
            ("outputsize", "compact"),
            ("extended_hours", "true"),
            ("datatype", "json"),
            ("apikey", API_KEY),
        ])
    );
}

#[tokio::test]
async fn only_bars_within_the_range_are_kept() {
    let server = AvServer::start(vec![
        Reply::Fixture("daily_ibm.json"),
        Reply::Fixture("intraday_ibm_5min_dst.json"),
    ])
    .await;
    let av = source(&server);

    let range = BackfillSpec {
        start: ts("2024-03-01T00:00:00Z"),
        end: ts("2024-03-08T00:00:00Z"),
        ..daily()
    };
    let got: Vec<i64> = bars(&av.fetch(&range, &whole("IBM/daily")).await.unwrap())
        .iter()
        .map(|b| b.ts)
        .collect();
    let want: Vec<i64> = ["01", "04", "05", "06", "07"]
        .iter()
        .map(|d| ts(&format!("2024-03-{d}T00:00:00Z")))
        .collect();
    assert_eq!(got, want);

    // The last hour of Friday and the first half hour of Monday; `end` is exclusive.
    let range = BackfillSpec {
        start: ts("2024-03-08T20:00:00Z"),
        end: ts("2024-03-11T14:00:00Z"),
        ..spec(Interval::M5, OutputSize::Full, false)
    };
    let got = bars(&av.fetch(&range, &month("IBM", "2024-03")).await.unwrap());
    assert_eq!(got.len(), 12 + 6);
    assert_eq!(got[0].ts, ts("2024-03-08T20:00:00Z"));
    assert_eq!(got[17].ts, ts("2024-03-11T13:55:00Z"));
}

#[tokio::test]
async fn intraday_history_is_planned_month_by_month() {
    let server = AvServer::start(vec![Reply::Fixture("daily_ibm.json")]).await;
    let av = source(&server);
    let spec = BackfillSpec {
        symbols: vec!["IBM".into(), "MSFT".into()],
        start: ts("2024-01-15T00:00:00Z"),
        end: ts("2024-04-01T00:00:00Z"),
        ..spec(Interval::M1, OutputSize::Full, false)
    };
    let keys: Vec<String> = av
        .plan(&spec)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert_eq!(
        keys,
        [
            "IBM/2024-01",
            "IBM/2024-02",
            "IBM/2024-03",
            "MSFT/2024-01",
            "MSFT/2024-02",
            "MSFT/2024-03"
        ]
    );
    // Planning is deterministic and asks nothing of the server.
    assert_eq!(av.plan(&spec).await.unwrap(), av.plan(&spec).await.unwrap());
    assert!(server.queries().is_empty());
}

#[tokio::test]
async fn plans_that_cannot_work_are_refused() {
    let server = AvServer::start(vec![Reply::Fixture("daily_ibm.json")]).await;
    let av = source(&server);
    let fatal = |r: Result<Vec<Chunk>, SourceError>| match r {
        Err(SourceError::Fatal(message)) => message,
        other => panic!("{other:?}"),
    };

    let empty = BackfillSpec {
        symbols: vec![],
        ..daily()
    };
    assert!(fatal(av.plan(&empty).await).contains("symbols is empty"));

    let csv = BackfillSpec {
        params: SourceParams::Csv(CsvParams::default()),
        ..daily()
    };
    assert!(fatal(av.plan(&csv).await).contains("source csv"));

    let keyless = AlphaVantage::new(AlphaVantageSettings {
        api_key: stockcast_runtime::Secret::default(),
        ..settings(&server)
    })
    .unwrap();
    assert!(fatal(keyless.plan(&daily()).await).contains("alpha_vantage.api_key"));
}

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
        let server = AvServer::start(vec![reply.clone()]).await;
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
    let server = AvServer::start(vec![Reply::Fixture("daily_ibm.json")]).await;
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
    let server = AvServer::start(vec![Reply::Fixture("daily_ibm_bad_entries.json")]).await;
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

#[tokio::test]
async fn a_server_error_is_retried_until_it_succeeds() {
    let server = AvServer::start(vec![
        Reply::Status(500, "Internal Server Error".into()),
        Reply::Status(503, "Service Unavailable".into()),
        Reply::Fixture("daily_ibm.json"),
    ])
    .await;
    let av = source(&server);
    let records = av.fetch(&daily(), &whole("IBM/daily")).await.unwrap();
    assert_eq!(records.len(), 29);
    assert_eq!(server.queries().len(), 3);
    // Every attempt is the same request.
    assert_eq!(server.params(0), server.params(2));
}

#[tokio::test]
async fn a_persistent_server_error_is_retryable_after_the_last_retry() {
    let server = AvServer::start(vec![Reply::Status(500, "Internal Server Error".into())]).await;
    let av = source(&server);
    match av.fetch(&daily(), &whole("IBM/daily")).await {
        Err(SourceError::Retryable {
            reason,
            retry_after,
        }) => {
            assert_eq!(
                reason,
                "alpha vantage IBM/daily: HTTP 500 Internal Server Error: Internal Server Error \
                 (after 4 attempts)"
            );
            assert!(retry_after <= Duration::from_millis(80), "{retry_after:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.queries().len(), 4);
}

#[tokio::test]
async fn http_429_is_retried() {
    let server = AvServer::start(vec![
        Reply::Status(429, "slow down".into()),
        Reply::Fixture("daily_ibm.json"),
    ])
    .await;
    let records = source(&server)
        .fetch(&daily(), &whole("IBM/daily"))
        .await
        .unwrap();
    assert_eq!(records.len(), 29);
    assert_eq!(server.queries().len(), 2);
}

#[tokio::test]
async fn rate_limit_notices_back_off_then_succeed() {
    for notice in ["note_rate_limit.json", "information_rate_limit.json"] {
        let server = AvServer::start(vec![
            Reply::Fixture(notice),
            Reply::Fixture(notice),
            Reply::Fixture("daily_ibm.json"),
        ])
        .await;
        let av = AlphaVantage::new(AlphaVantageSettings {
            retry_base_ms: 100,
            ..settings(&server)
        })
        .unwrap();
        let started = Instant::now();
        let records = av.fetch(&daily(), &whole("IBM/daily")).await.unwrap();
        assert_eq!(records.len(), 29, "{notice}");
        assert_eq!(server.queries().len(), 3, "{notice}");
        // Two backoffs of at least half of 100 ms and 200 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{notice}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_rate_limit_that_outlasts_the_retries_asks_for_a_minute() {
    let server = AvServer::start(vec![Reply::Fixture("note_rate_limit.json")]).await;
    match source(&server).fetch(&daily(), &whole("IBM/daily")).await {
        Err(SourceError::Retryable {
            reason,
            retry_after,
        }) => {
            assert!(
                reason.starts_with(
                    "alpha vantage IBM/daily: rate limited: Thank you for using Alpha Vantage! \
                     Our standard API call frequency is 5 calls per minute"
                ),
                "{reason}"
            );
            assert!(reason.ends_with("(after 4 attempts)"), "{reason}");
            assert_eq!(retry_after, Duration::from_secs(60));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.queries().len(), 4);
}

fn assert_until_midnight(retry_after: Duration) {
    let want = until_next_utc_midnight(Utc::now());
    assert!(
        retry_after >= want && retry_after - want < Duration::from_secs(5),
        "{retry_after:?} vs {want:?}"
    );
}

#[tokio::test]
async fn the_daily_limit_notice_pauses_until_utc_midnight_without_retrying() {
    let server = AvServer::start(vec![
        Reply::Fixture("information_daily_limit.json"),
        Reply::Fixture("daily_ibm.json"),
    ])
    .await;
    let av = source(&server);
    match av.fetch(&daily(), &whole("IBM/daily")).await {
        Err(SourceError::Retryable {
            reason,
            retry_after,
        }) => {
            assert!(
                reason.starts_with("alpha vantage IBM/daily: daily limit: We have detected"),
                "{reason}"
            );
            assert_until_midnight(retry_after);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.queries().len(), 1);
    assert_eq!(av.budget_status().1, 0);
    // The rest of the day's fetches stop before asking.
    assert!(matches!(
        av.fetch(&daily(), &whole("IBM/daily")).await,
        Err(SourceError::Retryable { .. })
    ));
    assert_eq!(server.queries().len(), 1);
}

#[tokio::test]
async fn the_minute_budget_delays_calls() {
    let server = AvServer::start(vec![Reply::Fixture("daily_ibm.json")]).await;
    let window = Duration::from_millis(400);
    let budget = Arc::new(RequestBudget::with_window(2, window, 100));
    let av = AlphaVantage::with_budget(settings(&server), budget).unwrap();
    assert_eq!(av.budget_status(), (2, 100));

    let started = Instant::now();
    av.fetch(&daily(), &whole("IBM/daily")).await.unwrap();
    av.fetch(&daily(), &whole("IBM/daily")).await.unwrap();
    assert_eq!(av.budget_status(), (0, 98));
    // A clone shares the budget: its call waits for the first call to leave the window.
    av.clone()
        .fetch(&daily(), &whole("IBM/daily"))
        .await
        .unwrap();
    assert!(started.elapsed() >= window, "{:?}", started.elapsed());
    assert_eq!(server.queries().len(), 3);
    assert_eq!(av.budget_status().1, 97);
}

#[tokio::test]
async fn a_spent_daily_budget_is_retryable_at_utc_midnight() {
    let server = AvServer::start(vec![Reply::Fixture("daily_ibm.json")]).await;
    let av = AlphaVantage::new(AlphaVantageSettings {
        calls_per_day: 2,
        ..settings(&server)
    })
    .unwrap();
    av.fetch(&daily(), &whole("IBM/daily")).await.unwrap();
    av.fetch(&daily(), &whole("IBM/daily")).await.unwrap();
    assert_eq!(av.budget_status(), (0, 0));
    match av.fetch(&daily(), &whole("IBM/daily")).await {
        Err(SourceError::Retryable {
            reason,
            retry_after,
        }) => {
            assert_eq!(
                reason,
                "alpha vantage IBM/daily: the daily budget of 2 Alpha Vantage calls is spent"
            );
            assert_until_midnight(retry_after);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.queries().len(), 2);
}

#[tokio::test]
async fn a_body_cut_mid_way_is_retried() {
    let server = AvServer::start(vec![
        Reply::Truncated("daily_ibm.json"),
        Reply::Fixture("daily_ibm.json"),
    ])
    .await;
    let records = source(&server)
        .fetch(&daily(), &whole("IBM/daily"))
        .await
        .unwrap();
    assert_eq!(records.len(), 29);
    assert_eq!(server.queries().len(), 2);

    let server = AvServer::start(vec![Reply::Truncated("daily_ibm.json")]).await;
    let av = AlphaVantage::new(AlphaVantageSettings {
        max_retries: 1,
        ..settings(&server)
    })
    .unwrap();
    match av.fetch(&daily(), &whole("IBM/daily")).await {
        Err(SourceError::Retryable { reason, .. }) => {
            assert!(
                reason.starts_with("alpha vantage IBM/daily: response body cut short"),
                "{reason}"
            );
            assert!(reason.ends_with("(after 2 attempts)"), "{reason}");
            no_key(&reason);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable() {
    let server = AvServer::start(vec![Reply::Slow(Duration::from_secs(5), "daily_ibm.json")]).await;
    let av = AlphaVantage::new(AlphaVantageSettings {
        request_timeout_ms: 100,
        max_retries: 0,
        ..settings(&server)
    })
    .unwrap();
    match av.fetch(&daily(), &whole("IBM/daily")).await {
        Err(SourceError::Retryable { reason, .. }) => assert_eq!(
            reason,
            "alpha vantage IBM/daily: request timed out after 100 ms (after 1 attempt)"
        ),
        other => panic!("{other:?}"),
    }

    // A port nobody listens on: bind one, then free it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let av = AlphaVantage::new(AlphaVantageSettings {
        base_url: format!("http://127.0.0.1:{port}/query"),
        max_retries: 1,
        ..settings(&server)
    })
    .unwrap();
    match av.fetch(&daily(), &whole("IBM/daily")).await {
        Err(SourceError::Retryable { reason, .. }) => {
            assert!(
                reason
                    .starts_with("alpha vantage IBM/daily: cannot connect: client error (Connect)"),
                "{reason}"
            );
            no_key(&reason);
        }
        other => panic!("{other:?}"),
    }
}

/// The key is in every request and in no error message, log line or debug output.
#[tokio::test]
async fn the_api_key_never_leaves_the_request() {
    let (logs, _guard) = Logs::capture();
    let echo =
        format!("{{\"Error Message\": \"Invalid API call for apikey={API_KEY}. Please retry.\"}}");
    let server = AvServer::start(vec![
        Reply::Status(500, format!("upstream failed for apikey={API_KEY}")),
        Reply::Truncated("daily_ibm.json"),
        Reply::Fixture("note_rate_limit.json"),
        Reply::Fixture("daily_ibm_bad_entries.json"),
        Reply::Status(200, echo),
    ])
    .await;
    let av = source(&server);
    let mut texts = vec![format!("{av:?}"), format!("{:?}", settings(&server))];

    let records = av.fetch(&daily(), &whole("IBM/daily")).await.unwrap();
    for record in &records {
        if let SourceRecord::Unreadable(u) = record {
            texts.push(format!("{u:?}"));
            texts.push(String::from_utf8_lossy(&u.payload).into_owned());
        }
    }
    match av.fetch(&daily(), &whole("IBM/daily")).await {
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains("apikey=[redacted]"),
                "the server's text is kept, without the key: {text}"
            );
            texts.push(text);
        }
        Ok(records) => panic!("{records:?}"),
    }
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused = AlphaVantage::new(AlphaVantageSettings {
        base_url: format!("http://127.0.0.1:{port}/query"),
        max_retries: 0,
        ..settings(&server)
    })
    .unwrap();
    texts.push(
        refused
            .fetch(&daily(), &whole("IBM/daily"))
            .await
            .unwrap_err()
            .to_string(),
    );

    // Every request carried the key.
    let queries = server.queries();
    assert_eq!(queries.len(), 5);
    assert!(
        queries
            .iter()
            .all(|q| q.contains(&format!("apikey={API_KEY}")))
    );

    let logged = logs.text();
    assert!(
        logged.contains("apikey=%5Bredacted%5D"),
        "requests are logged with the key redacted:\n{logged}"
    );
    assert!(logged.contains("alpha vantage request failed, retrying"));
    texts.push(logged);
    for text in texts {
        no_key(&text);
    }
}
