//! The gRPC adapter of `stockcast.registry.v1.ModelRegistryService`: convert, call the
//! domain, convert back. Errors become statuses in one place (`Error` → `Status`).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use stockcast_proto::stockcast::registry::v1 as pb;
use stockcast_proto::stockcast::registry::v1::model_registry_service_server::ModelRegistryService;
use stockcast_proto::stockcast::types::v1 as types;
use stockcast_runtime::echo::truncate_for_message;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::audit::{AuditEntry, AuditFilter, ChangeKind, Origin};
use crate::changes::{Event, timestamp, to_proto};
use stockcast_runtime::grpc::parse_grpc_timeout;

use crate::deadline::{Budget, within};
use crate::error::Error;
use crate::proxy::{Proxy, VersionView};
use crate::registry::{ArtifactFormat, ModelInfo};
use crate::uri::{ModelUri, validate_name};

/// Metadata key naming the caller until authentication supplies an identity.
pub const ACTOR_HEADER: &str = "x-stockcast-actor";

/// Implements the gRPC service over the domain.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) proxy: Arc<Proxy>,
    /// Largest message the server sends, bytes.
    pub(crate) max_message_bytes: usize,
    /// Ends watch streams when the server stops, so that draining does not wait for them.
    pub(crate) shutdown: stockcast_runtime::Shutdown,
    /// The server's limit on a call (`server.request_timeout_ms`).
    pub(crate) request_timeout: Duration,
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

const DEFAULT_PAGE: i32 = 100;
const MAX_PAGE: i32 = 1_000;
const DEFAULT_CHUNK: i32 = 1024 * 1024;
const MIN_CHUNK: i32 = 1024;
const MAX_CHUNK: i32 = 4 * 1024 * 1024;

fn page_size(requested: i32) -> Result<usize, Error> {
    match requested {
        0 => Ok(DEFAULT_PAGE as usize),
        n if !(1..=MAX_PAGE).contains(&n) => Err(Error::InvalidArgument(format!(
            "page_size {n} must be within 1..={MAX_PAGE} (0 means {DEFAULT_PAGE})"
        ))),
        n => Ok(n as usize),
    }
}

fn uri(raw: &str) -> Result<ModelUri, Error> {
    // The parser's messages begin with `uri "…"`: they name the field already.
    ModelUri::parse(raw).map_err(Error::InvalidArgument)
}

fn actor<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map_or_else(|| "anonymous".to_owned(), str::to_owned)
}

fn format_to_proto(format: Option<ArtifactFormat>) -> pb::ArtifactFormat {
    match format {
        Some(ArtifactFormat::OnnxFile) => pb::ArtifactFormat::OnnxFile,
        Some(ArtifactFormat::MlflowOnnx) => pb::ArtifactFormat::MlflowOnnx,
        None => pb::ArtifactFormat::Unspecified,
    }
}

/// The protobuf form of a version.
pub fn version_to_proto(view: &VersionView) -> pb::ModelVersion {
    let info = &view.info;
    pb::ModelVersion {
        model: Some(types::ModelRef {
            name: info.name.clone(),
            version: info.version,
        }),
        aliases: info.aliases.clone(),
        contract: view.contract.as_ref().map(|c| types::FeatureContract {
            feature_view: c.feature_view.clone(),
            feature_view_version: c.feature_view_version,
            feature_names: c.feature_names.clone(),
            target: c.target.clone(),
            horizon_bars: c.horizon_bars,
        }),
        sha256: view.sha256.clone(),
        size_bytes: view.size as i64,
        format: format_to_proto(view.format) as i32,
        source: info.source.clone(),
        run_id: info.run_id.clone(),
        tags: info.tags.clone().into_iter().collect(),
        description: info.description.clone(),
        stage: info.stage.clone(),
        created_at: Some(timestamp(info.created_at_ms)),
        updated_at: Some(timestamp(info.updated_at_ms)),
    }
}

fn model_to_proto(model: ModelInfo) -> pb::RegisteredModel {
    pb::RegisteredModel {
        name: model.name,
        description: model.description,
        aliases: model.aliases.into_iter().collect(),
        latest_version: model.latest_version,
        tags: model.tags.into_iter().collect(),
        created_at: Some(timestamp(model.created_at_ms)),
        updated_at: Some(timestamp(model.updated_at_ms)),
    }
}

