//! The data path across real processes: `stockcast serve ingestion` and `stockcast serve
//! feature-store` on PostgreSQL, Redis and Kafka. Bars pushed to ingestion become features the
//! feature store serves, online and point-in-time, equal to the batch computation; a
//! corrected bar is recomputed; both services stop cleanly on SIGTERM.

use std::time::{Duration, Instant};

use stockcast_feature_store::view::{View, default_view};
use stockcast_market::Interval;
use stockcast_market::sources::synthetic::{SyntheticParams, SyntheticPath};
use stockcast_proto::stockcast::features::v1 as fpb;
use stockcast_proto::stockcast::features::v1::feature_store_service_client::FeatureStoreServiceClient;
use stockcast_proto::stockcast::ingestion::v1 as ipb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use stockcast_testkit::process::ChildGuard;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(90);

/// `stockcast serve SERVICE` on `127.0.0.1:grpc` with `env`.
fn start(service: &str, grpc: u16, env: &[(String, String)]) -> ChildGuard {
    let mut command = super::stockcast();
    command
        .args([
            "serve",
            service,
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--set",
            "server.metrics_addr=127.0.0.1:0",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)));
    ChildGuard::spawn(service, command)
}

async fn connect(port: u16, who: &mut ChildGuard) -> Channel {
    let deadline = Instant::now() + DEADLINE;
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
    loop {
        if let Ok(channel) = endpoint.connect().await {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let serving = health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok_and(|r| r.into_inner().status == 1);
            if serving {
                return channel;
            }
        }
        who.assert_running();
        assert!(
            Instant::now() < deadline,
            "{} never became SERVING\n{}",
            who.name(),
            who.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Recent daily bars of `symbol` (weekdays, all closed before now).
fn recent_bars(symbol: &str, n: usize, seed: u64) -> Vec<stockcast_market::Bar> {
    let today = chrono::Utc::now().timestamp() / 86_400 * 86_400;
    let start = today - (n as i64 * 7 / 5 + 3) * 86_400;
    let params = SyntheticParams {
        seed,
        ..SyntheticParams::default()
    };
    let bars: Vec<_> = SyntheticPath::new(symbol, Interval::D1, start, &params)
        .unwrap()
        .take_while(|b| b.ts + 86_400 <= chrono::Utc::now().timestamp())
        .collect();
    bars[bars.len().saturating_sub(n)..].to_vec()
}

async fn push(client: &mut IngestionServiceClient<Channel>, bars: &[stockcast_market::Bar]) {
    let request = ipb::PushBarsRequest {
        bars: bars.iter().map(|b| b.to_proto("e2e")).collect(),
        ..Default::default()
    };
    let reply = client
        .push_bars(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.rejected, 0, "{:?}", reply.rejections);
}

/// Every stored row of `symbols` through GetHistoricalFeatures (span).
async fn span(
    client: &mut FeatureStoreServiceClient<Channel>,
    symbols: &[&str],
) -> Vec<fpb::HistoricalFeatureRow> {
    let mut stream = client
        .get_historical_features(fpb::GetHistoricalFeaturesRequest {
            feature_view: "default".into(),
            feature_view_version: 0,
            entities: Some(fpb::get_historical_features_request::Entities::Span(
                fpb::EntitySpan {
                    symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
                    range: Some(stockcast_proto::stockcast::types::v1::TimeRange {
                        start: Some(prost_types::Timestamp {
                            seconds: 0,
                            nanos: 0,
                        }),
                        end: None,
                    }),
                },
            )),
            label: None,
            max_rows_per_chunk: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut rows = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        rows.extend(chunk.rows);
    }
    rows
}

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Waits until the stored rows of `series` are exactly the batch computation.
async fn await_exact(
    client: &mut FeatureStoreServiceClient<Channel>,
    view: &View,
    series: &[Vec<stockcast_market::Bar>],
    fs: &ChildGuard,
) {
    let symbols: Vec<&str> = series.iter().map(|s| s[0].symbol.as_str()).collect();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rows = span(client, &symbols).await;
        let mut want = Vec::new();
        for s in series {
            for (bar, values) in s.iter().zip(view.compute(s)) {
                want.push((bar.symbol.clone(), view.event_time(bar.ts), values));
            }
        }
        want.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let exact = rows.len() == want.len()
            && rows.iter().zip(&want).all(|(r, w)| {
                r.symbol == w.0
                    && r.event_time.map(|t| t.seconds) == Some(w.1)
                    && same(&r.values, &w.2)
            });
        if exact {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "feature rows never matched the batch computation ({} of {} rows)\n{}",
            rows.len(),
            want.len(),
            fs.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_bars_become_served_features_across_processes() {
    let pg = stockcast_testkit::POSTGRES.require();
    let redis = stockcast_testkit::REDIS.require();
    let kafka = stockcast_testkit::KAFKA.require();
    let (topic, group) = stockcast_bus::conformance::names("e2e-path");
    let case = stockcast_testkit::unique("e2e");
    let env = |prefix: &str, pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (format!("STOCKCAST_{prefix}__{k}"), (*v).to_owned()))
            .collect()
    };
    let (ingestion_port, features_port) = (
        stockcast_testkit::free_port(),
        stockcast_testkit::free_port(),
    );
    let mut ingestion = start(
        "ingestion",
        ingestion_port,
        &env(
            "INGESTION",
            &[
                ("STORAGE__URL", &pg),
                ("STORAGE__SCHEMA", &format!("{case}_ing")),
                ("BUS__KIND", "kafka"),
                ("BUS__KAFKA__BROKERS", &kafka),
                ("TOPICS__BARS", &topic),
                ("TOPICS__PARTITIONS", "2"),
            ],
        ),
    );
    let mut features = start(
        "feature-store",
        features_port,
        &env(
            "FEATURE_STORE",
            &[
                ("ONLINE__KIND", "redis"),
                ("ONLINE__REDIS__URL", &redis),
                ("ONLINE__REDIS__KEY_PREFIX", &case),
                ("OFFLINE__URL", &pg),
                ("OFFLINE__SCHEMA", &format!("{case}_fs")),
                ("BUS__KIND", "kafka"),
                ("BUS__KAFKA__BROKERS", &kafka),
                ("TOPICS__BARS", &topic),
                ("TOPICS__PARTITIONS", "2"),
                ("STREAM__GROUP", &group),
            ],
        ),
    );
    let mut push_client =
        IngestionServiceClient::new(connect(ingestion_port, &mut ingestion).await);
    let mut fs_client = FeatureStoreServiceClient::new(connect(features_port, &mut features).await);

    let view = View::compile(&default_view()).unwrap();
    let mut series = vec![
        recent_bars("E2E.A", 80, 1),
        recent_bars("E2E.B", 80, 2),
        recent_bars("E2E.C", 20, 3),
    ];
    for s in &series {
        push(&mut push_client, s).await;
    }
    await_exact(&mut fs_client, &view, &series, &features).await;

    // Online: the newest vector of each symbol, with its status.
    let online = fs_client
        .get_online_features(fpb::GetOnlineFeaturesRequest {
            feature_view: "default".into(),
            feature_view_version: 0,
            symbols: vec!["E2E.A".into(), "E2E.C".into(), "E2E.NONE".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let status: Vec<i32> = online.vectors.iter().map(|v| v.status).collect();
    assert_eq!(
        status,
        vec![
            fpb::FeatureStatus::Present as i32,
            fpb::FeatureStatus::WarmingUp as i32, // 20 bars < 50 of warm-up
            fpb::FeatureStatus::NotFound as i32
        ],
        "{online:?}"
    );
    assert!(same(
        &online.vectors[0].values,
        &view.compute(&series[0]).pop().unwrap()
    ));

    // A correction of a past bar, pushed to ingestion, is recomputed by the feature store.
    let mut fixed = series[0][40].clone();
    fixed.close *= 1.02;
    fixed.high = fixed.high.max(fixed.close);
    push(&mut push_client, std::slice::from_ref(&fixed)).await;
    series[0][40] = fixed;
    await_exact(&mut fs_client, &view, &series, &features).await;

    let stopped = features.terminate(Duration::from_secs(30));
    assert!(stopped.success(), "feature store exit\n{}", features.logs());
    let stopped = ingestion.terminate(Duration::from_secs(30));
    assert!(stopped.success(), "ingestion exit\n{}", ingestion.logs());
}
