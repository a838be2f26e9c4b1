//! The gRPC adapter of `stockcast.features.v1.FeatureStoreService`: convert the request
//! into domain types (INVALID_ARGUMENT naming the field on failure), call the domain,
//! convert back. Store errors become statuses in one place ([`store_status`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use stockcast_market::convert::seconds_to_proto;
use stockcast_proto::stockcast::features::v1 as pb;
use stockcast_proto::stockcast::features::v1::feature_store_service_server::FeatureStoreService;
use stockcast_proto::stockcast::types::v1 as types;
use stockcast_runtime::echo::truncate_for_message;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::materialize::{MaterializeError, MaterializeSpec, Materializer};
use crate::store::{
    HistoricalRow, JobRecord, JobState, OfflineStore, OnlineStore, OnlineVector, PointInTimeQuery,
    SpanQuery, StoreError, Ts,
};
use crate::view::{Catalog, View};

/// Most symbols per online read.
pub const MAX_ONLINE_SYMBOLS: usize = 1_000;
/// Most entity rows per historical request.
pub const MAX_ENTITY_ROWS: usize = 1_000_000;
const DEFAULT_CHUNK: usize = 10_000;
const MAX_CHUNK: usize = 100_000;

/// Implements the gRPC service over the domain.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) online: Arc<dyn OnlineStore>,
    pub(crate) offline: Arc<dyn OfflineStore>,
    pub(crate) materializer: Materializer,
}

/// Maps a store error to a status: unreachable backends are UNAVAILABLE (retry), the rest
/// INTERNAL.
pub fn store_status(error: StoreError) -> Status {
    match error {
        StoreError::Unavailable { .. } => Status::unavailable(error.to_string()),
        _ => Status::internal(error.to_string()),
    }
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}

fn now() -> Ts {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn view_of<'a>(catalog: &'a Catalog, name: &str, version: i32) -> Result<&'a View, Status> {
    if name.is_empty() {
        return Err(invalid("feature_view", "is empty"));
    }
    if version < 0 {
        return Err(invalid(
            "feature_view_version",
            format!("{version} is negative"),
        ));
    }
    catalog.get(name, version).ok_or_else(|| {
        let known: Vec<String> = catalog.views().iter().map(|v| v.id.to_string()).collect();
        if version == 0 {
            Status::not_found(format!(
                "feature view {:?} is not served (served: {})",
                truncate_for_message(name),
                known.join(", ")
            ))
        } else {
            Status::not_found(format!(
                "feature view {:?} version {version} is not served (served: {})",
                truncate_for_message(name),
                known.join(", ")
            ))
        }
    })
}

fn check_symbol(field: &str, symbol: &str) -> Result<(), Status> {
    if symbol.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if symbol.len() > 32 {
        return Err(invalid(
            field,
            format!("{:?} is longer than 32 bytes", truncate_for_message(symbol)),
        ));
    }
    Ok(())
}

/// Status of a vector read at `now`, and its presence mask (empty when all present).
pub fn judge(
    view: &View,
    vector: Option<&OnlineVector>,
    now: Ts,
) -> (pb::FeatureStatus, Vec<bool>) {
    let Some(v) = vector else {
        return (pb::FeatureStatus::NotFound, Vec::new());
    };
    let present: Vec<bool> = if v.values.iter().any(|x| x.is_nan()) {
        v.values.iter().map(|x| !x.is_nan()).collect()
    } else {
        Vec::new()
    };
    let age = now.saturating_sub(v.event_time);
    let status = if age > view.max_age.as_secs() as i64 {
        pb::FeatureStatus::Stale
    } else if !present.is_empty() {
        pb::FeatureStatus::WarmingUp
    } else {
        pb::FeatureStatus::Present
    };
    (status, present)
}

fn to_vector(
    view: &View,
    symbol: String,
    vector: Option<OnlineVector>,
    now: Ts,
) -> pb::FeatureVector {
    let (status, present) = judge(view, vector.as_ref(), now);
    match vector {
        None => pb::FeatureVector {
            symbol,
            status: status as i32,
            ..Default::default()
        },
        Some(v) => pb::FeatureVector {
            symbol,
            status: status as i32,
            event_time: Some(seconds_to_proto(v.event_time)),
            values: v.values,
            present,
        },
    }
}

