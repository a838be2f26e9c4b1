//! The gRPC adapter of `stockcast.ingestion.v1.IngestionService`: convert the request (see
//! [`convert`]), call the domain, convert back. Errors become statuses in one place
//! (`Error` → `Status`).

mod convert;

use std::sync::Arc;

use stockcast_market::convert::seconds_to_proto;
use stockcast_proto::stockcast::ingestion::v1 as pb;
use stockcast_proto::stockcast::ingestion::v1::ingestion_service_server::IngestionService;
use tonic::{Request, Response, Status, Streaming};

use crate::backfill_request::{Rules, backfill_spec};
use crate::coverage::{Catalog, SymbolQuery};
use crate::ingest::{Ingestor, Origin};
use crate::jobs::{Backfills, JobFilter};
use crate::push;

/// Implements the gRPC service over the domain.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) ingestor: Ingestor,
    pub(crate) backfills: Backfills,
    pub(crate) catalog: Catalog,
    pub(crate) batch_size: usize,
    /// Seconds since epoch, UTC.
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

#[tonic::async_trait]
impl IngestionService for Api {
    async fn push_bars(
        &self,
        request: Request<Streaming<pb::PushBarsRequest>>,
    ) -> Result<Response<pb::PushBarsResponse>, Status> {
        let client = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let messages = convert::pushed(request.into_inner());
        let report = push::push(
            &self.ingestor,
            self.batch_size,
            &Origin::push(client),
            messages,
        )
        .await?;
        Ok(Response::new(report.into()))
    }

    async fn start_backfill(
        &self,
        request: Request<pb::StartBackfillRequest>,
    ) -> Result<Response<pb::StartBackfillResponse>, Status> {
        let request = request.into_inner();
        let request_id = Some(request.request_id.clone()).filter(|r| !r.is_empty());
        let spec = backfill_spec(request, &self.rules, self.ingestor.clock().now_seconds())?;
        let job = self.backfills.start(request_id.as_deref(), spec).await?;
        Ok(Response::new(pb::StartBackfillResponse {
            job: Some((&job).into()),
        }))
    }

    async fn get_backfill(
        &self,
        request: Request<pb::GetBackfillRequest>,
    ) -> Result<Response<pb::GetBackfillResponse>, Status> {
        let id = convert::job_id(&request.into_inner().job_id)?;
        let job = self.backfills.get(id).await?;
        Ok(Response::new(pb::GetBackfillResponse {
            job: Some((&job).into()),
        }))
    }

    async fn list_backfills(
        &self,
        request: Request<pb::ListBackfillsRequest>,
    ) -> Result<Response<pb::ListBackfillsResponse>, Status> {
        let filter = JobFilter::try_from(request.into_inner())?;
        let (jobs, next) = self.backfills.list(filter).await?;
        Ok(Response::new(pb::ListBackfillsResponse {
            jobs: jobs.iter().map(pb::BackfillJob::from).collect(),
            next_page_token: next.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn list_symbols(
        &self,
        request: Request<pb::ListSymbolsRequest>,
    ) -> Result<Response<pb::ListSymbolsResponse>, Status> {
        let query = SymbolQuery::try_from(request.into_inner())?;
        let (symbols, next) = self.catalog.symbols(query).await?;
        Ok(Response::new(pb::ListSymbolsResponse {
            symbols: symbols.iter().map(pb::SymbolCoverage::from).collect(),
            next_page_token: next
                .map(|(symbol, interval)| format!("{symbol}/{interval}"))
                .unwrap_or_default(),
        }))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let (accepted, rejected, last_published) = self.ingestor.totals();
        let health = self.ingestor.health().await;
        Ok(Response::new(pb::GetStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: Some(seconds_to_proto(self.started_at)),
            sources: convert::sources((self.budget.0)()),
            dependencies: vec![
                convert::dependency("database", "sql", health.database),
                convert::dependency("event-bus", "kafka", health.bus),
            ],
            running_backfills: self.backfills.running() as i32,
            bars_accepted_total: accepted,
            bars_rejected_total: rejected,
            last_published_at: (last_published > 0).then(|| seconds_to_proto(last_published)),
        }))
    }
}
