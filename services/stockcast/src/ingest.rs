//! `stockcast ingest`: load market data into a running ingestion service (or the demo).
//!
//! CSV files are read here and pushed over gRPC (`PushBars`), so the file need not be on the
//! server; the generator and Alpha Vantage run on the server as backfill jobs, and this
//! command follows their progress.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use stockcast_market::Interval;
use stockcast_market::convert::seconds_to_proto;
use stockcast_market::sources::csv::{CsvContext, CsvError, CsvParams, CsvSource};
use stockcast_market::sources::{BackfillSpec, Source, SourceParams, SourceRecord};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use stockcast_proto::stockcast::types::v1 as types;
use tonic::transport::Channel;

/// `stockcast ingest` flags.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The ingestion service (the demo listens here too). Accepted before or after the
    /// subcommand: `stockcast ingest csv FILE --addr …`.
    #[arg(
        long,
        global = true,
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
        /// Refused rows tolerated before the import counts as failed (exit 1). A partial
        /// import is a failure unless asked for; the rows accepted stay stored either way.
        #[arg(long, default_value_t = 0)]
        max_rejects: u64,
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
        /// Day after the last, YYYY-MM-DD (UTC); up to the last completed bar when absent.
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
        /// Day after the last (UTC); up to the last completed bar when absent.
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
            max_rejects,
        } => {
            let params = CsvParams {
                path: file,
                symbol,
                time_zone,
                ..Default::default()
            };
            let summary = push_csv(&mut client, params, interval, batch).await?;
            summary.print();
            summary.verdict(max_rejects)
        }
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

/// What a CSV import did, as the service and the file reader counted it.
#[derive(Debug)]
struct CsvSummary {
    file: PathBuf,
    rows: u64,
    accepted: i64,
    duplicates: i64,
    corrections: i64,
    rejected: i64,
    /// Rejections by reason name, with the lines of the first few.
    by_reason: BTreeMap<String, (i64, Vec<i64>)>,
    /// The first rejections: line, field, reason.
    first: Vec<(i64, String)>,
}

/// Lines listed per reason, and rejections shown with their reason.
const SHOWN: usize = 5;

impl CsvSummary {
    /// The summary, readable at a glance.
    fn render(&self) -> String {
        let mut out = format!(
            "{}: {} rows read\n  accepted     {}\n  duplicates   {}\n  corrections  {}\n  rejected     {}\n",
            self.file.display(),
            self.rows,
            self.accepted,
            self.duplicates,
            self.corrections,
            self.rejected
        );
        for (reason, (count, lines)) in &self.by_reason {
            let mut listed = lines
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            if (*count as usize) > lines.len() {
                listed.push_str(", …");
            }
            let what = if lines.is_empty() {
                String::new()
            } else if lines.len() == 1 && *count == 1 {
                format!("  line {listed}")
            } else {
                format!("  lines {listed}")
            };
            out.push_str(&format!("    {reason:<20} {count}{what}\n"));
        }
        for (line, reason) in &self.first {
            out.push_str(&format!("  line {line}: {reason}\n"));
        }
        out
    }

    fn print(&self) {
        use std::io::Write as _;
        // A closed stdout (`| head`) is not an error of the import.
        let _ = std::io::stdout().lock().write_all(self.render().as_bytes());
    }

    /// Fails when no row could be taken, or more were refused than allowed.
    fn verdict(&self, max_rejects: u64) -> anyhow::Result<()> {
        let taken = self.accepted + self.duplicates + self.corrections;
        if taken == 0 {
            bail!(
                "{}: nothing was accepted ({} rows read, {} rejected)",
                self.file.display(),
                self.rows,
                self.rejected
            );
        }
        if self.rejected as u64 > max_rejects {
            bail!(
                "{}: {} rows rejected, more than --max-rejects {max_rejects}; the {} rows \
                 accepted are stored, and pushing the corrected file again is safe (stored rows \
                 count as duplicates)",
                self.file.display(),
                self.rejected,
                taken
            );
        }
        Ok(())
    }
}

