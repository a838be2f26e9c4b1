//! A service error as a gRPC status, the same way in every service.

/// Whether a status code is the server's fault (logged) rather than the client's.
pub fn is_server_fault(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Internal | tonic::Code::Unavailable | tonic::Code::DataLoss
    )
}

/// The status of `error` with `code` and the error's message. Server faults (INTERNAL,
/// UNAVAILABLE, DATA_LOSS) are logged; client errors are not. A service's
/// `From<Error> for Status` calls this with its `Error::code()`.
pub fn error_status(code: tonic::Code, error: &dyn std::fmt::Display) -> tonic::Status {
    if is_server_fault(code) {
        tracing::error!(%error, "request failed");
    }
    tonic::Status::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_keeps_code_and_message_and_only_server_faults_count_as_such() {
        let status = error_status(tonic::Code::InvalidArgument, &"symbols[0]: is empty");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "symbols[0]: is empty");
        assert!(!is_server_fault(tonic::Code::NotFound));
        assert!(is_server_fault(tonic::Code::Unavailable));
        assert!(is_server_fault(tonic::Code::DataLoss));
    }
}
