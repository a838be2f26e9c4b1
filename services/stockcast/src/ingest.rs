//! `stockcast ingest`: load market data into a running ingestion service (or the demo).
//!
//! CSV files are read here and pushed over gRPC (`PushBars`), so the file need not be on the
//! server; the generator and Alpha Vantage run on the server as backfill jobs, and this
//! command follows their progress.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use stockcast_market::Interval;
use stockcast_market::convert::seconds_to_proto;
use stockcast_market::sources::csv::{CsvParams, CsvSource};
use stockcast_market::sources::{BackfillSpec, Source, SourceParams, SourceRecord};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use stockcast_proto::stockcast::types::v1 as types;
use tonic::transport::Channel;

/// `stockcast ingest` flags.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The ingestion service (the demo listens here too).
    #[arg(
        long,
        default_value = "http://127.0.0.1:50051",
        env = "STOCKCAST_INGESTION_ADDR"
    )]
    addr: String,
    #[command(subcommand)]
    source: IngestSource,
}

#[derive(Debug, clap::Subcommand)]
enum IngestSource {
    /// Reads a CSV file (Date,Open,High,Low,Close[,Adj Close],Volume[,Symbol]) and pushes it.
    Csv {
        /// The file.
        file: PathBuf,
        /// Symbol of every row, for files without a Symbol column.
        #[arg(long)]
        symbol: Option<String>,
        /// Bar length: 1m, 5m, 15m, 30m, 60m, 1d.
        #[arg(long, default_value = "1d")]
        interval: Interval,
        /// IANA time zone of timestamps without an offset (UTC when absent).
        #[arg(long)]
        time_zone: Option<String>,
        /// Bars per gRPC message.
        #[arg(long, default_value_t = 2_000)]
        batch: usize,
    },
    /// Generates reproducible price paths on the server (a backfill job).
    Synthetic {
        /// Comma-separated symbols.
        #[arg(long, value_delimiter = ',', required = true)]
        symbols: Vec<String>,
        /// Bar length.
        #[arg(long, default_value = "1d")]
        interval: Interval,
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long, default_value = "2023-01-01")]
        start: chrono::NaiveDate,
        /// Day after the last, YYYY-MM-DD (UTC); today when absent.
        #[arg(long)]
        end: Option<chrono::NaiveDate>,
        /// Seed of the generator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Loads from Alpha Vantage on the server (needs `alpha_vantage.api_key` there).
    AlphaVantage {
        /// Comma-separated symbols.
        #[arg(long, value_delimiter = ',', required = true)]
        symbols: Vec<String>,
        /// Bar length.
        #[arg(long, default_value = "1d")]
        interval: Interval,
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long, default_value = "2000-01-01")]
        start: chrono::NaiveDate,
        /// Day after the last (UTC); today when absent.
        #[arg(long)]
        end: Option<chrono::NaiveDate>,
        /// Full history instead of the latest 100 bars.
        #[arg(long)]
        full: bool,
    },
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let channel = Channel::from_shared(args.addr.clone())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach the ingestion service at {}", args.addr))?;
    let mut client = IngestionServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    match args.source {
        IngestSource::Csv {
            file,
            symbol,
            interval,
            time_zone,
            batch,
        } => push_csv(&mut client, file, symbol, interval, time_zone, batch).await,
        IngestSource::Synthetic {
            symbols,
            interval,
            start,
            end,
            seed,
        } => {
            let params = pb::start_backfill_request::Params::Synthetic(pb::SyntheticParams {
                seed,
                ..Default::default()
            });
            backfill(
                &mut client,
                symbols,
                interval,
                start,
                end,
                pb::BackfillSource::Synthetic,
                params,
            )
            .await
        }
        IngestSource::AlphaVantage {
            symbols,
            interval,
            start,
            end,
            full,
        } => {
            let size = if full {
                pb::AlphaVantageOutputSize::Full
            } else {
                pb::AlphaVantageOutputSize::Compact
            };
            let params = pb::start_backfill_request::Params::AlphaVantage(pb::AlphaVantageParams {
                output_size: size as i32,
                extended_hours: false,
            });
            backfill(
                &mut client,
                symbols,
                interval,
                start,
                end,
                pb::BackfillSource::AlphaVantage,
                params,
            )
            .await
        }
    }
}

