//! Alpha Vantage backfills against the fake server: daily and intraday series in UTC, bad
//! entries, every error shape, and the API key kept secret.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alpha_vantage_daily_backfill_stores_and_publishes_the_series_in_utc() {
    let server = AvServer::start().await;
    server.script("IBM", vec![Reply::Fixture("daily_ibm.json")]);
    let service = Service::start(av_settings("src-av-daily", &server)).await;
    let mut client = service.client.clone();

    let job_id = start(&mut client, av_daily("IBM")).await;
    let done = finished(&mut client, &job_id).await;
    assert_eq!(state(&done), JobState::Succeeded, "{done:?}");
    assert_eq!(done.error, "");
    assert_eq!((done.chunks_done, done.chunks_total), (1, 1), "{done:?}");

    let want = daily_fixture_bars("daily_ibm.json", "IBM");
    assert_eq!(want.len(), 29, "the fixture's entries");
    assert_eq!(counts(&done), (29, 0, 0, 0), "{done:?}");

    // Stored: the fixture's bars, each at 00:00 UTC of its trading date.
    let rows = stored(&service, "IBM", Interval::D1).await;
    assert_eq!(rows, want);
    assert_eq!(rows[0].ts, utc("2024-02-12T00:00:00Z"));
    assert_eq!(rows[28].ts, utc("2024-03-22T00:00:00Z"));
    assert!(
        rows.iter().all(|b| b.ts % 86_400 == 0),
        "daily bars at 00:00 UTC"
    );
    let sources: Vec<_> = service
        .store
        .bars("IBM", Interval::D1, 0, Y2100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.source)
        .collect();
    assert!(sources.iter().all(|s| s == "alpha_vantage"), "{sources:?}");

    // Published: one event per bar, with the job id.
    let mut consumer = service.bars_consumer().await;
    let events = bar_events(&service, consumer.as_mut()).await;
    let mut published: Vec<Bar> = events.iter().map(bar_of).collect();
    published.sort_by_key(|b| b.ts);
    assert_eq!(published, want);
    for event in &events {
        assert_eq!(event.backfill_job_id, job_id);
        assert_eq!(event.bar.as_ref().unwrap().source, "alpha_vantage");
    }
    let mut dlq = service.dlq_consumer().await;
    let letters = dead_letters(&service, dlq.as_mut()).await;
    assert!(letters.is_empty(), "{letters:?}");

    // The server was asked exactly once, for the documented query.
    assert_eq!(
        server.queries(),
        vec![params(&[
            ("function", "TIME_SERIES_DAILY"),
            ("symbol", "IBM"),
            ("outputsize", "compact"),
            ("datatype", "json"),
            ("apikey", API_KEY),
        ])]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpha_vantage_intraday_times_are_stored_in_utc_across_the_dst_change() {
    let server = AvServer::start().await;
    server.script("IBM", vec![Reply::Fixture("intraday_ibm_5min_dst.json")]);
    let service = Service::start(av_settings("src-av-dst", &server)).await;
    let mut client = service.client.clone();

    let job_id = start(
        &mut client,
        av_request(
            "IBM",
            PbInterval::Interval5Minutes,
            utc("2024-03-01T05:00:00Z"),
            utc("2024-04-01T04:00:00Z"),
            pb::AlphaVantageOutputSize::Full,
        ),
    )
    .await;
    let done = finished(&mut client, &job_id).await;
    assert_eq!(state(&done), JobState::Succeeded, "{done:?}");

    // Expected independently: keys are US/Eastern wall times; 8 March is EST (UTC-5), 11
    // March EDT (UTC-4) — the clocks changed on 10 March 2024.
    let json = fixture_json("intraday_ibm_5min_dst.json");
    let mut want: Vec<i64> = json["Time Series (5min)"]
        .as_object()
        .unwrap()
        .keys()
        .map(|key| {
            let local = NaiveDateTime::parse_from_str(key, "%Y-%m-%d %H:%M:%S").unwrap();
            let dst = local.date() >= NaiveDate::from_ymd_opt(2024, 3, 10).unwrap();
            local.and_utc().timestamp() + if dst { 4 } else { 5 } * 3_600
        })
        .collect();
    want.sort_unstable();
    assert_eq!(want.len(), 156);

    let rows = stored(&service, "IBM", Interval::M5).await;
    let got: Vec<i64> = rows.iter().map(|b| b.ts).collect();
    assert_eq!(got, want, "stored open times in UTC");
    assert!(got.contains(&utc("2024-03-08T14:30:00Z")), "09:30 EST");
    assert!(got.contains(&utc("2024-03-11T13:30:00Z")), "09:30 EDT");
    assert_eq!(got.first(), Some(&utc("2024-03-08T14:30:00Z")));
    assert_eq!(got.last(), Some(&utc("2024-03-11T19:55:00Z")));
    assert_eq!(counts(&done), (156, 0, 0, 0), "{done:?}");

    let mut consumer = service.bars_consumer().await;
    let events = bar_events(&service, consumer.as_mut()).await;
    let mut published: Vec<i64> = events.iter().map(|e| bar_of(e).ts).collect();
    published.sort_unstable();
    assert_eq!(published, want, "published open times in UTC");

    assert_eq!(
        server.queries(),
        vec![params(&[
            ("function", "TIME_SERIES_INTRADAY"),
            ("symbol", "IBM"),
            ("interval", "5min"),
            ("outputsize", "full"),
            ("extended_hours", "false"),
            ("month", "2024-03"),
            ("datatype", "json"),
            ("apikey", API_KEY),
        ])]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpha_vantage_bad_entries_are_dead_lettered_and_the_rest_stored() {
    let server = AvServer::start().await;
    server.script("IBM", vec![Reply::Fixture("daily_ibm_bad_entries.json")]);
    let service = Service::start(av_settings("src-av-bad", &server)).await;
    let mut client = service.client.clone();

    let job_id = start(&mut client, av_daily("IBM")).await;
    let done = finished(&mut client, &job_id).await;
    assert_eq!(state(&done), JobState::Succeeded, "{done:?}");

    // 2024-03-15 has "2. high": "abc"; 2024-03-14 has no "5. volume".
    let want = daily_fixture_bars("daily_ibm_bad_entries.json", "IBM");
    assert_eq!(want.len(), 27);
    assert!(
        want.iter()
            .all(|b| b.ts != utc("2024-03-15T00:00:00Z") && b.ts != utc("2024-03-14T00:00:00Z"))
    );
    assert_eq!(stored(&service, "IBM", Interval::D1).await, want);
    assert_eq!(counts(&done), (27, 2, 0, 0), "{done:?}");
    let mut consumer = service.bars_consumer().await;
    assert_eq!(bar_events(&service, consumer.as_mut()).await.len(), 27);

    let mut dlq = service.dlq_consumer().await;
    let mut letters: Vec<DeadLetterRecord> = dead_letters(&service, dlq.as_mut())
        .await
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    letters.sort_by_key(|l| component(l).index);
    assert_eq!(letters.len(), 2, "{letters:?}");
    let series = &fixture_json("daily_ibm_bad_entries.json")["Time Series (Daily)"];
    // (index of the entry in the series, date, field, code, reason fragment)
    let cases = [
        (
            5,
            "2024-03-15",
            "high",
            RejectReason::Malformed,
            "\"2. high\" is \"abc\", not a number",
        ),
        (
            6,
            "2024-03-14",
            "volume",
            RejectReason::MissingField,
            "\"5. volume\" is missing",
        ),
    ];
    for (letter, (index, date, field, code, reason)) in letters.iter().zip(cases) {
        let origin = component(letter);
        assert_eq!(origin.input, "alpha_vantage", "{letter:?}");
        assert_eq!(origin.backfill_job_id, job_id, "{letter:?}");
        assert_eq!(origin.index, index, "{letter:?}");
        assert_eq!(letter.field, field, "{letter:?}");
        assert_eq!(letter.reason_code, code as i32, "{letter:?}");
        assert!(letter.reason.contains(reason), "{letter:?}");
        assert_eq!(letter.symbol, "IBM");
        assert_eq!(letter.rejected_by, "ingestion");
        assert_eq!(letter.payload_type, "application/json");
        let payload: serde_json::Value =
            serde_json::from_slice(&letter.payload).expect("payload is JSON");
        assert_eq!(
            payload,
            serde_json::json!({ date: series[date].clone() }),
            "the entry as served, keyed by its time"
        );
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpha_vantage_error_shapes_fail_or_retry_the_job_as_documented() {
    let server = AvServer::start().await;
    let message = fixture_json("error_message.json")["Error Message"]
        .as_str()
        .unwrap()
        .to_owned();
    server.script("ERRM", vec![Reply::Fixture("error_message.json")]);
    server.script(
        "NOTE",
        vec![
            Reply::Fixture("note_rate_limit.json"),
            Reply::Fixture("daily_ibm.json"),
        ],
    );
    server.script(
        "HTTP",
        vec![
            Reply::Status(500, "upstream failed".to_owned()),
            Reply::Fixture("daily_ibm.json"),
        ],
    );
    server.script("MALF", vec![Reply::Fixture("malformed.json")]);
    server.script("TRNC", vec![Reply::Truncated("daily_ibm.json")]);
    server.script(
        "INFO",
        vec![
            Reply::Fixture("information_rate_limit.json"),
            Reply::Fixture("daily_ibm.json"),
        ],
    );
    server.script("PREM", vec![Reply::Fixture("information_premium.json")]);
    server.script("NOSR", vec![Reply::Fixture("no_series.json")]);
    let service = Service::start(av_settings("src-av-errors", &server)).await;
    let mut client = service.client.clone();

    let mut ids = BTreeMap::new();
    for symbol in [
        "ERRM", "NOTE", "HTTP", "MALF", "TRNC", "INFO", "PREM", "NOSR",
    ] {
        ids.insert(symbol, start(&mut client, av_daily(symbol)).await);
    }

    // "Error Message": permanent, the job fails with the server's text.
    let errm = finished(&mut client, &ids["ERRM"]).await;
    assert_eq!(state(&errm), JobState::Failed, "{errm:?}");
    assert!(errm.error.contains(&message), "{errm:?}");
    assert!(errm.finished_at.is_some());
    assert_eq!(counts(&errm), (0, 0, 0, 0));
    assert_eq!(server.queries_for("ERRM").len(), 1, "not retried");

    // Rate-limit "Note", then the series: retried, succeeds.
    let note = finished(&mut client, &ids["NOTE"]).await;
    assert_eq!(state(&note), JobState::Succeeded, "{note:?}");
    assert_eq!(counts(&note), (29, 0, 0, 0), "{note:?}");
    assert_eq!(server.queries_for("NOTE").len(), 2, "one retry");

    // HTTP 500, then the series: retried, succeeds.
    let http = finished(&mut client, &ids["HTTP"]).await;
    assert_eq!(state(&http), JobState::Succeeded, "{http:?}");
    assert_eq!(counts(&http), (29, 0, 0, 0), "{http:?}");
    assert_eq!(server.queries_for("HTTP").len(), 2, "one retry");

    // Rate-limit "Information" (requests per second), then the series: retried, succeeds.
    let info = finished(&mut client, &ids["INFO"]).await;
    assert_eq!(state(&info), JobState::Succeeded, "{info:?}");
    assert_eq!(counts(&info), (29, 0, 0, 0), "{info:?}");
    assert_eq!(server.queries_for("INFO").len(), 2, "one retry");

    // Premium-endpoint "Information": permanent.
    let prem = finished(&mut client, &ids["PREM"]).await;
    assert_eq!(state(&prem), JobState::Failed, "{prem:?}");
    assert!(prem.error.contains("premium endpoint"), "{prem:?}");
    assert_eq!(server.queries_for("PREM").len(), 1, "not retried");

    // Meta data but no time series: permanent.
    let nosr = finished(&mut client, &ids["NOSR"]).await;
    assert_eq!(state(&nosr), JobState::Failed, "{nosr:?}");
    assert!(nosr.error.contains("no time series"), "{nosr:?}");
    assert_eq!(server.queries_for("NOSR").len(), 1, "not retried");

    // Malformed JSON: permanent.
    let malf = finished(&mut client, &ids["MALF"]).await;
    assert_eq!(state(&malf), JobState::Failed, "{malf:?}");
    assert!(malf.error.contains("not valid JSON"), "{malf:?}");
    assert_eq!(server.queries_for("MALF").len(), 1, "not retried");

    // A body cut mid-way: retryable. With max_retries = 2 a fetch makes 3 attempts; the job
    // then pauses and asks again (docs/ingestion.md: "then the job pauses until the source
    // answers"), so it is still running after more requests than one fetch makes.
    crate::support::service::eventually("TRNC retried past one fetch", JOB_DEADLINE, || async {
        (server.queries_for("TRNC").len() >= 5).then_some(())
    })
    .await;
    let trnc = job(&mut client, &ids["TRNC"]).await;
    assert_eq!(state(&trnc), JobState::Running, "not failed: {trnc:?}");
    assert_eq!(trnc.finished_at, None);
    assert!(stored(&service, "TRNC", Interval::D1).await.is_empty());
    // Once the server answers in full, the paused job completes.
    server.script("TRNC", vec![Reply::Fixture("daily_ibm.json")]);
    let trnc = finished(&mut client, &ids["TRNC"]).await;
    assert_eq!(state(&trnc), JobState::Succeeded, "{trnc:?}");
    assert_eq!(counts(&trnc), (29, 0, 0, 0), "{trnc:?}");

    // Stored and published: the three series that loaded, nothing of the failed jobs.
    let want = daily_fixture_bars("daily_ibm.json", "X");
    let mut consumer = service.bars_consumer().await;
    let events = bar_events(&service, consumer.as_mut()).await;
    for (symbol, n) in [
        ("ERRM", 0),
        ("NOTE", 29),
        ("HTTP", 29),
        ("MALF", 0),
        ("TRNC", 29),
        ("INFO", 29),
        ("PREM", 0),
        ("NOSR", 0),
    ] {
        let rows = stored(&service, symbol, Interval::D1).await;
        assert_eq!(rows.len(), n, "{symbol} rows");
        let expected: Vec<Bar> = want
            .iter()
            .take(n)
            .map(|b| Bar {
                symbol: symbol.to_owned(),
                ..b.clone()
            })
            .collect();
        assert_eq!(rows, expected, "{symbol} rows");
        let published = events
            .iter()
            .filter(|e| e.bar.as_ref().unwrap().symbol == symbol)
            .count();
        assert_eq!(published, n, "{symbol} events");
    }
    service.stop().await;
}

/// Every row of every table of `schema`, as JSON text.
async fn all_rows(schema: &str) -> Vec<String> {
    let url = stockcast_testkit::POSTGRES.require();
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let mut out = Vec::new();
    for table in ["bars", "corrections", "backfill_jobs", "backfill_chunks"] {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT row_to_json(t)::text FROM \"{schema}\".{table} t"
        )))
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
        out.extend(rows.into_iter().map(|r| format!("{table}: {r}")));
    }
    pool.close().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_appears_in_job_errors_dead_letters_or_job_records() {
    let server = AvServer::start().await;
    let echo =
        format!("{{\"Error Message\": \"Invalid API call for apikey={API_KEY}. Please retry.\"}}");
    server.script("KEYA", vec![Reply::Status(200, echo)]);
    server.script(
        "KEYB",
        vec![
            Reply::Status(500, format!("upstream failed for apikey={API_KEY}")),
            Reply::Truncated("daily_ibm.json"),
            Reply::Fixture("note_rate_limit.json"),
            Reply::Fixture("daily_ibm_bad_entries.json"),
        ],
    );
    let url = stockcast_testkit::POSTGRES.require();
    let schema = stockcast_testkit::unique("ingest_key");
    let store = crate::support::service::store_at(&url, &schema).await;
    let mut key_settings = av_settings("src-av-key", &server);
    key_settings.alpha_vantage.max_retries = 5;
    let service = Service::start_on(key_settings, store).await;
    let mut client = service.client.clone();

    let a = start(&mut client, av_daily("KEYA")).await;
    let b = start(&mut client, av_daily("KEYB")).await;
    let job_a = finished(&mut client, &a).await;
    let job_b = finished(&mut client, &b).await;
    assert_eq!(state(&job_a), JobState::Failed, "{job_a:?}");
    assert_eq!(state(&job_b), JobState::Succeeded, "{job_b:?}");
    assert_eq!(counts(&job_b), (27, 2, 0, 0), "{job_b:?}");

    // The key was sent with every request, so the checks below are not vacuous.
    let queries = server.queries();
    assert_eq!(queries.len(), 5, "{queries:?}");
    assert!(queries.iter().all(|q| q["apikey"] == API_KEY));

    let mut texts = Vec::new();
    // GetBackfill: the server's text is kept, with the key redacted.
    assert!(
        job_a.error.contains("Invalid API call for apikey=") && job_a.error.contains("redacted"),
        "{}",
        job_a.error
    );
    texts.push(("GetBackfill.error", job_a.error.clone()));
    texts.push(("GetBackfill (failed job)", format!("{job_a:?}")));
    texts.push(("GetBackfill (succeeded job)", format!("{job_b:?}")));
    let listed = client
        .list_backfills(pb::ListBackfillsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.jobs.len(), 2);
    texts.push(("ListBackfills", format!("{listed:?}")));
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    texts.push(("GetStatus", format!("{status:?}")));

    // Dead letters: the two bad entries, raw bytes included.
    let mut dlq = service.dlq_consumer().await;
    let letters = dead_letters(&service, dlq.as_mut()).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (letter, raw) in &letters {
        assert!(
            !raw.windows(API_KEY.len()).any(|w| w == API_KEY.as_bytes()),
            "the API key is in a dead letter: {letter:?}"
        );
        texts.push(("dead letter", format!("{letter:?}")));
    }
    // Events, raw.
    let mut consumer = service.bars_consumer().await;
    for message in read_to_marker(&*service.bus, consumer.as_mut(), &service.topic).await {
        assert!(
            !message
                .payload
                .windows(API_KEY.len())
                .any(|w| w == API_KEY.as_bytes()),
            "the API key is in a bar event"
        );
    }
    // The job records as stored, every column of every table.
    let rows = all_rows(&schema).await;
    assert!(
        rows.iter()
            .filter(|r| r.starts_with("backfill_jobs:"))
            .count()
            == 2,
        "{rows:?}"
    );
    for row in rows {
        texts.push(("database row", row));
    }
    for (what, text) in &texts {
        assert!(
            !text.contains(API_KEY),
            "the API key leaked in {what}: {text}"
        );
    }
    service.stop().await;
}
