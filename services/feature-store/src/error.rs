//! The feature store's error, and its one mapping to a gRPC status.

use stockcast_bus::BusError;

use crate::store::StoreError;
use crate::stream::FailPoint;

/// What can go wrong in the feature store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the field.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field, e.g. `symbols[2]`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Something asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A setting is unusable; names the config key.
    #[error("config key `{key}`: {reason}")]
    Config {
        /// The config key, e.g. `stream.retry_ms`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event bus failed in a way retrying did not fix.
    #[error("event bus: {0}")]
    Bus(#[from] BusError),
    /// A deliberate crash point of the stream processor fired (tests).
    #[error("stopped at fail point {0:?}")]
    FailPoint(FailPoint),
}

impl Error {
    /// A malformed request field.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument { .. } => tonic::Code::InvalidArgument,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::Store(StoreError::Unavailable { .. }) | Error::Bus(_) => {
                tonic::Code::Unavailable
            }
            Error::Store(_) | Error::Config { .. } | Error::FailPoint(_) => tonic::Code::Internal,
        }
    }
}

/// Server faults are logged, client errors are not.
impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        stockcast_runtime::grpc::error_status(error.code(), &error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_name_the_field_and_store_outages_are_unavailable() {
        let status = tonic::Status::from(Error::invalid("symbols[2]", "is empty"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "symbols[2]: is empty");
        let down = Error::Store(StoreError::Unavailable {
            backend: "redis",
            reason: "refused".into(),
        });
        assert_eq!(down.code(), tonic::Code::Unavailable);
        let status = tonic::Status::from(down);
        assert_eq!(status.message(), "redis unavailable: refused");
        let corrupt = Error::Store(StoreError::Corrupt("row".into()));
        assert_eq!(corrupt.code(), tonic::Code::Internal);
    }
}
