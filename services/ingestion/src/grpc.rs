//! The gRPC adapter of `stockcast.ingestion.v1.IngestionService`: convert, call the domain,
//! convert back. Errors become statuses in one place (`Error` → `Status`).

use std::sync::Arc;

use stockcast_market::convert::{interval_from_proto, seconds_to_proto};
use stockcast_market::sources::SourceParams;
use stockcast_market::{Bar, Interval, cut, echo};
use stockcast_proto::stockcast::events::v1::IngestPath;
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_server::IngestionService;
use stockcast_proto::stockcast::types::v1 as types;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::backfill_request::{Rules, backfill_spec};
use crate::error::Error;
use crate::ingest::{Ingestor, Item, Origin, Report};
use crate::jobs::Backfills;
use crate::store::{Coverage, JobFilter, JobRecord, JobState};

/// Implements the gRPC service over the domain.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) ingestor: Ingestor,
    pub(crate) backfills: Backfills,
    pub(crate) batch_size: usize,
    pub(crate) started_at: i64,
    pub(crate) budget: BudgetProbe,
    pub(crate) rules: Rules,
}

/// Reports the Alpha Vantage request budget left (per minute, per day); `None` when the
/// source is not enabled.
#[derive(Clone)]
pub struct BudgetProbe(pub Arc<dyn Fn() -> Option<(i32, i32)> + Send + Sync>);

impl std::fmt::Debug for BudgetProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BudgetProbe")
    }
}

const MAX_PAGE: i32 = 1_000;
/// Rejections returned per push; `rejected` counts them all.
const MAX_REJECTIONS: usize = 1_000;
const DEFAULT_PAGE: i32 = 100;
/// Gaps listed per symbol (oldest first); `gap_count` counts them all.
const MAX_GAPS: usize = 1_000;

fn page_size(requested: i32) -> Result<i64, Error> {
    match requested {
        0 => Ok(DEFAULT_PAGE as i64),
        n if n < 0 => Err(Error::InvalidArgument(format!("page_size {n} is negative"))),
        n => Ok(n.min(MAX_PAGE) as i64),
    }
}

