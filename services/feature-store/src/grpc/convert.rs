//! Conversions between the contract's messages and domain types: requests are checked and
//! converted (INVALID_ARGUMENT naming the field), domain values converted back with `From`.

use stockcast_market::convert::seconds_to_proto;
use stockcast_proto::stockcast::features::v1 as pb;
use stockcast_proto::stockcast::features::v1::get_historical_features_request::Entities as PbEntities;
use stockcast_proto::stockcast::types::v1 as types;
use stockcast_runtime::echo::truncate_for_message;
use uuid::Uuid;

use crate::error::Error;
use crate::history::{Entities, HistoryQuery};
use crate::store::{HistoricalRow, JobRecord, JobState, OnlineVector};
use crate::view::{Catalog, FeatureStatus, Ts, View, presence};

/// Most symbols per online read.
pub const MAX_ONLINE_SYMBOLS: usize = 1_000;
/// Most entity rows per historical request.
pub const MAX_ENTITY_ROWS: usize = 1_000_000;
const DEFAULT_CHUNK: usize = 10_000;
const MAX_CHUNK: usize = 100_000;
/// How far past now a queried time may be, seconds.
const MAX_FUTURE_SECS: Ts = 86_400;

/// The served view a request names; `name` and `version` are (request field, value).
pub fn served<'a>(
    catalog: &'a Catalog,
    (name_field, name): (&str, &str),
    (version_field, version): (&str, i32),
) -> Result<&'a View, Error> {
    if name.is_empty() {
        return Err(Error::invalid(name_field, "is empty"));
    }
    if version < 0 {
        return Err(Error::invalid(
            version_field,
            format!("{version} is negative"),
        ));
    }
    catalog.find(name, version)
}

/// The served view of a feature request (fields `feature_view`, `feature_view_version`).
pub fn feature_view<'a>(catalog: &'a Catalog, name: &str, version: i32) -> Result<&'a View, Error> {
    served(
        catalog,
        ("feature_view", name),
        ("feature_view_version", version),
    )
}

fn check_symbol(field: &str, symbol: &str) -> Result<(), Error> {
    if symbol.is_empty() {
        return Err(Error::invalid(field, "is empty"));
    }
    if symbol.len() > 32 {
        return Err(Error::invalid(
            field,
            format!("{:?} is longer than 32 bytes", truncate_for_message(symbol)),
        ));
    }
    Ok(())
}

/// Checks every symbol of the repeated field `field`.
pub fn check_symbols(field: &str, symbols: &[String]) -> Result<(), Error> {
    for (i, s) in symbols.iter().enumerate() {
        check_symbol(&format!("{field}[{i}]"), s)?;
    }
    Ok(())
}

/// The symbols of an online read: 1 to [`MAX_ONLINE_SYMBOLS`], each valid.
pub fn online_symbols(symbols: &[String]) -> Result<(), Error> {
    if symbols.is_empty() {
        return Err(Error::invalid("symbols", "at least one symbol is needed"));
    }
    if symbols.len() > MAX_ONLINE_SYMBOLS {
        return Err(Error::invalid(
            "symbols",
            format!(
                "{} symbols; at most {MAX_ONLINE_SYMBOLS} per call",
                symbols.len()
            ),
        ));
    }
    check_symbols("symbols", symbols)
}

/// Seconds of a requested time: nanos within 0..1e9 and seconds within 1900-01-01 ..
/// now + 1 day (docs/contracts.md, input limits).
fn check_timestamp(field: &str, ts: &prost_types::Timestamp, now: Ts) -> Result<Ts, Error> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(Error::invalid(
            field,
            format!("nanos {} is outside 0..1000000000", ts.nanos),
        ));
    }
    if !(stockcast_market::MIN_TS..=now.saturating_add(MAX_FUTURE_SECS)).contains(&ts.seconds) {
        return Err(Error::invalid(
            field,
            format!(
                "{} s is outside 1900-01-01T00:00:00Z .. now + 1 day",
                ts.seconds
            ),
        ));
    }
    Ok(ts.seconds)
}

/// A requested range `[from, until)`: an open start is the epoch, an open end just after
/// `now`.
pub fn time_range(
    field: &'static str,
    range: Option<&types::TimeRange>,
    now: Ts,
) -> Result<(Ts, Ts), Error> {
    let Some(range) = range else {
        return Err(Error::invalid(field, "is missing"));
    };
    let from = match &range.start {
        Some(t) => check_timestamp(&format!("{field}.start"), t, now)?,
        None => 0,
    };
    let until = match &range.end {
        Some(t) => check_timestamp(&format!("{field}.end"), t, now)?,
        None => now + 1,
    };
    if from >= until {
        return Err(Error::invalid(
            field,
            format!("start {from} is not before end {until}"),
        ));
    }
    Ok((from, until))
}

