//! Conversions between the generated types and the domain's: requests into checked values
//! (`TryFrom`, INVALID_ARGUMENT naming the field), domain answers into messages (`From`).

use std::collections::BTreeSet;

use stockcast_proto::stockcast::registry::v1 as pb;
use stockcast_proto::stockcast::types::v1 as types;
use stockcast_runtime::echo::truncate_for_message;

use crate::aliases::{Watch, change_origin, event_kind, timestamp};
use crate::audit::{AuditEntry, AuditFilter};
use crate::error::Error;
use crate::registry::{ArtifactFormat, ModelInfo, Page};
use crate::resolver::{Resolution, VersionView};
use crate::uri::{ModelUri, validate_name};

const DEFAULT_PAGE: i32 = 100;
const MAX_PAGE: i32 = 1_000;
const DEFAULT_CHUNK: i32 = 1024 * 1024;
const MIN_CHUNK: i32 = 1024;
const MAX_CHUNK: i32 = 4 * 1024 * 1024;

/// A page size: 0 means the default.
fn page_size(requested: i32) -> Result<usize, Error> {
    match requested {
        0 => Ok(DEFAULT_PAGE as usize),
        n if !(1..=MAX_PAGE).contains(&n) => Err(Error::InvalidArgument(format!(
            "page_size {n} must be within 1..={MAX_PAGE} (0 means {DEFAULT_PAGE})"
        ))),
        n => Ok(n as usize),
    }
}

pub(super) fn uri(raw: &str) -> Result<ModelUri, Error> {
    // The parser's messages begin with `uri "…"`: they name the field already.
    ModelUri::parse(raw).map_err(Error::InvalidArgument)
}

fn name(field: &str, name: &str) -> Result<(), Error> {
    validate_name(name).map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))
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

/// An audit-log filter: `None` when empty. Recorded names, aliases and actors never hold
/// control characters (and PostgreSQL cannot compare NUL): a filter with one is refused.
fn filter(field: &str, value: String) -> Result<Option<String>, Error> {
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{field} {:?} contains a control character",
            truncate_for_message(&value)
        )));
    }
    Ok((!value.is_empty()).then_some(value))
}

/// Most models one watch may name.
const MAX_WATCHED: usize = 1_000;

/// A checked `FetchModel` request.
#[derive(Debug)]
pub(super) struct FetchRequest {
    pub(super) uri: ModelUri,
    /// Bytes per chunk, before the server's message limit.
    pub(super) chunk: usize,
    /// Where to start; checked against the artifact's size once it is known.
    pub(super) offset: i64,
}

impl TryFrom<pb::FetchModelRequest> for FetchRequest {
    type Error = Error;

    fn try_from(r: pb::FetchModelRequest) -> Result<Self, Error> {
        let chunk = match r.chunk_size_bytes {
            0 => DEFAULT_CHUNK,
            n if (MIN_CHUNK..=MAX_CHUNK).contains(&n) => n,
            n => {
                return Err(Error::InvalidArgument(format!(
                    "chunk_size_bytes {n} must be within {MIN_CHUNK}..={MAX_CHUNK} (0 means {DEFAULT_CHUNK})"
                )));
            }
        };
        Ok(Self {
            uri: uri(&r.uri)?,
            chunk: chunk as usize,
            offset: r.offset,
        })
    }
}

/// A checked page request: (name or prefix, size, token).
#[derive(Debug)]
pub(super) struct PageRequest {
    pub(super) name: String,
    pub(super) size: usize,
    pub(super) token: String,
}

impl TryFrom<pb::ListModelsRequest> for PageRequest {
    type Error = Error;

    fn try_from(r: pb::ListModelsRequest) -> Result<Self, Error> {
        // Longer than a name, or with a character no name has, it matches nothing; refused,
        // it also never reaches MLflow's filter parser.
        if !r.name_prefix.is_empty() {
            validate_name(&r.name_prefix)
                .map_err(|e| Error::InvalidArgument(format!("name_prefix: {e}")))?;
        }
        Ok(Self {
            size: page_size(r.page_size)?,
            name: r.name_prefix,
            token: r.page_token,
        })
    }
}

impl TryFrom<pb::ListModelVersionsRequest> for PageRequest {
    type Error = Error;

    fn try_from(r: pb::ListModelVersionsRequest) -> Result<Self, Error> {
        name("name", &r.name)?;
        Ok(Self {
            size: page_size(r.page_size)?,
            name: r.name,
            token: r.page_token,
        })
    }
}

/// The checked `ListAuditLog` request: its filter (one more entry than a page, to tell
/// whether there is a next) and its page size.
#[derive(Debug)]
pub(super) struct AuditQuery {
    pub(super) filter: AuditFilter,
    pub(super) limit: usize,
}

