//! The ingestion service's error, and its one mapping to a gRPC status.

use stockcast_bus::BusError;
use stockcast_market::sources::SourceError;

use crate::store::StoreError;

/// What can go wrong in ingestion.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A request value is outside the range the service accepts; the message names the field.
    #[error("{0}")]
    OutOfRange(String),
    /// Something asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A market-data source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A fault of the service itself.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The gRPC code of this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::OutOfRange(_) => tonic::Code::OutOfRange,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::Store(StoreError::AlreadyExists(_)) => tonic::Code::AlreadyExists,
            Error::Store(StoreError::Unavailable(_)) | Error::Bus(_) => tonic::Code::Unavailable,
            Error::Source(SourceError::Retryable { .. }) => tonic::Code::Unavailable,
            Error::Source(SourceError::Fatal(_)) => tonic::Code::FailedPrecondition,
            Error::Store(StoreError::Corrupt(_)) => tonic::Code::DataLoss,
            Error::Store(_) | Error::Internal(_) => tonic::Code::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        stockcast_runtime::grpc::error_status(error.code(), &error)
    }
}