/// A historical request in domain terms, its times checked against `now`.
pub fn history_query(
    catalog: &Catalog,
    req: pb::GetHistoricalFeaturesRequest,
    now: Ts,
) -> Result<HistoryQuery, Error> {
    let view = feature_view(catalog, &req.feature_view, req.feature_view_version)?.clone();
    let page = match req.max_rows_per_chunk {
        0 => DEFAULT_CHUNK,
        n if n < 0 || n as usize > MAX_CHUNK => {
            return Err(Error::invalid(
                "max_rows_per_chunk",
                format!("{n} is outside 1..={MAX_CHUNK}"),
            ));
        }
        n => n as usize,
    };
    let label_horizon = match req.label {
        None => None,
        Some(l) if l.horizon_bars >= 1 && l.horizon_bars <= 100_000 => Some(l.horizon_bars as u32),
        Some(l) => {
            return Err(Error::invalid(
                "label.horizon_bars",
                format!("{} is outside 1..=100000", l.horizon_bars),
            ));
        }
    };
    let entities = match req.entities {
        None => return Err(Error::invalid("entities", "give entity_rows or span")),
        Some(PbEntities::EntityRows(rows)) => Entities::Rows(entity_rows(rows.rows, now)?),
        Some(PbEntities::Span(span)) => {
            if span.symbols.is_empty() {
                return Err(Error::invalid(
                    "span.symbols",
                    "at least one symbol is needed",
                ));
            }
            check_symbols("span.symbols", &span.symbols)?;
            let (from, until) = time_range("span.range", span.range.as_ref(), now)?;
            let mut symbols = span.symbols;
            symbols.sort();
            symbols.dedup();
            Entities::Span {
                symbols,
                from,
                until,
            }
        }
    };
    Ok(HistoryQuery {
        view,
        entities,
        page,
        label_horizon,
    })
}

fn entity_rows(rows: Vec<pb::EntityRow>, now: Ts) -> Result<Vec<(String, Ts)>, Error> {
    if rows.is_empty() {
        return Err(Error::invalid(
            "entity_rows.rows",
            "at least one row is needed",
        ));
    }
    if rows.len() > MAX_ENTITY_ROWS {
        return Err(Error::invalid(
            "entity_rows.rows",
            format!("{} rows; at most {MAX_ENTITY_ROWS} per request", rows.len()),
        ));
    }
    let mut entities = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        check_symbol(&format!("entity_rows.rows[{i}].symbol"), &row.symbol)?;
        let field = format!("entity_rows.rows[{i}].timestamp");
        let Some(ts) = row.timestamp else {
            return Err(Error::invalid(field, "is missing"));
        };
        // Whole seconds, rounded down: nothing after the as-of instant is used.
        entities.push((row.symbol, check_timestamp(&field, &ts, now)?));
    }
    Ok(entities)
}

/// Which page of the feature views a list request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewPage {
    /// Every version, or only the current ones.
    pub all_versions: bool,
    /// Position of the first view.
    pub start: usize,
    /// Most views.
    pub size: usize,
}

impl TryFrom<&pb::ListFeatureViewsRequest> for ViewPage {
    type Error = Error;

    fn try_from(req: &pb::ListFeatureViewsRequest) -> Result<Self, Error> {
        let size = match req.page_size {
            0 => 100,
            n if (1..=1000).contains(&n) => n as usize,
            n => {
                return Err(Error::invalid(
                    "page_size",
                    format!("{n} is outside 1..=1000"),
                ));
            }
        };
        let start = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse::<usize>()
                .map_err(|_| Error::invalid("page_token", "is not a token this service issued"))?
        };
        Ok(Self {
            all_versions: req.all_versions,
            start,
            size,
        })
    }
}

/// The job a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobId(pub Uuid);

impl TryFrom<&pb::GetMaterializationJobRequest> for JobId {
    type Error = Error;

    fn try_from(req: &pb::GetMaterializationJobRequest) -> Result<Self, Error> {
        let raw = &req.job_id;
        Uuid::parse_str(raw).map(JobId).map_err(|_| {
            let raw = truncate_for_message(raw);
            Error::invalid("job_id", format!("{raw:?} is not a UUID"))
        })
    }
}

impl From<FeatureStatus> for pb::FeatureStatus {
    fn from(status: FeatureStatus) -> Self {
        match status {
            FeatureStatus::NotFound => pb::FeatureStatus::NotFound,
            FeatureStatus::Stale => pb::FeatureStatus::Stale,
            FeatureStatus::WarmingUp => pb::FeatureStatus::WarmingUp,
            FeatureStatus::Present => pb::FeatureStatus::Present,
        }
    }
}

/// A vector read from the online store, for `symbol` of `view` at `now`.
#[derive(Debug)]
pub struct Vector<'a> {
    /// The view read.
    pub view: &'a View,
    /// The symbol asked for.
    pub symbol: String,
    /// What the store holds, if anything.
    pub vector: Option<OnlineVector>,
    /// When it was read.
    pub now: Ts,
}

