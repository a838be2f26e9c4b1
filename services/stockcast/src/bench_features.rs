//! `stockcast bench features-consume` and `features-online`: the feature store measured on
//! the real backends, each run in its own topic, key prefix and schema.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use stockcast_bus::{EventBus, KafkaBus, KafkaSettings, Record};
use stockcast_feature_store::store::redis::{RedisOnline, RedisSettings};
use stockcast_feature_store::store::sql::{DatabaseSettings, open};
use stockcast_feature_store::store::{OnlineStore, OnlineWrite};
use stockcast_feature_store::stream::{Processor, StreamSettings};
use stockcast_feature_store::view::{Catalog, View, default_view};
use stockcast_market::sources::synthetic::{SyntheticParams, SyntheticPath};
use stockcast_market::{Interval, ValidationSettings};
use stockcast_proto::stockcast::events::v1::{IngestPath, MarketBarEvent};
use stockcast_proto::stockcast::features::v1 as pb;
use stockcast_proto::stockcast::features::v1::feature_store_service_client::FeatureStoreServiceClient;
use stockcast_runtime::{Secret, Shutdown};

/// Where the real backends are.
#[derive(Debug, Clone, clap::Args)]
pub struct Backends {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        default_value = "127.0.0.1:9092",
        env = "STOCKCAST_TEST_KAFKA_BROKERS"
    )]
    brokers: String,
    /// Redis URL.
    #[arg(
        long,
        default_value = "redis://127.0.0.1:6379",
        env = "STOCKCAST_TEST_REDIS_URL"
    )]
    redis: String,
    /// PostgreSQL URL.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/stockcast_test",
        env = "STOCKCAST_TEST_PG_URL"
    )]
    pg: String,
}

/// `bench features-consume` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    backends: Backends,
    /// Bars to consume.
    #[arg(long, default_value_t = 200_000)]
    bars: usize,
    /// Symbols the bars are spread over.
    #[arg(long, default_value_t = 100)]
    symbols: usize,
    /// Events per batch (one transaction, one commit).
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Topic partitions.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

/// `bench features-online` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct OnlineArgs {
    #[command(flatten)]
    backends: Backends,
    /// Symbols per GetOnlineFeatures call.
    #[arg(long, default_value_t = 1)]
    symbols_per_read: usize,
    /// Symbols stored.
    #[arg(long, default_value_t = 1_000)]
    symbols: usize,
    /// Concurrent callers (each on its own HTTP/2 connection).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How long to call.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

fn run_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or_default();
    format!("bench{ms}")
}