/// Reads the header line to say what is missing in the flags' words: the service's reader
/// speaks of the `symbol` parameter.
fn check_header(params: &CsvParams, spec: &BackfillSpec) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(&params.path)
        .with_context(|| format!("{} cannot be opened", params.path.display()))?;
    let mut header = Vec::new();
    std::io::BufReader::new(file)
        .take(64 << 10)
        .read_until(b'\n', &mut header)
        .with_context(|| format!("{} cannot be read", params.path.display()))?;
    match CsvContext::new(&header, params, spec) {
        Err(CsvError::NoSymbol { .. }) => bail!(
            "{}: the file has no Symbol column; give the symbol of its rows with --symbol SYMBOL",
            params.path.display()
        ),
        // Other header problems are reported by the reader with the file's name.
        _ => Ok(()),
    }
}

async fn push_csv(
    client: &mut IngestionServiceClient<Channel>,
    params: CsvParams,
    interval: Interval,
    batch: usize,
) -> anyhow::Result<CsvSummary> {
    let source = CsvSource::new();
    let file = params.path.clone();
    let spec = BackfillSpec {
        symbols: params.symbol.iter().cloned().collect(),
        interval,
        start: i64::MIN / 2,
        end: i64::MAX / 2,
        params: SourceParams::Csv(params.clone()),
    };
    check_header(&params, &spec)?;
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
    let mut rows = 0u64;
    let mut message = pb::PushBarsRequest::default();
    'chunks: for chunk in &chunks {
        let records = source
            .fetch(&spec, chunk)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for record in records {
            rows += 1;
            match record {
                SourceRecord::Row(row) => {
                    message.bars.push(row.bar.to_proto("csv"));
                    message.lines.push(row.index);
                }
                SourceRecord::Unreadable(row) => message.unreadable.push(pb::UnreadableRecord {
                    line: row.index,
                    payload: row.payload,
                    payload_type: row.payload_type.to_owned(),
                    symbol: row.symbol,
                    field: row.rejection.field.to_owned(),
                    reason_code: row.rejection.code as i32,
                    reason: row.rejection.reason,
                }),
                // The CSV reader yields rows with their lines only; a bar without one would
                // be line 0.
                SourceRecord::Bar(bar) => {
                    message.bars.push(bar.to_proto("csv"));
                    message.lines.push(0);
                }
            }
            if message.bars.len() + message.unreadable.len() >= batch
                && tx.send(std::mem::take(&mut message)).await.is_err()
            {
                // The call ended early; its answer says why.
                break 'chunks;
            }
        }
        progress.inc(1);
    }
    if !message.bars.is_empty() || !message.unreadable.is_empty() {
        let _ = tx.send(message).await;
    }
    drop(tx);
    let response = call
        .await?
        .with_context(|| format!("pushing {}", file.display()))?
        .into_inner();
    progress.finish_and_clear();

    let mut by_reason: BTreeMap<String, (i64, Vec<i64>)> = response
        .rejected_by_reason
        .iter()
        .map(|r| (reason_name(r.reason_code), (r.count, Vec::new())))
        .collect();
    for rejection in &response.rejections {
        let entry = by_reason
            .entry(reason_name(rejection.reason_code))
            .or_default();
        if entry.1.len() < SHOWN {
            entry.1.push(rejection.index);
        }
    }
    Ok(CsvSummary {
        file,
        rows,
        accepted: response.accepted,
        duplicates: response.duplicates,
        corrections: response.corrections,
        rejected: response.rejected,
        by_reason,
        first: response
            .rejections
            .iter()
            .take(SHOWN)
            .map(|r| (r.index, r.reason.clone()))
            .collect(),
    })
}

/// `INVALID_SYMBOL` for `REJECT_REASON_INVALID_SYMBOL`.
fn reason_name(code: i32) -> String {
    types::RejectReason::try_from(code).map_or_else(
        |_| format!("reason {code}"),
        |r| {
            r.as_str_name()
                .trim_start_matches("REJECT_REASON_")
                .to_owned()
        },
    )
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
    // Without an end, history ends with the last completed bar.
    let end = end.map_or_else(
        || interval.completed_until(chrono::Utc::now().timestamp()),
        day_start,
    );
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
