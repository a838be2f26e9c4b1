//! The gRPC adapter of `stockcast.registry.v1.ModelRegistryService`: convert
//! (`convert.rs`), call the resolver or the alias manager, convert back. Errors become
//! statuses in one place (`Error` → `Status`).

mod convert;
mod streams;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use stockcast_proto::stockcast::registry::v1 as pb;
use stockcast_proto::stockcast::registry::v1::model_registry_service_server::ModelRegistryService;
use stockcast_runtime::grpc::parse_grpc_timeout;
use tonic::{Request, Response, Status};

use self::convert::{AuditQuery, FetchRequest, PageRequest, Watched, audit_page, expected_version};
use crate::aliases::AliasManager;
use crate::deadline::{Budget, within};
use crate::error::Error;
use crate::resolver::Resolver;

/// Metadata key naming the caller until authentication supplies an identity.
pub const ACTOR_HEADER: &str = "x-stockcast-actor";

/// Implements the gRPC service over the domain.
#[derive(Debug, Clone)]
pub struct Api {
    /// Resolves and fetches.
    pub resolver: Arc<Resolver>,
    /// Changes, audits and watches aliases.
    pub aliases: Arc<AliasManager>,
    /// Largest message the server sends, bytes.
    pub max_message_bytes: usize,
    /// Ends watch streams when the server stops, so that draining does not wait for them.
    pub shutdown: stockcast_runtime::Shutdown,
    /// The server's limit on a call (`server.request_timeout_ms`).
    pub request_timeout: Duration,
}

impl Api {
    /// The time registry calls made for `request` may take: before the caller's deadline
    /// (`grpc-timeout`) and the server's request timeout, less time to answer.
    fn budget<T>(&self, request: &Request<T>) -> Budget {
        let caller = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        Budget::new(Instant::now(), caller, self.request_timeout)
    }
}

/// Longest caller identity recorded, characters.
const MAX_ACTOR_CHARS: usize = 256;

/// The caller's identity: `anonymous` without the header; a header that is not printable
/// ASCII or is too long is refused rather than recorded as someone else.
fn actor<T>(request: &Request<T>) -> Result<String, Error> {
    let Some(value) = request.metadata().get(ACTOR_HEADER) else {
        return Ok("anonymous".to_owned());
    };
    let value = value
        .to_str()
        .map_err(|_| Error::InvalidArgument(format!("{ACTOR_HEADER} is not printable ASCII")))?;
    match value.trim() {
        "" => Ok("anonymous".to_owned()),
        actor if actor.len() > MAX_ACTOR_CHARS => Err(Error::InvalidArgument(format!(
            "{ACTOR_HEADER} has {} characters, at most {MAX_ACTOR_CHARS}",
            actor.len()
        ))),
        actor => Ok(actor.to_owned()),
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ModelRegistryService for Api {
    async fn resolve_model(
        &self,
        request: Request<pb::ResolveModelRequest>,
    ) -> Result<Response<pb::ResolveModelResponse>, Status> {
        let budget = self.budget(&request);
        let uri = convert::uri(&request.into_inner().uri)?;
        let resolution = within(budget, self.resolver.resolve(&uri)).await?;
        Ok(Response::new(resolution.into()))
    }

    async fn fetch_model(
        &self,
        request: Request<pb::FetchModelRequest>,
    ) -> Result<Response<Streamed<pb::FetchModelResponse>>, Status> {
        let budget = self.budget(&request);
        let r = FetchRequest::try_from(request.into_inner())?;
        // Leave room for the message's own fields under the size limit.
        let chunk = r
            .chunk
            .min(self.max_message_bytes.saturating_sub(1024))
            .max(1);
        let fetch = within(budget, self.resolver.fetch(&r.uri)).await?;
        Ok(Response::new(
            streams::artifact(fetch, r.offset, chunk).await?,
        ))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let budget = self.budget(&request);
        let r = PageRequest::try_from(request.into_inner())?;
        let listing = self.resolver.list_models(&r.name, r.size, &r.token);
        Ok(Response::new(within(budget, listing).await?.into()))
    }

    async fn list_model_versions(
        &self,
        request: Request<pb::ListModelVersionsRequest>,
    ) -> Result<Response<pb::ListModelVersionsResponse>, Status> {
        let budget = self.budget(&request);
        let r = PageRequest::try_from(request.into_inner())?;
        let listing = self.resolver.list_versions(&r.name, r.size, &r.token);
        Ok(Response::new(within(budget, listing).await?.into()))
    }

    async fn set_alias(
        &self,
        request: Request<pb::SetAliasRequest>,
    ) -> Result<Response<pb::SetAliasResponse>, Status> {
        let (actor, budget) = (actor(&request)?, self.budget(&request));
        let r = request.into_inner();
        let expected = expected_version(r.expected_current_version)?;
        let change =
            (self.aliases).set_alias(&actor, &r.name, &r.alias, r.version, &r.reason, expected);
        let entry = within(budget, change).await?;
        Ok(Response::new(pb::SetAliasResponse {
            entry: Some((&entry).into()),
        }))
    }

    async fn delete_alias(
        &self,
        request: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        let (actor, budget) = (actor(&request)?, self.budget(&request));
        let r = request.into_inner();
        let change = self
            .aliases
            .delete_alias(&actor, &r.name, &r.alias, &r.reason);
        let entry = within(budget, change).await?;
        Ok(Response::new(pb::DeleteAliasResponse {
            entry: Some((&entry).into()),
        }))
    }

    async fn list_audit_log(
        &self,
        request: Request<pb::ListAuditLogRequest>,
    ) -> Result<Response<pb::ListAuditLogResponse>, Status> {
        let query = AuditQuery::try_from(request.into_inner())?;
        let entries = self.aliases.audit_log(&query.filter).await?;
        Ok(Response::new(audit_page(entries, query.limit)))
    }

    async fn watch_aliases(
        &self,
        request: Request<pb::WatchAliasesRequest>,
    ) -> Result<Response<Streamed<pb::WatchAliasesResponse>>, Status> {
        let Watched(models) = Watched::try_from(request.into_inner())?;
        let watch = self.aliases.watch(&models).await?;
        let stream = streams::aliases(watch, models, self.shutdown.clone());
        Ok(Response::new(stream))
    }
}