#[tonic::async_trait]
impl IngestionService for Api {
    async fn push_bars(
        &self,
        request: Request<Streaming<pb::PushBarsRequest>>,
    ) -> Result<Response<pb::PushBarsResponse>, Status> {
        let client = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let mut stream = request.into_inner();
        let origin = Origin {
            source: "push".to_owned(),
            path: IngestPath::Push,
            location: client,
            job: None,
            chunk: None,
        };
        // Receiving and storing overlap: one batch is stored while the next one arrives.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(i64, Item)>>(2);
        let ingestor = self.ingestor.clone();
        let worker_origin = origin.clone();
        let worker = tokio::spawn(async move {
            let mut total = Report::default();
            let mut stored = 0i64;
            while let Some(batch) = rx.recv().await {
                let first = batch.first().map_or(stored, |(i, _)| *i);
                match ingestor.ingest(batch, &worker_origin).await {
                    Ok(report) => {
                        total.counts.add(&report.counts);
                        total.rejected.extend(report.rejected);
                        stored = first;
                    }
                    Err(error) => return Err((error, first)),
                }
            }
            Ok(total)
        });

        // `index` counts bars received; `sent` the bars of complete batches handed to the
        // worker. At a break (the client goes away, a message cannot be read) the open batch
        // is dropped: only complete batches before a break are stored, and the answer says
        // exactly up to which index.
        let mut index = 0i64;
        let mut sent = 0i64;
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut receive_error = None;
        'receive: while let Some(message) = stream.next().await {
            let message = match message {
                Ok(message) => message,
                Err(status) => {
                    receive_error = Some(status);
                    break;
                }
            };
            let items = match message_items(message, &mut index) {
                Ok(items) => items,
                Err(error) => {
                    receive_error = Some(Status::from(error));
                    break;
                }
            };
            for item in items {
                batch.push(item);
                if batch.len() >= self.batch_size {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(self.batch_size));
                    let size = full.len() as i64;
                    if tx.send(full).await.is_err() {
                        break 'receive;
                    }
                    sent += size;
                }
            }
        }
        drop(tx);
        let mut report = match worker.await {
            Ok(Ok(report)) => report,
            Ok(Err((error, first))) => {
                let status = Status::from(error);
                return Err(Status::new(
                    status.code(),
                    format!(
                        "{}; bars before index {first} are stored, resend from index {first}",
                        status.message()
                    ),
                ));
            }
            Err(join) => return Err(Status::internal(format!("push worker failed: {join}"))),
        };
        if let Some(status) = receive_error {
            return Err(Status::new(
                status.code(),
                format!(
                    "stream broke after {index} bars: {}; bars before index {sent} are stored, \
                     resend from index {sent}",
                    status.message()
                ),
            ));
        }
        // The open batch is stored here rather than by the worker: if the client cancels
        // after half-closing, this future is dropped and the batch's transaction rolls back.
        if !batch.is_empty() {
            match self.ingestor.ingest(batch, &origin).await {
                Ok(last) => {
                    report.counts.add(&last.counts);
                    report.rejected.extend(last.rejected);
                }
                Err(error) => {
                    let status = Status::from(error);
                    return Err(Status::new(
                        status.code(),
                        format!(
                            "{}; bars before index {sent} are stored, resend from index {sent}",
                            status.message()
                        ),
                    ));
                }
            }
        }
        let mut by_reason = std::collections::BTreeMap::<i32, i64>::new();
        for rejected in &report.rejected {
            *by_reason.entry(rejected.rejection.code as i32).or_default() += 1;
        }
        Ok(Response::new(pb::PushBarsResponse {
            rejected_by_reason: by_reason
                .into_iter()
                .map(|(reason_code, count)| pb::RejectionCount { reason_code, count })
                .collect(),
            accepted: report.counts.accepted,
            rejected: report.counts.rejected,
            duplicates: report.counts.duplicate,
            corrections: report.counts.corrected,
            rejections: report
                .rejected
                .into_iter()
                .take(MAX_REJECTIONS)
                .map(|r| pb::BarRejection {
                    index: r.index,
                    symbol: cut(&r.symbol).to_owned(),
                    field: r.rejection.field.to_owned(),
                    reason_code: r.rejection.code as i32,
                    reason: r.rejection.reason,
                })
                .collect(),
        }))
    }

    async fn start_backfill(
        &self,
        request: Request<pb::StartBackfillRequest>,
    ) -> Result<Response<pb::StartBackfillResponse>, Status> {
        let request = request.into_inner();
        let request_id = Some(request.request_id.as_str())
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        let spec = backfill_spec(request, &self.rules, crate::ingest::now_seconds())?;
        let job = self.backfills.start(request_id.as_deref(), spec).await?;
        Ok(Response::new(pb::StartBackfillResponse {
            job: Some(job_to_proto(&job)),
        }))
    }

    async fn get_backfill(
        &self,
        request: Request<pb::GetBackfillRequest>,
    ) -> Result<Response<pb::GetBackfillResponse>, Status> {
        let id = parse_job_id(&request.into_inner().job_id)?;
        let job = self
            .ingestor
            .store()
            .job(id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("backfill job {id} does not exist")))?;
        Ok(Response::new(pb::GetBackfillResponse {
            job: Some(job_to_proto(&job)),
        }))
    }

    async fn list_backfills(
        &self,
        request: Request<pb::ListBackfillsRequest>,
    ) -> Result<Response<pb::ListBackfillsResponse>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size)?;
        let before = if request.page_token.is_empty() {
            None
        } else {
            let id = uuid::Uuid::parse_str(&request.page_token).map_err(|_| {
                Error::InvalidArgument(format!(
                    "page_token {} is not a token this service issued",
                    echo(&request.page_token)
                ))
            })?;
            Some(id)
        };
        let state = match types::JobState::try_from(request.state) {
            Ok(types::JobState::Unspecified) => None,
            Ok(state) => Some(job_state_from_proto(state)),
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "state {} is not a job state",
                    request.state
                ))
                .into());
            }
        };
        let jobs = self
            .ingestor
            .store()
            .jobs(&JobFilter {
                state,
                symbol: Some(request.symbol).filter(|s| !s.is_empty()),
                before,
                limit: limit + 1,
            })
            .await
            .map_err(Error::from)?;
        let more = jobs.len() as i64 > limit;
        let page: Vec<_> = jobs.into_iter().take(limit as usize).collect();
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListBackfillsResponse {
            jobs: page.iter().map(job_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_symbols(
        &self,
        request: Request<pb::ListSymbolsRequest>,
    ) -> Result<Response<pb::ListSymbolsResponse>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size)?;
        let interval = if request.interval == 0 {
            None
        } else {
            Some(
                interval_from_proto(request.interval)
                    .map_err(|r| Error::InvalidArgument(r.reason))?,
            )
        };
        let after = if request.page_token.is_empty() {
            None
        } else {
            let parsed = request
                .page_token
                .split_once('/')
                .and_then(|(s, i)| Some((s.to_owned(), i.parse::<Interval>().ok()?)));
            Some(parsed.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "page_token {} is not a token this service issued",
                    echo(&request.page_token)
                ))
            })?)
        };
        let store = self.ingestor.store();
        let rows = store
            .coverage(interval, &request.symbol_prefix, after, limit + 1)
            .await
            .map_err(Error::from)?;
        let more = rows.len() as i64 > limit;
        let mut symbols = Vec::with_capacity(rows.len());
        for row in rows.iter().take(limit as usize) {
            let gaps = if request.include_gaps {
                let ts = store
                    .timestamps(&row.symbol, row.interval)
                    .await
                    .map_err(Error::from)?;
                crate::gaps::find(&ts, row.interval)
            } else {
                Vec::new()
            };
            symbols.push(coverage_to_proto(row, &gaps, request.include_gaps));
        }
        let next_page_token = match (more, rows.get(limit as usize - 1)) {
            (true, Some(last)) => format!("{}/{}", last.symbol, last.interval),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListSymbolsResponse {
            symbols,
            next_page_token,
        }))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let (accepted, rejected, last_published) = self.ingestor.totals();
        let store_ok = self.ingestor.store().ping().await;
        let bus_ok = self.ingestor.bus().ping().await;
        let budget = (self.budget.0)();
        let sources = vec![
            pb::SourceStatus {
                source: pb::BackfillSource::AlphaVantage as i32,
                enabled: budget.is_some(),
                requests_left_minute: budget.map_or(0, |b| b.0),
                requests_left_day: budget.map_or(0, |b| b.1),
                ..Default::default()
            },
            pb::SourceStatus {
                source: pb::BackfillSource::Csv as i32,
                enabled: true,
                ..Default::default()
            },
            pb::SourceStatus {
                source: pb::BackfillSource::Synthetic as i32,
                enabled: true,
                ..Default::default()
            },
        ];
        Ok(Response::new(pb::GetStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: Some(seconds_to_proto(self.started_at)),
            sources,
            dependencies: vec![
                dependency("database", "sql", store_ok.err().map(|e| e.to_string())),
                dependency("event-bus", "kafka", bus_ok.err().map(|e| e.to_string())),
            ],
            running_backfills: self.backfills.running() as i32,
            bars_accepted_total: accepted,
            bars_rejected_total: rejected,
            last_published_at: (last_published > 0).then(|| seconds_to_proto(last_published)),
        }))
    }
}

