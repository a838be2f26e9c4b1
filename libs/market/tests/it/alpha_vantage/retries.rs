//! Retries (server errors, 429, rate-limit notices, cut bodies, timeouts), the request budget,
//! and the API key, which never leaves the request.

use super::*;

#[tokio::test]
async fn a_server_error_is_retried_until_it_succeeds() {
    let server = AvServer::serving(vec![
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
    let server = AvServer::serving(vec![Reply::Status(500, "Internal Server Error".into())]).await;
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
    let server = AvServer::serving(vec![
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
        let server = AvServer::serving(vec![
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
    let server = AvServer::serving(vec![Reply::Fixture("note_rate_limit.json")]).await;
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
    let server = AvServer::serving(vec![
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
    let server = AvServer::serving(vec![Reply::Fixture("daily_ibm.json")]).await;
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
    let server = AvServer::serving(vec![Reply::Fixture("daily_ibm.json")]).await;
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
    let server = AvServer::serving(vec![
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

    let server = AvServer::serving(vec![Reply::Truncated("daily_ibm.json")]).await;
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
    let server =
        AvServer::serving(vec![Reply::Slow(Duration::from_secs(5), "daily_ibm.json")]).await;
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
    let server = AvServer::serving(vec![
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
    let queries = server.raw_queries();
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
