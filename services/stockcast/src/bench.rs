//! `stockcast bench`: throughput of a running service, measured from a client.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use stockcast_market::Interval;
use stockcast_market::sources::synthetic::{SyntheticParams, SyntheticPath};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tonic::transport::Channel;

/// `stockcast bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Debug, clap::Subcommand)]
enum BenchWhat {
    /// Pushed bars end to end: gRPC stream → validated, stored and published, acknowledged.
    Push {
        /// The ingestion service.
        #[arg(
            long,
            default_value = "http://127.0.0.1:50051",
            env = "STOCKCAST_INGESTION_ADDR"
        )]
        addr: String,
        /// Bars to push (all new: fresh symbols every run).
        #[arg(long, default_value_t = 200_000)]
        bars: usize,
        /// Symbols the bars are spread over.
        #[arg(long, default_value_t = 100)]
        symbols: usize,
        /// Bars per gRPC message.
        #[arg(long, default_value_t = 1_000)]
        message: usize,
        /// Concurrent push streams.
        #[arg(long, default_value_t = 2)]
        streams: usize,
    },
    /// Feature-store consumption end to end: market-bar events already on Kafka → default
    /// view computed → Redis and PostgreSQL written → offsets committed.
    FeaturesConsume(crate::bench_features::ConsumeArgs),
    /// Feature-store online reads over gRPC (in-process service on Redis).
    FeaturesOnline(crate::bench_features::OnlineArgs),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchWhat::Push {
            addr,
            bars,
            symbols,
            message,
            streams,
        } => push(&addr, bars, symbols.max(1), message.max(1), streams.max(1)).await,
        BenchWhat::FeaturesConsume(args) => Box::pin(crate::bench_features::consume(args)).await,
        BenchWhat::FeaturesOnline(args) => Box::pin(crate::bench_features::online(args)).await,
    }
}

#[allow(clippy::print_stdout)]
async fn push(
    addr: &str,
    bars: usize,
    symbols: usize,
    message: usize,
    streams: usize,
) -> anyhow::Result<()> {
    let channel = Channel::from_shared(addr.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach the ingestion service at {addr}"))?;
    // Fresh symbols each run, so every bar is an insert (not a duplicate).
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000)
        .unwrap_or_default();
    let per_symbol = bars.div_ceil(symbols);
    let start = chrono::NaiveDate::from_ymd_opt(2020, 1, 6)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
        .unwrap_or_default();
    let mut messages: Vec<Vec<pb::PushBarsRequest>> = (0..streams).map(|_| Vec::new()).collect();
    let mut generated = 0usize;
    for s in 0..symbols {
        let symbol = format!("B{run}X{s}");
        let path = SyntheticPath::new(&symbol, Interval::M1, start, &SyntheticParams::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut batch = Vec::with_capacity(message);
        for bar in path.take(per_symbol.min(bars - generated)) {
            batch.push(bar.to_proto("bench"));
            if batch.len() == message {
                messages[s % streams].push(pb::PushBarsRequest {
                    bars: std::mem::take(&mut batch),
                    ..Default::default()
                });
            }
        }
        if !batch.is_empty() {
            messages[s % streams].push(pb::PushBarsRequest {
                bars: batch,
                ..Default::default()
            });
        }
        generated = (generated + per_symbol).min(bars);
    }
    let total: usize = messages.iter().flatten().map(|m| m.bars.len()).sum();

    let started = Instant::now();
    let mut calls = Vec::new();
    for stream in messages {
        let mut client =
            IngestionServiceClient::new(channel.clone()).max_encoding_message_size(64 << 20);
        calls.push(tokio::spawn(async move {
            client.push_bars(tokio_stream::iter(stream)).await
        }));
    }
    let mut accepted = 0i64;
    for call in calls {
        let response = call.await??.into_inner();
        accepted += response.accepted;
        anyhow::ensure!(
            response.rejected == 0,
            "{} bars were rejected",
            response.rejected
        );
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(
        accepted as usize == total,
        "accepted {accepted} of {total} bars"
    );
    println!(
        "push: {total} bars in {:.2} s = {:.0} bars/s ({streams} streams, {message} bars/message, {symbols} symbols)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