fn dependency(name: &str, kind: &str, error: Option<String>) -> pb::DependencyStatus {
    pb::DependencyStatus {
        name: name.to_owned(),
        kind: kind.to_owned(),
        healthy: error.is_none(),
        detail: error.unwrap_or_default(),
    }
}

/// A pushed bar as a domain item; an unconvertible one keeps its protobuf bytes.
/// The records of one message in input order, each with its index: the bar's line when the
/// client sent `lines`, else its stream position (`next` counts bars across the stream).
fn message_items(message: pb::PushBarsRequest, next: &mut i64) -> Result<Vec<(i64, Item)>, Error> {
    let pb::PushBarsRequest {
        bars,
        lines,
        unreadable,
    } = message;
    if !lines.is_empty() && lines.len() != bars.len() {
        return Err(Error::InvalidArgument(format!(
            "lines has {} entries for {} bars; send one line per bar or none",
            lines.len(),
            bars.len()
        )));
    }
    let by_line = !lines.is_empty() || bars.is_empty();
    let mut items = Vec::with_capacity(bars.len() + unreadable.len());
    for (i, bar) in bars.into_iter().enumerate() {
        let index = lines.get(i).copied().unwrap_or(*next);
        *next += 1;
        items.push((index, item(bar)));
    }
    if !unreadable.is_empty() {
        items.extend(unreadable.into_iter().map(|r| (r.line, unreadable_item(r))));
        if by_line {
            // Rejections and dead letters in the order of the client's input.
            items.sort_by_key(|(index, _)| *index);
        }
    }
    Ok(items)
}

/// Longest reason or field kept from a client's unreadable record.
const MAX_REASON_CHARS: usize = 1_000;

