//! The gRPC adapter of `stockcast.features.v1.FeatureStoreService`: convert the request
//! into domain types (INVALID_ARGUMENT naming the field on failure, [`convert`]), call the
//! domain, convert back. Errors become statuses in one place ([`crate::error`]).

pub mod convert;

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use stockcast_proto::stockcast::features::v1 as pb;
use stockcast_proto::stockcast::features::v1::feature_store_service_server::FeatureStoreService;
use stockcast_runtime::clock::SharedClock;
use tonic::{Request, Response, Status};

use self::convert::{
    JobId, Judged, OnlineRead, ViewPage, check_symbols, feature_view, served, time_range,
};
use crate::error::Error;
use crate::history;
use crate::materialize::{MaterializeSpec, Materializer};
use crate::store::{OfflineStore, OnlineStore};
use crate::view::Catalog;

pub use self::convert::{MAX_ENTITY_ROWS, MAX_ONLINE_SYMBOLS};

/// Implements the gRPC service over the domain.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) online: Arc<dyn OnlineStore>,
    pub(crate) offline: Arc<dyn OfflineStore>,
    pub(crate) materializer: Materializer,
    /// Judges staleness and how far in the future a requested time may be.
    pub(crate) clock: SharedClock,
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
        let view = feature_view(&self.catalog, &req.feature_view, req.feature_view_version)?;
        convert::online_symbols(&req.symbols)?;
        let vectors = self.online.read(&view.id, &req.symbols).await;
        Ok(Response::new(
            OnlineRead {
                view,
                symbols: req.symbols,
                vectors: vectors.map_err(Error::from)?,
                now: self.clock.now_seconds(),
            }
            .into(),
        ))
    }

    async fn get_historical_features(
        &self,
        request: Request<pb::GetHistoricalFeaturesRequest>,
    ) -> Result<Response<RowStream>, Status> {
        let req = request.into_inner();
        let query = convert::history_query(&self.catalog, req, self.clock.now_seconds())?;
        let view = query.view.clone();
        let mut header = Some(pb::HistoricalFeaturesHeader::from(&query));
        let rows = history::pages(Arc::clone(&self.offline), query).map(move |page| {
            let rows = page.map_err(|e| Status::from(Error::from(e)))?;
            Ok(pb::GetHistoricalFeaturesResponse {
                header: header.take(),
                rows: rows
                    .into_iter()
                    .map(|row| pb::HistoricalFeatureRow::from(Judged { view: &view, row }))
                    .collect(),
            })
        });
        Ok(Response::new(Box::pin(rows)))
    }

    async fn list_feature_views(
        &self,
        request: Request<pb::ListFeatureViewsRequest>,
    ) -> Result<Response<pb::ListFeatureViewsResponse>, Status> {
        let page = ViewPage::try_from(&request.into_inner())?;
        let (views, next) = self.catalog.page(page.all_versions, page.start, page.size);
        Ok(Response::new(pb::ListFeatureViewsResponse {
            views: views.into_iter().map(pb::FeatureView::from).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_feature_view(
        &self,
        request: Request<pb::GetFeatureViewRequest>,
    ) -> Result<Response<pb::GetFeatureViewResponse>, Status> {
        let req = request.into_inner();
        let view = served(&self.catalog, ("name", &req.name), ("version", req.version))?;
        Ok(Response::new(pb::GetFeatureViewResponse {
            view: Some(view.into()),
        }))
    }

    async fn materialize(
        &self,
        request: Request<pb::MaterializeRequest>,
    ) -> Result<Response<pb::MaterializeResponse>, Status> {
        let req = request.into_inner();
        feature_view(&self.catalog, &req.feature_view, req.feature_view_version)?;
        check_symbols("symbols", &req.symbols)?;
        let (from, until) = time_range("range", req.range.as_ref(), self.clock.now_seconds())?;
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
            .await?;
        Ok(Response::new(pb::MaterializeResponse {
            job: Some((&job).into()),
        }))
    }

    async fn get_materialization_job(
        &self,
        request: Request<pb::GetMaterializationJobRequest>,
    ) -> Result<Response<pb::GetMaterializationJobResponse>, Status> {
        let JobId(id) = JobId::try_from(&request.into_inner())?;
        let job = self
            .materializer
            .job(id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("materialization job {id} does not exist")))?;
        Ok(Response::new(pb::GetMaterializationJobResponse {
            job: Some((&job).into()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use stockcast_runtime::Shutdown;
    use stockcast_runtime::clock::ManualClock;

    use super::*;
    use crate::store::OnlineWrite;
    use crate::store::memory::MemoryOnline;
    use crate::view::default_view;

    #[tokio::test]
    async fn online_reads_judge_staleness_by_the_injected_clock() {
        let catalog = Arc::new(Catalog::new(&[default_view()]).unwrap());
        let view = catalog.get("default", 0).unwrap().clone();
        let online: Arc<dyn OnlineStore> = Arc::new(MemoryOnline::new());
        let offline =
            crate::store::sql::open(&Default::default(), &stockcast_runtime::Shutdown::new())
                .await
                .unwrap();
        let t = 1_700_000_000;
        online
            .write(&[OnlineWrite {
                view: view.id.clone(),
                symbol: "AAPL".into(),
                event_time: t,
                values: vec![0.5; view.features.len()],
                ttl: view.online_ttl,
            }])
            .await
            .unwrap();
        let clock = ManualClock::at_ms(t * 1_000);
        let api = Api {
            catalog: Arc::clone(&catalog),
            online: Arc::clone(&online),
            offline: Arc::clone(&offline),
            materializer: Materializer::new(
                catalog,
                offline,
                online,
                Default::default(),
                Shutdown::new(),
                Arc::new(clock.clone()),
            ),
            clock: Arc::new(clock.clone()),
        };
        let status = || async {
            let request = pb::GetOnlineFeaturesRequest {
                feature_view: "default".into(),
                symbols: vec!["AAPL".into()],
                ..Default::default()
            };
            let answer = api.get_online_features(Request::new(request)).await;
            answer.unwrap().into_inner().vectors[0].status
        };
        assert_eq!(status().await, pb::FeatureStatus::Present as i32);
        clock.advance_ms(view.max_age.as_millis() as i64);
        assert_eq!(status().await, pb::FeatureStatus::Present as i32);
        clock.advance_ms(1_000);
        assert_eq!(status().await, pb::FeatureStatus::Stale as i32);
    }
}