impl From<Vector<'_>> for pb::FeatureVector {
    fn from(
        Vector {
            view,
            symbol,
            vector,
            now,
        }: Vector<'_>,
    ) -> Self {
        match vector {
            None => pb::FeatureVector {
                symbol,
                status: pb::FeatureStatus::NotFound as i32,
                ..Default::default()
            },
            Some(v) => pb::FeatureVector {
                symbol,
                status: pb::FeatureStatus::from(view.status(v.event_time, &v.values, now)) as i32,
                event_time: Some(seconds_to_proto(v.event_time)),
                present: presence(&v.values),
                values: v.values,
            },
        }
    }
}

/// The vectors of `symbols` read from the online store for `view` at `now`, in order.
#[derive(Debug)]
pub struct OnlineRead<'a> {
    /// The view read.
    pub view: &'a View,
    /// The symbols asked for.
    pub symbols: Vec<String>,
    /// What the store holds for each, if anything.
    pub vectors: Vec<Option<OnlineVector>>,
    /// When they were read.
    pub now: Ts,
}

impl From<OnlineRead<'_>> for pb::GetOnlineFeaturesResponse {
    fn from(read: OnlineRead<'_>) -> Self {
        let OnlineRead {
            view,
            symbols,
            vectors,
            now,
        } = read;
        pb::GetOnlineFeaturesResponse {
            feature_view: view.id.name.clone(),
            feature_view_version: view.id.version,
            feature_names: view.names.clone(),
            vectors: symbols
                .into_iter()
                .zip(vectors)
                .map(|(symbol, vector)| {
                    pb::FeatureVector::from(Vector {
                        view,
                        symbol,
                        vector,
                        now,
                    })
                })
                .collect(),
        }
    }
}

impl From<&HistoryQuery> for pb::HistoricalFeaturesHeader {
    fn from(query: &HistoryQuery) -> Self {
        pb::HistoricalFeaturesHeader {
            feature_view: query.view.id.name.clone(),
            feature_view_version: query.view.id.version,
            feature_names: query.view.names.clone(),
            total_rows: query.total_rows(),
        }
    }
}

/// A historical row of `view`, judged at its as-of time.
#[derive(Debug)]
pub struct Judged<'a> {
    /// The view read.
    pub view: &'a View,
    /// The row.
    pub row: HistoricalRow,
}

impl From<Judged<'_>> for pb::HistoricalFeatureRow {
    fn from(Judged { view, row }: Judged<'_>) -> Self {
        let (status, event_time, present, values) = match row.vector {
            None => (FeatureStatus::NotFound, None, Vec::new(), Vec::new()),
            Some(v) => (
                view.status(v.event_time, &v.values, row.as_of),
                Some(seconds_to_proto(v.event_time)),
                presence(&v.values),
                v.values,
            ),
        };
        pb::HistoricalFeatureRow {
            symbol: row.symbol,
            timestamp: Some(seconds_to_proto(row.as_of)),
            event_time,
            status: pb::FeatureStatus::from(status) as i32,
            values,
            present,
            label: row.label,
        }
    }
}

impl From<&View> for pb::FeatureView {
    fn from(view: &View) -> Self {
        pb::FeatureView {
            name: view.id.name.clone(),
            version: view.id.version,
            current: view.current,
            description: view.description.clone(),
            interval: types::Interval::from(view.interval) as i32,
            features: view
                .features
                .iter()
                .map(|f| pb::FeatureDefinition {
                    name: f.name.clone(),
                    indicator: f.indicator.clone(),
                    params: f.params.clone().into_iter().collect(),
                    lookback_bars: f.lookback_bars as i32,
                    description: f.description.clone(),
                })
                .collect(),
            max_age: Some(prost_types::Duration {
                seconds: view.max_age.as_secs() as i64,
                nanos: view.max_age.subsec_nanos() as i32,
            }),
            warmup_bars: view.warmup_bars as i32,
            created_at: view.created_at.map(seconds_to_proto),
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
        }
    }
}

impl From<&JobRecord> for pb::MaterializationJob {
    fn from(job: &JobRecord) -> Self {
        let ts = |t: Option<Ts>| t.map(seconds_to_proto);
        pb::MaterializationJob {
            job_id: job.id.to_string(),
            feature_view: job.view.name.clone(),
            feature_view_version: job.view.version,
            symbols: job.symbols.clone(),
            range: Some(types::TimeRange {
                start: Some(seconds_to_proto(job.from)),
                end: Some(seconds_to_proto(job.until)),
            }),
            state: types::JobState::from(job.state) as i32,
            chunks_done: job.chunks_done,
            chunks_total: job.chunks_total,
            bars_read: job.bars_read,
            vectors_written: job.vectors_written,
            created_at: ts(Some(job.created_at)),
            started_at: ts(job.started_at),
            finished_at: ts(job.finished_at),
            updated_at: ts(Some(job.updated_at)),
            error: job.error.clone().unwrap_or_default(),
        }
    }
}