fn unreadable_item(record: pb::UnreadableRecord) -> Item {
    let code = match types::RejectReason::try_from(record.reason_code) {
        Ok(
            code @ (types::RejectReason::Malformed
            | types::RejectReason::MissingField
            | types::RejectReason::InvalidTimestamp),
        ) => code,
        _ => types::RejectReason::Malformed,
    };
    let field = match record.field.as_str() {
        "symbol" => "symbol",
        "ts" => "ts",
        "open" => "open",
        "high" => "high",
        "low" => "low",
        "close" => "close",
        "volume" => "volume",
        _ => "",
    };
    let reason: String = record.reason.chars().take(MAX_REASON_CHARS).collect();
    Item::Invalid {
        payload: record.payload,
        payload_type: record.payload_type.chars().take(MAX_REASON_CHARS).collect(),
        symbol: record.symbol.chars().take(MAX_REASON_CHARS).collect(),
        rejection: stockcast_market::Rejection::new(code, field, reason),
    }
}

fn item(bar: types::Bar) -> Item {
    match Bar::try_from(&bar) {
        Ok(domain) => Item::Pushed(domain, bar),
        Err(rejection) => Item::Invalid {
            payload: prost::Message::encode_to_vec(&bar),
            payload_type: <types::Bar as prost::Name>::full_name(),
            symbol: bar.symbol,
            rejection,
        },
    }
}

fn parse_job_id(text: &str) -> Result<uuid::Uuid, Error> {
    uuid::Uuid::parse_str(text)
        .map_err(|_| Error::InvalidArgument(format!("job_id {} is not a UUID", echo(text))))
}

fn job_state_from_proto(state: types::JobState) -> JobState {
    match state {
        types::JobState::Pending | types::JobState::Unspecified => JobState::Pending,
        types::JobState::Running => JobState::Running,
        types::JobState::Succeeded => JobState::Succeeded,
        types::JobState::Failed => JobState::Failed,
        types::JobState::Cancelled => JobState::Cancelled,
    }
}

fn job_state_to_proto(state: JobState) -> types::JobState {
    match state {
        JobState::Pending => types::JobState::Pending,
        JobState::Running => types::JobState::Running,
        JobState::Succeeded => types::JobState::Succeeded,
        JobState::Failed => types::JobState::Failed,
        JobState::Cancelled => types::JobState::Cancelled,
    }
}

fn job_to_proto(job: &JobRecord) -> pb::BackfillJob {
    let source = match job.spec.params {
        SourceParams::AlphaVantage(_) => pb::BackfillSource::AlphaVantage,
        SourceParams::Csv(_) => pb::BackfillSource::Csv,
        SourceParams::Synthetic(_) => pb::BackfillSource::Synthetic,
    };
    pb::BackfillJob {
        job_id: job.id.to_string(),
        symbols: job.spec.symbols.clone(),
        source: source as i32,
        interval: types::Interval::from(job.spec.interval) as i32,
        range: Some(types::TimeRange {
            start: Some(seconds_to_proto(job.spec.start)),
            end: Some(seconds_to_proto(job.spec.end)),
        }),
        state: job_state_to_proto(job.state) as i32,
        chunks_done: job.chunks_done,
        chunks_total: job.chunks_total,
        bars_accepted: job.counts.accepted,
        bars_rejected: job.counts.rejected,
        bars_duplicate: job.counts.duplicate,
        bars_corrected: job.counts.corrected,
        created_at: Some(seconds_to_proto(job.created_at)),
        started_at: job.started_at.map(seconds_to_proto),
        finished_at: job.finished_at.map(seconds_to_proto),
        updated_at: Some(seconds_to_proto(job.updated_at)),
        resumes: job.resumes,
        error: job.error.clone(),
    }
}

fn coverage_to_proto(
    row: &Coverage,
    gaps: &[crate::gaps::Gap],
    include_gaps: bool,
) -> pb::SymbolCoverage {
    pb::SymbolCoverage {
        symbol: row.symbol.clone(),
        interval: types::Interval::from(row.interval) as i32,
        first_bar_ts: Some(seconds_to_proto(row.first_ts)),
        last_bar_ts: Some(seconds_to_proto(row.last_ts)),
        bar_count: row.bar_count,
        gap_count: if include_gaps { gaps.len() as i64 } else { 0 },
        gaps: gaps
            .iter()
            .take(MAX_GAPS)
            .map(|g| pb::Gap {
                range: Some(types::TimeRange {
                    start: Some(seconds_to_proto(g.start)),
                    end: Some(seconds_to_proto(g.end)),
                }),
                missing_bars: g.missing,
            })
            .collect(),
    }
}