fn historical_row(view: &View, row: HistoricalRow) -> pb::HistoricalFeatureRow {
    let (status, present) = judge(view, row.vector.as_ref(), row.as_of);
    let (event_time, values) = match row.vector {
        Some(v) => (Some(seconds_to_proto(v.event_time)), v.values),
        None => (None, Vec::new()),
    };
    pb::HistoricalFeatureRow {
        symbol: row.symbol,
        timestamp: Some(seconds_to_proto(row.as_of)),
        event_time,
        status: status as i32,
        values,
        present,
        label: row.label,
    }
}

/// Converts a view to its contract form.
pub fn view_to_proto(view: &View) -> pb::FeatureView {
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

fn job_to_proto(job: &JobRecord) -> pb::MaterializationJob {
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
        state: match job.state {
            JobState::Pending => types::JobState::Pending,
            JobState::Running => types::JobState::Running,
            JobState::Succeeded => types::JobState::Succeeded,
            JobState::Failed => types::JobState::Failed,
        } as i32,
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

/// How far past now a queried time may be, seconds.
const MAX_FUTURE_SECS: Ts = 86_400;

/// Seconds of a requested time: nanos within 0..1e9 and seconds within 1900-01-01 ..
/// now + 1 day (docs/contracts.md, input limits).
fn check_timestamp(field: &str, ts: &prost_types::Timestamp, now: Ts) -> Result<Ts, Status> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(invalid(
            field,
            format!("nanos {} is outside 0..1000000000", ts.nanos),
        ));
    }
    if !(stockcast_market::MIN_TS..=now.saturating_add(MAX_FUTURE_SECS)).contains(&ts.seconds) {
        return Err(invalid(
            field,
            format!(
                "{} s is outside 1900-01-01T00:00:00Z .. now + 1 day",
                ts.seconds
            ),
        ));
    }
    Ok(ts.seconds)
}

fn time_range(
    field: &'static str,
    range: Option<&types::TimeRange>,
    now: Ts,
) -> Result<(Ts, Ts), Status> {
    let Some(range) = range else {
        return Err(invalid(field, "is missing"));
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
        return Err(invalid(
            field,
            format!("start {from} is not before end {until}"),
        ));
    }
    Ok((from, until))
}