#[allow(clippy::print_stdout)]
pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let id = run_id();
    let bus: Arc<dyn EventBus> = Arc::new(
        KafkaBus::new(KafkaSettings {
            brokers: args.backends.brokers.clone(),
            ..KafkaSettings::default()
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let topic = format!("stockcast.bench-{id}.v1");
    stockcast_bus::ensure_topics(
        &*bus,
        &[&topic, &stockcast_bus::dead_letter_topic(&topic)],
        args.partitions,
        &stockcast_runtime::Shutdown::new(),
    )
    .await?;
    // Daily bars, every symbol from the same start.
    let per_symbol = args.bars.div_ceil(args.symbols.max(1));
    // The generator skips weekends: 5 bars per 7 days, all in the past.
    let days = per_symbol as i64 * 7 / 5 + 10;
    let start = chrono::Utc::now().timestamp() / 86_400 * 86_400 - days * 86_400;
    let mut records = Vec::with_capacity(args.bars);
    let mut paths = Vec::new();
    for s in 0..args.symbols.max(1) {
        let symbol = format!("F{s}X{}", id.trim_start_matches("bench"));
        paths.push(
            SyntheticPath::new(&symbol, Interval::D1, start, &SyntheticParams::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .take(per_symbol),
        );
    }
    // Interleaved, as a live feed would be.
    'outer: loop {
        let mut any = false;
        for path in &mut paths {
            if let Some(bar) = path.next() {
                any = true;
                let event = MarketBarEvent {
                    bar: Some(bar.to_proto("bench")),
                    ingested_at: None,
                    ingest_path: IngestPath::Backfill as i32,
                    backfill_job_id: String::new(),
                    revision: 0,
                    previous: None,
                };
                records.push(Record::proto(bar.symbol.clone().into_bytes(), &event));
                if records.len() == args.bars {
                    break 'outer;
                }
            }
        }
        if !any {
            break;
        }
    }
    let total = records.len() as u64;
    let published = Instant::now();
    for chunk in records.chunks(10_000) {
        bus.publish_batch(&topic, chunk.to_vec()).await?;
    }
    println!(
        "published {total} events in {:.1} s",
        published.elapsed().as_secs_f64()
    );

    let online = RedisOnline::connect(&RedisSettings {
        url: Secret::new(args.backends.redis.clone()),
        key_prefix: format!("stockcast:{id}"),
        ..RedisSettings::default()
    })
    .await?;
    let offline = open(
        &DatabaseSettings {
            url: Secret::new(args.backends.pg.clone()),
            schema: id.clone(),
            max_connections: 4,
            acquire_timeout_ms: 10_000,
        },
        &Shutdown::new(),
    )
    .await?;
    let catalog = Arc::new(Catalog::new(&[default_view()]).map_err(|e| anyhow::anyhow!("{e}"))?);
    let processor = Processor::new(
        catalog,
        Arc::new(online),
        offline,
        Arc::clone(&bus),
        StreamSettings {
            group: format!("bench-{id}"),
            batch_max: args.batch,
            ..StreamSettings::default()
        },
        &ValidationSettings::default(),
        stockcast_runtime::clock::system(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let progress = processor.progress();
    let stop = Shutdown::new();
    let stopper = stop.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move {
        processor
            .run(&topic, async move { stopper.wait().await })
            .await
    });
    let mut first: Option<Instant> = None;
    loop {
        let done = progress.load(Ordering::Relaxed);
        if done > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if done >= total {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {total} events committed after 10 minutes"
        );
        anyhow::ensure!(!task.is_finished(), "the processor stopped early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    stop.trigger();
    let stats = task.await?.map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        stats.dead_letters == 0,
        "{} events were dead-lettered",
        stats.dead_letters
    );
    println!(
        "features-consume: {total} bars in {:.2} s = {:.0} bars/s end to end (from subscribe; {:.0} bars/s after the first commit), {} rows, {} dead letters, {} symbols, batch {}, {} partitions",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        first.map_or(0.0, |f| total as f64
            / f.elapsed().max(Duration::from_millis(1)).as_secs_f64()),
        stats.rows,
        stats.dead_letters,
        args.symbols,
        args.batch,
        args.partitions,
    );
    Ok(())
}

#[allow(clippy::print_stdout)]
pub async fn online(args: OnlineArgs) -> anyhow::Result<()> {
    let id = run_id();
    let view = View::compile(&default_view()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let redis = RedisSettings {
        url: Secret::new(args.backends.redis.clone()),
        key_prefix: format!("stockcast:{id}"),
        ..RedisSettings::default()
    };
    let online = Arc::new(RedisOnline::connect(&redis).await?);
    let now = chrono::Utc::now().timestamp();
    let symbols: Vec<String> = (0..args.symbols.max(1)).map(|i| format!("S{i}")).collect();
    let writes: Vec<OnlineWrite> = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| OnlineWrite {
            view: view.id.clone(),
            symbol: s.clone(),
            event_time: now - 60,
            values: (0..view.features.len())
                .map(|f| (i * 31 + f) as f64 * 0.001)
                .collect(),
            ttl: Duration::from_secs(3_600),
        })
        .collect();
    for chunk in writes.chunks(500) {
        online.write(chunk).await?;
    }

    // The service in this process, stream off, on Redis; the offline store is unused.
    let mut settings = stockcast_feature_store::Settings::default();
    settings.stream.enabled = false;
    settings.server.concurrency_limit = 10_000;
    settings.server.metrics_addr = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let deps = stockcast_feature_store::Deps {
        online,
        offline: open(&DatabaseSettings::default(), &Shutdown::new()).await?,
        bus: Arc::new(stockcast_bus::MemoryBus::new()),
        clock: stockcast_runtime::clock::system(),
    };
    let shutdown = Shutdown::new();
    let server = tokio::spawn(stockcast_feature_store::serve(
        listener,
        settings,
        deps,
        shutdown.clone(),
    ));

    let n = args.symbols_per_read.clamp(1, 1_000);
    let deadline = Instant::now() + args.duration;
    let mut tasks = Vec::new();
    for c in 0..args.concurrency.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .context("connect")?;
        let mut client = FeatureStoreServiceClient::new(channel);
        let symbols = symbols.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut k = c * 7919;
            while Instant::now() < deadline {
                let batch: Vec<String> = (0..n)
                    .map(|j| symbols[(k + j * 13) % symbols.len()].clone())
                    .collect();
                k += 1;
                let t = Instant::now();
                let reply = client
                    .get_online_features(pb::GetOnlineFeaturesRequest {
                        feature_view: "default".to_owned(),
                        feature_view_version: 0,
                        symbols: batch,
                    })
                    .await?;
                latencies.push(t.elapsed());
                let present = reply
                    .get_ref()
                    .vectors
                    .iter()
                    .all(|v| v.status == pb::FeatureStatus::Present as i32);
                anyhow::ensure!(present, "a vector was not PRESENT");
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    shutdown.trigger();
    let _ = server.await;
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "features-online: {} symbols/read, {} callers: {:.0} reads/s; p50 {:?} p90 {:?} p99 {:?} max {:?} ({} reads)",
        n,
        args.concurrency,
        all.len() as f64 / args.duration.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        all[all.len() - 1],
        all.len()
    );
    Ok(())
}
