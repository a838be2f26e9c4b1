//! The caller's deadline (`grpc-timeout`): a call that outlives it ends with
//! DEADLINE_EXCEEDED. tonic's own timeout answers CANCELLED for both the caller's deadline
//! and the server's request timeout; the middleware applies the caller's deadline first, so
//! CANCELLED is left to the server's timeout, as docs/contracts.md says.

use std::time::Duration;

/// The `grpc-timeout` of `headers`, if it is valid.
pub fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    parse_grpc_timeout(headers.get("grpc-timeout")?.to_str().ok()?)
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3_600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", value.parse().unwrap());
        client_timeout(&headers)
    }

    #[test]
    fn grpc_timeout_values_parse_by_unit_and_bad_ones_are_ignored() {
        assert_eq!(parse("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("3H"), Some(Duration::from_secs(10_800)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in [
            "",
            "m",
            "123456789m",
            "1x",
            "-1m",
            "1.5S",
            "🦀",
            "1🦀",
            "S",
            "5",
            "5s",
            "é",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
