//! The Alpha Vantage source against a local HTTP server serving recorded responses
//! (`stockcast_testkit::alpha_vantage`): what a series loads as here, how errors end a fetch in
//! [`errors`], and retries, budgets and the API key's secrecy in [`retries`].

mod errors;
mod retries;

use std::sync::Arc;
use std::time::{Duration, Instant};

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
use stockcast_testkit::alpha_vantage::{API_KEY, AvServer, Reply};

use crate::logs::Logs;

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
    let server = AvServer::serving(vec![Reply::Fixture("daily_ibm.json")]).await;
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
        serde_json::from_slice(&stockcast_testkit::alpha_vantage::fixture("daily_ibm.json"))
            .unwrap();
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
    let server = AvServer::serving(vec![Reply::Fixture("intraday_ibm_5min_dst.json")]).await;
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
    let server = AvServer::serving(vec![Reply::Fixture("intraday_ibm_5min_extended.json")]).await;
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
    let server = AvServer::serving(vec![
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
    let server = AvServer::serving(vec![Reply::Fixture("daily_ibm.json")]).await;
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
    let server = AvServer::serving(vec![Reply::Fixture("daily_ibm.json")]).await;
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