fn entry_to_proto(entry: &AuditEntry) -> pb::AuditEntry {
    use stockcast_proto::stockcast::events::v1::{ChangeOrigin, ModelEventKind};
    let c = &entry.change;
    pb::AuditEntry {
        id: entry.id,
        occurred_at: Some(timestamp(c.occurred_at_ms)),
        actor: c.actor.clone(),
        kind: match c.kind {
            ChangeKind::AliasSet => ModelEventKind::AliasSet,
            ChangeKind::AliasDeleted => ModelEventKind::AliasDeleted,
        } as i32,
        model_name: c.model.clone(),
        alias: c.alias.clone(),
        from_version: c.from_version,
        to_version: c.to_version,
        reason: c.reason.clone(),
        origin: match c.origin {
            Origin::Api => ChangeOrigin::Api,
            Origin::Poll => ChangeOrigin::MlflowPoll,
            Origin::Webhook => ChangeOrigin::MlflowWebhook,
        } as i32,
    }
}

fn millis(ts: &prost_types::Timestamp, field: &str) -> Result<i64, Error> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(Error::InvalidArgument(format!(
            "{field}.nanos {} must be within 0..1e9",
            ts.nanos
        )));
    }
    ts.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(ts.nanos / 1_000_000)))
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{field}.seconds {} is out of range", ts.seconds))
        })
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ModelRegistryService for Api {
    async fn resolve_model(
        &self,
        request: Request<pb::ResolveModelRequest>,
    ) -> Result<Response<pb::ResolveModelResponse>, Status> {
        let budget = self.budget(&request);
        let uri = uri(&request.into_inner().uri)?;
        let resolution = within(budget, self.proxy.resolve(&uri)).await?;
        Ok(Response::new(pb::ResolveModelResponse {
            version: Some(version_to_proto(&resolution.view)),
            served_from_cache: resolution.cached_at_ms.is_some(),
            cached_at: resolution.cached_at_ms.map(timestamp),
        }))
    }

    async fn fetch_model(
        &self,
        request: Request<pb::FetchModelRequest>,
    ) -> Result<Response<Streamed<pb::FetchModelResponse>>, Status> {
        let budget = self.budget(&request);
        let request = request.into_inner();
        let uri = uri(&request.uri)?;
        let chunk = match request.chunk_size_bytes {
            0 => DEFAULT_CHUNK,
            n if (MIN_CHUNK..=MAX_CHUNK).contains(&n) => n,
            n => {
                return Err(Error::InvalidArgument(format!(
                    "chunk_size_bytes {n} must be within {MIN_CHUNK}..={MAX_CHUNK} (0 means {DEFAULT_CHUNK})"
                ))
                .into());
            }
        };
        // Leave room for the message's own fields under the size limit.
        let chunk = (chunk as usize)
            .min(self.max_message_bytes.saturating_sub(1024))
            .max(1);
        let fetch = within(budget, self.proxy.fetch(&uri)).await?;
        let total = fetch.artifact.size;
        if request.offset < 0 || request.offset as u64 > total {
            // Returning drops `fetch`, whose guard removes a temporary file.
            return Err(Error::InvalidArgument(format!(
                "offset {} must be within 0..={total} (the artifact's size)",
                request.offset
            ))
            .into());
        }
        let mut file = tokio::fs::File::open(&fetch.path)
            .await
            .map_err(|e| Error::Cache(crate::cache::disk(&fetch.path, e)))?;
        // Unix keeps the open file readable: a temporary file can go now.
        drop(fetch.temporary);
        let header = pb::FetchModelHeader {
            version: Some(version_to_proto(&fetch.resolution.view)),
            sha256: fetch.artifact.sha256.clone(),
            total_size_bytes: total as i64,
            served_from_cache: fetch.resolution.cached_at_ms.is_some(),
        };
        let offset = request.offset as u64;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            use pb::fetch_model_response::Payload;
            let send = |payload| pb::FetchModelResponse {
                payload: Some(payload),
            };
            if tx.send(Ok(send(Payload::Header(header)))).await.is_err() {
                return;
            }
            if let Err(e) = file.seek(std::io::SeekFrom::Start(offset)).await {
                let _ = tx
                    .send(Err(Status::internal(format!("seeking the artifact: {e}"))))
                    .await;
                return;
            }
            let mut position = offset;
            while position < total {
                let want = chunk.min((total - position) as usize);
                let mut data = vec![0u8; want];
                if let Err(e) = file.read_exact(&mut data).await {
                    let _ = tx
                        .send(Err(Status::internal(format!("reading the artifact: {e}"))))
                        .await;
                    return;
                }
                let message = send(Payload::Chunk(pb::ModelChunk {
                    offset: position as i64,
                    data,
                }));
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
                crate::metrics::fetched(want as u64);
                position += want as u64;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let budget = self.budget(&request);
        let request = request.into_inner();
        let size = page_size(request.page_size)?;
        let page = within(
            budget,
            self.proxy
                .list_models(&request.name_prefix, size, &request.page_token),
        )
        .await?;
        Ok(Response::new(pb::ListModelsResponse {
            models: page.items.into_iter().map(model_to_proto).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn list_model_versions(
        &self,
        request: Request<pb::ListModelVersionsRequest>,
    ) -> Result<Response<pb::ListModelVersionsResponse>, Status> {
        let budget = self.budget(&request);
        let request = request.into_inner();
        validate_name(&request.name).map_err(|e| Error::InvalidArgument(format!("name: {e}")))?;
        let size = page_size(request.page_size)?;
        let page = within(
            budget,
            self.proxy
                .list_versions(&request.name, size, &request.page_token),
        )
        .await?;
        Ok(Response::new(pb::ListModelVersionsResponse {
            versions: page.items.iter().map(version_to_proto).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn set_alias(
        &self,
        request: Request<pb::SetAliasRequest>,
    ) -> Result<Response<pb::SetAliasResponse>, Status> {
        let actor = actor(&request);
        let budget = self.budget(&request);
        let r = request.into_inner();
        if r.expected_current_version.is_some_and(|v| v < 0) {
            return Err(Error::InvalidArgument(format!(
                "expected_current_version {} must be >= 0 (0: the alias must not exist)",
                r.expected_current_version.unwrap_or_default()
            ))
            .into());
        }
        let entry = within(
            budget,
            self.proxy.set_alias(
                &actor,
                &r.name,
                &r.alias,
                r.version,
                &r.reason,
                r.expected_current_version,
            ),
        )
        .await?;
        Ok(Response::new(pb::SetAliasResponse {
            entry: Some(entry_to_proto(&entry)),
        }))
    }

    async fn delete_alias(
        &self,
        request: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        let actor = actor(&request);
        let budget = self.budget(&request);
        let r = request.into_inner();
        let entry = within(
            budget,
            self.proxy
                .delete_alias(&actor, &r.name, &r.alias, &r.reason),
        )
        .await?;
        Ok(Response::new(pb::DeleteAliasResponse {
            entry: Some(entry_to_proto(&entry)),
        }))
    }

    async fn list_audit_log(
        &self,
        request: Request<pb::ListAuditLogRequest>,
    ) -> Result<Response<pb::ListAuditLogResponse>, Status> {
        let r = request.into_inner();
        let limit = page_size(r.page_size)?;
        let before_id = match r.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<i64>().map_err(|_| {
                Error::InvalidArgument(format!(
                    "page_token {:?} is not a token this service issued",
                    truncate_for_message(token)
                ))
            })?),
        };
        let range = r.range.unwrap_or_default();
        let filter = AuditFilter {
            model: non_empty(r.model_name),
            alias: non_empty(r.alias),
            actor: non_empty(r.actor),
            start_ms: range
                .start
                .as_ref()
                .map(|t| millis(t, "range.start"))
                .transpose()?,
            end_ms: range
                .end
                .as_ref()
                .map(|t| millis(t, "range.end"))
                .transpose()?,
            before_id,
            limit: limit as i64 + 1,
        };
        let mut entries = self.proxy.audit_log(&filter).await?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        Ok(Response::new(pb::ListAuditLogResponse {
            next_page_token: match (more, entries.last()) {
                (true, Some(last)) => last.id.to_string(),
                _ => String::new(),
            },
            entries: entries.iter().map(entry_to_proto).collect(),
        }))
    }

    async fn watch_aliases(
        &self,
        request: Request<pb::WatchAliasesRequest>,
    ) -> Result<Response<Streamed<pb::WatchAliasesResponse>>, Status> {
        let models: BTreeSet<String> = request.into_inner().model_names.into_iter().collect();
        for (i, name) in models.iter().enumerate() {
            validate_name(name)
                .map_err(|e| Error::InvalidArgument(format!("model_names[{i}]: {e}")))?;
        }
        let mut watch = self.proxy.watch(&models).await?;
        let snapshot = pb::AliasSnapshot {
            aliases: watch
                .snapshot
                .into_iter()
                .map(|(model_name, alias, version)| pb::ModelAlias {
                    model_name,
                    alias,
                    version,
                })
                .collect(),
            as_of: Some(timestamp(watch.as_of_ms)),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            use pb::watch_aliases_response::Payload;
            let send = |payload| pb::WatchAliasesResponse {
                payload: Some(payload),
            };
            if tx
                .send(Ok(send(Payload::Snapshot(snapshot))))
                .await
                .is_err()
            {
                return;
            }
            loop {
                let event: Event = tokio::select! {
                    () = tx.closed() => return,
                    () = shutdown.wait() => {
                        let _ = tx.send(Err(Status::unavailable("the server is stopping; watch again"))).await;
                        return;
                    }
                    received = watch.changes.recv() => match received {
                        Ok(event) => event,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let status: Status = Error::Aborted(format!(
                                "the watch fell {n} changes behind; watch again for a fresh snapshot"
                            )).into();
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    },
                };
                if !models.is_empty() && !models.contains(&event.entry.change.model) {
                    continue;
                }
                if tx
                    .send(Ok(send(Payload::Event(to_proto(&event)))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