type RowStream =
    Pin<Box<dyn Stream<Item = Result<pb::GetHistoricalFeaturesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl FeatureStoreService for Api {
    async fn get_online_features(
        &self,
        request: Request<pb::GetOnlineFeaturesRequest>,
    ) -> Result<Response<pb::GetOnlineFeaturesResponse>, Status> {
        let req = request.into_inner();
        let view = view_of(&self.catalog, &req.feature_view, req.feature_view_version)?;
        if req.symbols.is_empty() {
            return Err(invalid("symbols", "at least one symbol is needed"));
        }
        if req.symbols.len() > MAX_ONLINE_SYMBOLS {
            return Err(invalid(
                "symbols",
                format!(
                    "{} symbols; at most {MAX_ONLINE_SYMBOLS} per call",
                    req.symbols.len()
                ),
            ));
        }
        for (i, s) in req.symbols.iter().enumerate() {
            check_symbol(&format!("symbols[{i}]"), s)?;
        }
        let vectors = self
            .online
            .read(&view.id, &req.symbols)
            .await
            .map_err(store_status)?;
        let now = now();
        Ok(Response::new(pb::GetOnlineFeaturesResponse {
            feature_view: view.id.name.clone(),
            feature_view_version: view.id.version,
            feature_names: view.names.clone(),
            vectors: req
                .symbols
                .into_iter()
                .zip(vectors)
                .map(|(s, v)| to_vector(view, s, v, now))
                .collect(),
        }))
    }

    async fn get_historical_features(
        &self,
        request: Request<pb::GetHistoricalFeaturesRequest>,
    ) -> Result<Response<RowStream>, Status> {
        let req = request.into_inner();
        let view = view_of(&self.catalog, &req.feature_view, req.feature_view_version)?.clone();
        let chunk = match req.max_rows_per_chunk {
            0 => DEFAULT_CHUNK,
            n if n < 0 || n as usize > MAX_CHUNK => {
                return Err(invalid(
                    "max_rows_per_chunk",
                    format!("{n} is outside 1..={MAX_CHUNK}"),
                ));
            }
            n => n as usize,
        };
        let label = match req.label {
            None => None,
            Some(l) if l.horizon_bars >= 1 && l.horizon_bars <= 100_000 => {
                Some(l.horizon_bars as u32)
            }
            Some(l) => {
                return Err(invalid(
                    "label.horizon_bars",
                    format!("{} is outside 1..=100000", l.horizon_bars),
                ));
            }
        };
        let header = pb::HistoricalFeaturesHeader {
            feature_view: view.id.name.clone(),
            feature_view_version: view.id.version,
            feature_names: view.names.clone(),
            total_rows: 0,
        };
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<pb::GetHistoricalFeaturesResponse, Status>>(2);
        let offline = Arc::clone(&self.offline);
        match req.entities {
            None => return Err(invalid("entities", "give entity_rows or span")),
            Some(pb::get_historical_features_request::Entities::EntityRows(rows)) => {
                if rows.rows.is_empty() {
                    return Err(invalid("entity_rows.rows", "at least one row is needed"));
                }
                if rows.rows.len() > MAX_ENTITY_ROWS {
                    return Err(invalid(
                        "entity_rows.rows",
                        format!(
                            "{} rows; at most {MAX_ENTITY_ROWS} per request",
                            rows.rows.len()
                        ),
                    ));
                }
                let now = now();
                let mut entities = Vec::with_capacity(rows.rows.len());
                for (i, row) in rows.rows.into_iter().enumerate() {
                    check_symbol(&format!("entity_rows.rows[{i}].symbol"), &row.symbol)?;
                    let Some(ts) = row.timestamp else {
                        return Err(invalid(
                            &format!("entity_rows.rows[{i}].timestamp"),
                            "is missing",
                        ));
                    };
                    let field = format!("entity_rows.rows[{i}].timestamp");
                    // Whole seconds, rounded down: nothing after the as-of instant is used.
                    entities.push((row.symbol, check_timestamp(&field, &ts, now)?));
                }
                let mut header = Some(pb::HistoricalFeaturesHeader {
                    total_rows: entities.len() as i64,
                    ..header
                });
                tokio::spawn(async move {
                    for part in entities.chunks(chunk) {
                        let result = offline
                            .point_in_time(PointInTimeQuery {
                                view: &view.id,
                                interval: view.interval,
                                rows: part,
                                label_horizon: label,
                            })
                            .await;
                        let message = result.map_err(store_status).map(|rows| {
                            pb::GetHistoricalFeaturesResponse {
                                header: header.take(),
                                rows: rows.into_iter().map(|r| historical_row(&view, r)).collect(),
                            }
                        });
                        let failed = message.is_err();
                        if tx.send(message).await.is_err() || failed {
                            return;
                        }
                    }
                });
            }
            Some(pb::get_historical_features_request::Entities::Span(span)) => {
                if span.symbols.is_empty() {
                    return Err(invalid("span.symbols", "at least one symbol is needed"));
                }
                for (i, s) in span.symbols.iter().enumerate() {
                    check_symbol(&format!("span.symbols[{i}]"), s)?;
                }
                let (from, until) = time_range("span.range", span.range.as_ref(), now())?;
                let mut symbols = span.symbols;
                symbols.sort();
                symbols.dedup();
                tokio::spawn(async move {
                    let mut header = Some(header);
                    let mut cursor: Option<(String, Ts)> = None;
                    loop {
                        let result = offline
                            .span(SpanQuery {
                                view: &view.id,
                                interval: view.interval,
                                symbols: &symbols,
                                from,
                                until,
                                after: cursor.as_ref().map(|(s, t)| (s.as_str(), *t)),
                                limit: chunk,
                                label_horizon: label,
                            })
                            .await;
                        let rows = match result {
                            Ok(rows) => rows,
                            Err(e) => {
                                let _ = tx.send(Err(store_status(e))).await;
                                return;
                            }
                        };
                        let last = rows.len() < chunk;
                        cursor = rows.last().map(|r| (r.symbol.clone(), r.as_of));
                        if rows.is_empty() && header.is_none() {
                            return;
                        }
                        let message = pb::GetHistoricalFeaturesResponse {
                            header: header.take(),
                            rows: rows.into_iter().map(|r| historical_row(&view, r)).collect(),
                        };
                        if tx.send(Ok(message)).await.is_err() || last {
                            return;
                        }
                    }
                });
            }
        }
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_feature_views(
        &self,
        request: Request<pb::ListFeatureViewsRequest>,
    ) -> Result<Response<pb::ListFeatureViewsResponse>, Status> {
        let req = request.into_inner();
        let size = match req.page_size {
            0 => 100,
            n if (1..=1000).contains(&n) => n as usize,
            n => return Err(invalid("page_size", format!("{n} is outside 1..=1000"))),
        };
        let start = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse::<usize>()
                .map_err(|_| invalid("page_token", "is not a token this service issued"))?
        };
        let views: Vec<&View> = self
            .catalog
            .views()
            .iter()
            .filter(|v| req.all_versions || v.current)
            .collect();
        let page: Vec<pb::FeatureView> = views
            .iter()
            .skip(start)
            .take(size)
            .map(|v| view_to_proto(v))
            .collect();
        let next = start + page.len();
        Ok(Response::new(pb::ListFeatureViewsResponse {
            views: page,
            next_page_token: if next < views.len() {
                next.to_string()
            } else {
                String::new()
            },
        }))
    }

    async fn get_feature_view(
        &self,
        request: Request<pb::GetFeatureViewRequest>,
    ) -> Result<Response<pb::GetFeatureViewResponse>, Status> {
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(invalid("name", "is empty"));
        }
        let view = view_of(&self.catalog, &req.name, req.version).map_err(|s| {
            if s.code() == tonic::Code::InvalidArgument {
                // view_of names the request fields of the feature calls.
                Status::invalid_argument(s.message().replace("feature_view_version", "version"))
            } else {
                s
            }
        })?;
        Ok(Response::new(pb::GetFeatureViewResponse {
            view: Some(view_to_proto(view)),
        }))
    }

    async fn materialize(
        &self,
        request: Request<pb::MaterializeRequest>,
    ) -> Result<Response<pb::MaterializeResponse>, Status> {
        let req = request.into_inner();
        view_of(&self.catalog, &req.feature_view, req.feature_view_version)?;
        for (i, s) in req.symbols.iter().enumerate() {
            check_symbol(&format!("symbols[{i}]"), s)?;
        }
        let (from, until) = time_range("range", req.range.as_ref(), now())?;
        let job = self
            .materializer
            .start(MaterializeSpec {
                view: req.feature_view,
                version: req.feature_view_version,
                symbols: req.symbols,
                from,
                until,
                request_id: Some(req.request_id).filter(|r| !r.is_empty()),
            })
            .await
            .map_err(|e| match e {
                MaterializeError::UnknownView(_) => Status::not_found(e.to_string()),
                MaterializeError::Invalid { field, reason } => invalid(field, reason),
                MaterializeError::Store(e) => store_status(e),
            })?;
        Ok(Response::new(pb::MaterializeResponse {
            job: Some(job_to_proto(&job)),
        }))
    }

    async fn get_materialization_job(
        &self,
        request: Request<pb::GetMaterializationJobRequest>,
    ) -> Result<Response<pb::GetMaterializationJobResponse>, Status> {
        let req = request.into_inner();
        let id = Uuid::parse_str(&req.job_id).map_err(|_| {
            invalid(
                "job_id",
                format!("{:?} is not a UUID", truncate_for_message(&req.job_id)),
            )
        })?;
        let job = self
            .materializer
            .job(id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("materialization job {id} does not exist")))?;
        Ok(Response::new(pb::GetMaterializationJobResponse {
            job: Some(job_to_proto(&job)),
        }))
    }
}
