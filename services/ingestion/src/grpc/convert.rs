//! Conversions between the generated types and the domain's: `TryFrom` for requests
//! (INVALID_ARGUMENT naming the field), `From` for answers.

use stockcast_market::convert::{interval_from_proto, seconds_to_proto};
use stockcast_market::sources::SourceParams;
use stockcast_market::{Bar, Interval, cut, echo};
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::types::v1 as types;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

use crate::coverage::{SymbolCoverage, SymbolQuery};
use crate::error::Error;
use crate::ingest::{Item, Report};
use crate::jobs::{JobFilter, JobRecord, JobState};
use crate::push::{Cause, Stopped};

const MAX_PAGE: i32 = 1_000;
const DEFAULT_PAGE: i32 = 100;
/// Rejections returned per push; `rejected` counts them all.
const MAX_REJECTIONS: usize = 1_000;
/// Gaps listed per symbol (oldest first); `gap_count` counts them all.
const MAX_GAPS: usize = 1_000;
/// Longest reason or field kept from a client's unreadable record.
const MAX_REASON_CHARS: usize = 1_000;

fn page_size(requested: i32) -> Result<i64, Error> {
    match requested {
        0 => Ok(DEFAULT_PAGE as i64),
        n if n < 0 => Err(Error::InvalidArgument(format!("page_size {n} is negative"))),
        n => Ok(n.min(MAX_PAGE) as i64),
    }
}

fn not_a_token(token: &str) -> Error {
    Error::InvalidArgument(format!(
        "page_token {} is not a token this service issued",
        echo(token)
    ))
}

/// A job id as sent.
pub(super) fn job_id(text: &str) -> Result<uuid::Uuid, Error> {
    uuid::Uuid::parse_str(text)
        .map_err(|_| Error::InvalidArgument(format!("job_id {} is not a UUID", echo(text))))
}

impl TryFrom<pb::ListBackfillsRequest> for JobFilter {
    type Error = Error;

    fn try_from(request: pb::ListBackfillsRequest) -> Result<Self, Error> {
        let limit = page_size(request.page_size)?;
        let before = if request.page_token.is_empty() {
            None
        } else {
            let id = uuid::Uuid::parse_str(&request.page_token)
                .map_err(|_| not_a_token(&request.page_token))?;
            Some(id)
        };
        let state = match types::JobState::try_from(request.state) {
            Ok(types::JobState::Unspecified) => None,
            Ok(state) => Some(state.into()),
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "state {} is not a job state",
                    request.state
                )));
            }
        };
        Ok(JobFilter {
            state,
            symbol: Some(request.symbol).filter(|s| !s.is_empty()),
            before,
            limit,
        })
    }
}

impl TryFrom<pb::ListSymbolsRequest> for SymbolQuery {
    type Error = Error;

    fn try_from(request: pb::ListSymbolsRequest) -> Result<Self, Error> {
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
            Some(parsed.ok_or_else(|| not_a_token(&request.page_token))?)
        };
        Ok(SymbolQuery {
            interval,
            symbol_prefix: request.symbol_prefix,
            after,
            limit,
            include_gaps: request.include_gaps,
        })
    }
}

impl From<Report> for pb::PushBarsResponse {
    fn from(report: Report) -> Self {
        let mut by_reason = std::collections::BTreeMap::<i32, i64>::new();
        for rejected in &report.rejected {
            *by_reason.entry(rejected.rejection.code as i32).or_default() += 1;
        }
        pb::PushBarsResponse {
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
        }
    }
}

/// The status of each source; `budget` is Alpha Vantage's (per minute, per day), `None` when
/// it is not enabled.
pub(super) fn sources(budget: Option<(i32, i32)>) -> Vec<pb::SourceStatus> {
    vec![
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
    ]
}

pub(super) fn dependency(name: &str, kind: &str, error: Option<String>) -> pb::DependencyStatus {
    pb::DependencyStatus {
        name: name.to_owned(),
        kind: kind.to_owned(),
        healthy: error.is_none(),
        detail: error.unwrap_or_default(),
    }
}

/// The records of a push stream, each message's with their indexes. `index` counts the bars
/// received: a bar's index when the client sends no lines. A message that cannot be read
/// breaks the stream with a status saying after how many bars.
pub(super) fn pushed(
    stream: Streaming<pb::PushBarsRequest>,
) -> impl Stream<Item = Result<Vec<(i64, Item)>, Status>> + Unpin {
    let mut index = 0i64;
    stream.map(move |message| {
        let received = index;
        message
            .and_then(|m| message_items(m, &mut index).map_err(Status::from))
            .map_err(|status| {
                let message = format!("stream broke after {received} bars: {}", status.message());
                Status::new(status.code(), message)
            })
    })
}

/// A stopped push as a status, with the index to resend from.
impl From<Stopped<Status>> for Status {
    fn from(stopped: Stopped<Status>) -> Self {
        let status = match stopped.cause {
            Cause::Store(error) => Status::from(error),
            Cause::Input(status) => status,
        };
        let n = stopped.resend_from;
        let message = format!(
            "{}; bars before index {n} are stored, resend from index {n}",
            status.message()
        );
        Status::new(status.code(), message)
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

impl From<types::JobState> for JobState {
    fn from(state: types::JobState) -> Self {
        match state {
            types::JobState::Pending | types::JobState::Unspecified => JobState::Pending,
            types::JobState::Running => JobState::Running,
            types::JobState::Succeeded => JobState::Succeeded,
            types::JobState::Failed => JobState::Failed,
            types::JobState::Cancelled => JobState::Cancelled,
        }
    }
}

impl From<JobState> for types::JobState {
    fn from(state: JobState) -> Self {
        match state {
            JobState::Pending => types::JobState::Pending,
            JobState::Running => types::JobState::Running,
            JobState::Succeeded => types::JobState::Succeeded,
            JobState::Failed => types::JobState::Failed,
            JobState::Cancelled => types::JobState::Cancelled,
        }
    }
}

impl From<&JobRecord> for pb::BackfillJob {
    fn from(job: &JobRecord) -> Self {
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
            state: types::JobState::from(job.state) as i32,
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
}

impl From<&SymbolCoverage> for pb::SymbolCoverage {
    fn from(symbol: &SymbolCoverage) -> Self {
        let row = &symbol.coverage;
        pb::SymbolCoverage {
            symbol: row.symbol.clone(),
            interval: types::Interval::from(row.interval) as i32,
            first_bar_ts: Some(seconds_to_proto(row.first_ts)),
            last_bar_ts: Some(seconds_to_proto(row.last_ts)),
            bar_count: row.bar_count,
            gap_count: symbol.gaps.len() as i64,
            gaps: symbol
                .gaps
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
}