fn day_start(day: chrono::NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or_default()
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

async fn push_csv(
    client: &mut IngestionServiceClient<Channel>,
    file: PathBuf,
    symbol: Option<String>,
    interval: Interval,
    time_zone: Option<String>,
    batch: usize,
) -> anyhow::Result<()> {
    let source = CsvSource::new();
    let spec = BackfillSpec {
        symbols: symbol.iter().cloned().collect(),
        interval,
        start: i64::MIN / 2,
        end: i64::MAX / 2,
        params: SourceParams::Csv(CsvParams {
            path: file.clone(),
            symbol,
            time_zone,
            ..Default::default()
        }),
    };
    let chunks = source
        .plan(&spec)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let progress = ProgressBar::new(chunks.len() as u64).with_style(bar_style());
    progress.set_message("chunks read");
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::PushBarsRequest>(4);
    let call = {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .push_bars(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        })
    };
    let mut unreadable = 0usize;
    let mut pushed = 0usize;
    for chunk in &chunks {
        let records = source
            .fetch(&spec, chunk)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut bars = Vec::with_capacity(batch);
        for record in records {
            match record {
                SourceRecord::Bar(bar) => bars.push(bar.to_proto("csv")),
                SourceRecord::Row(row) => bars.push(row.bar.to_proto("csv")),
                SourceRecord::Unreadable(row) => {
                    unreadable += 1;
                    progress.suspend(|| {
                        tracing::warn!(
                            line = row.index,
                            "unreadable row: {}",
                            row.rejection.reason
                        );
                    });
                }
            }
            if bars.len() >= batch {
                pushed += bars.len();
                if tx
                    .send(pb::PushBarsRequest {
                        bars: std::mem::take(&mut bars),
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        if !bars.is_empty() {
            pushed += bars.len();
            let _ = tx.send(pb::PushBarsRequest { bars }).await;
        }
        progress.inc(1);
    }
    drop(tx);
    let response = call.await??.into_inner();
    progress.finish_and_clear();
    for rejection in response.rejections.iter().take(20) {
        tracing::warn!(index = rejection.index, symbol = %rejection.symbol, field = %rejection.field, "{}", rejection.reason);
    }
    tracing::info!(
        pushed,
        accepted = response.accepted,
        duplicates = response.duplicates,
        corrections = response.corrections,
        rejected = response.rejected,
        unreadable,
        "csv ingested"
    );
    Ok(())
}

pub(crate) async fn backfill(
    client: &mut IngestionServiceClient<Channel>,
    symbols: Vec<String>,
    interval: Interval,
    start: chrono::NaiveDate,
    end: Option<chrono::NaiveDate>,
    source: pb::BackfillSource,
    params: pb::start_backfill_request::Params,
) -> anyhow::Result<()> {
    let end = end.map_or_else(|| chrono::Utc::now().timestamp(), day_start);
    let request = pb::StartBackfillRequest {
        symbols,
        source: source as i32,
        interval: types::Interval::from(interval) as i32,
        range: Some(types::TimeRange {
            start: Some(seconds_to_proto(day_start(start))),
            end: Some(seconds_to_proto(end)),
        }),
        params: Some(params),
        request_id: String::new(),
    };
    let job = client
        .start_backfill(request)
        .await?
        .into_inner()
        .job
        .context("no job in reply")?;
    let progress = ProgressBar::new(job.chunks_total.max(1) as u64).with_style(bar_style());
    let id = job.job_id.clone();
    loop {
        let job = client
            .get_backfill(pb::GetBackfillRequest { job_id: id.clone() })
            .await?
            .into_inner()
            .job
            .context("no job in reply")?;
        progress.set_length(job.chunks_total.max(1) as u64);
        progress.set_position(job.chunks_done as u64);
        progress.set_message(format!("{} bars", job.bars_accepted + job.bars_corrected));
        match types::JobState::try_from(job.state) {
            Ok(types::JobState::Succeeded) => {
                progress.finish_and_clear();
                tracing::info!(
                    job = %id,
                    accepted = job.bars_accepted,
                    duplicates = job.bars_duplicate,
                    corrections = job.bars_corrected,
                    rejected = job.bars_rejected,
                    "backfill done"
                );
                return Ok(());
            }
            Ok(types::JobState::Failed | types::JobState::Cancelled) => {
                progress.abandon();
                bail!("backfill {id} stopped: {}", job.error);
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