impl TryFrom<pb::ListAuditLogRequest> for AuditQuery {
    type Error = Error;

    fn try_from(r: pb::ListAuditLogRequest) -> Result<Self, Error> {
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
            model: filter("model_name", r.model_name)?,
            alias: filter("alias", r.alias)?,
            actor: filter("actor", r.actor)?,
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
        Ok(Self { filter, limit })
    }
}

/// The checked models of a `WatchAliases` request (every model when empty).
pub(super) struct Watched(pub(super) BTreeSet<String>);

impl TryFrom<pb::WatchAliasesRequest> for Watched {
    type Error = Error;

    fn try_from(r: pb::WatchAliasesRequest) -> Result<Self, Error> {
        if r.model_names.len() > MAX_WATCHED {
            return Err(Error::InvalidArgument(format!(
                "model_names has {} names, at most {MAX_WATCHED}",
                r.model_names.len()
            )));
        }
        for (i, model) in r.model_names.iter().enumerate() {
            name(&format!("model_names[{i}]"), model)?;
        }
        Ok(Self(r.model_names.into_iter().collect()))
    }
}

/// Checks `expected_current_version` of a `SetAlias` request.
pub(super) fn expected_version(expected: Option<i64>) -> Result<Option<i64>, Error> {
    match expected {
        Some(v) if v < 0 => Err(Error::InvalidArgument(format!(
            "expected_current_version {v} must be >= 0 (0: the alias must not exist)"
        ))),
        other => Ok(other),
    }
}

fn format_to_proto(format: Option<ArtifactFormat>) -> pb::ArtifactFormat {
    match format {
        Some(ArtifactFormat::OnnxFile) => pb::ArtifactFormat::OnnxFile,
        Some(ArtifactFormat::MlflowOnnx) => pb::ArtifactFormat::MlflowOnnx,
        None => pb::ArtifactFormat::Unspecified,
    }
}

impl From<&VersionView> for pb::ModelVersion {
    fn from(view: &VersionView) -> Self {
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
}

impl From<Resolution> for pb::ResolveModelResponse {
    fn from(resolution: Resolution) -> Self {
        pb::ResolveModelResponse {
            version: Some((&resolution.view).into()),
            served_from_cache: resolution.cached_at_ms.is_some(),
            cached_at: resolution.cached_at_ms.map(timestamp),
        }
    }
}

impl From<ModelInfo> for pb::RegisteredModel {
    fn from(model: ModelInfo) -> Self {
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
}

impl From<Page<ModelInfo>> for pb::ListModelsResponse {
    fn from(page: Page<ModelInfo>) -> Self {
        pb::ListModelsResponse {
            models: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_token,
        }
    }
}

impl From<Page<VersionView>> for pb::ListModelVersionsResponse {
    fn from(page: Page<VersionView>) -> Self {
        pb::ListModelVersionsResponse {
            versions: page.items.iter().map(Into::into).collect(),
            next_page_token: page.next_token,
        }
    }
}

impl From<&AuditEntry> for pb::AuditEntry {
    fn from(entry: &AuditEntry) -> Self {
        let c = &entry.change;
        pb::AuditEntry {
            id: entry.id,
            occurred_at: Some(timestamp(c.occurred_at_ms)),
            actor: c.actor.clone(),
            kind: event_kind(c.kind) as i32,
            model_name: c.model.clone(),
            alias: c.alias.clone(),
            from_version: c.from_version,
            to_version: c.to_version,
            reason: c.reason.clone(),
            origin: change_origin(c.origin) as i32,
        }
    }
}

/// A page of audit entries: `entries` holds up to one more than `limit`, which says there
/// is a next page.
pub(super) fn audit_page(mut entries: Vec<AuditEntry>, limit: usize) -> pb::ListAuditLogResponse {
    let more = entries.len() > limit;
    entries.truncate(limit);
    pb::ListAuditLogResponse {
        next_page_token: match (more, entries.last()) {
            (true, Some(last)) => last.id.to_string(),
            _ => String::new(),
        },
        entries: entries.iter().map(Into::into).collect(),
    }
}

impl From<&Watch> for pb::AliasSnapshot {
    fn from(watch: &Watch) -> Self {
        pb::AliasSnapshot {
            aliases: watch
                .snapshot
                .iter()
                .map(|(model_name, alias, version)| pb::ModelAlias {
                    model_name: model_name.clone(),
                    alias: alias.clone(),
                    version: *version,
                })
                .collect(),
            as_of: Some(timestamp(watch.as_of_ms)),
        }
    }
}
