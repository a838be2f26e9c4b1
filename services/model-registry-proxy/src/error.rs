//! The proxy's error, and its one mapping to a gRPC status.

use stockcast_bus::BusError;

use crate::audit::AuditError;
use crate::cache::CacheError;
use crate::registry::RegistryError;

/// What can go wrong in the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The state refuses the request (a failed compare-and-set, an unusable contract).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The artifact cache failed, or an artifact does not match its `sha256` tag.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The audit database failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The event bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A watcher fell behind the changes.
    #[error("{0}")]
    Aborted(String),
}

impl Error {
    /// The gRPC code of this error.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Aborted(_) => Code::Aborted,
            Error::Registry(e) | Error::Cache(CacheError::Registry(e)) => match e {
                RegistryError::NotFound(_) => Code::NotFound,
                RegistryError::InvalidArgument(_) => Code::InvalidArgument,
                RegistryError::AlreadyExists(_) => Code::AlreadyExists,
                RegistryError::FailedPrecondition(_) => Code::FailedPrecondition,
                RegistryError::PermissionDenied(_) => Code::PermissionDenied,
                RegistryError::Unauthenticated(_) => Code::Unauthenticated,
                RegistryError::ResourceExhausted(_) => Code::ResourceExhausted,
                RegistryError::Unavailable(_) => Code::Unavailable,
                RegistryError::DeadlineExceeded(_) => Code::DeadlineExceeded,
                RegistryError::Unimplemented(_) => Code::Unimplemented,
                RegistryError::Internal(_) => Code::Internal,
            },
            Error::Cache(CacheError::ChecksumMismatch { .. }) => Code::DataLoss,
            Error::Cache(CacheError::Disk { .. }) => Code::Internal,
            Error::Audit(AuditError::Unavailable(_)) | Error::Bus(_) => Code::Unavailable,
            Error::Audit(_) => Code::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    /// Server faults are logged (`stockcast_runtime::grpc::error_status`); client errors are
    /// not.
    fn from(error: Error) -> Self {
        stockcast_runtime::grpc::error_status(error.code(), &error)
    }
}
