//! Text that leaves the source: logged URLs with the API key redacted, error causes without
//! reqwest's text (which names the URL), and the start of an HTTP error body.

use reqwest::Url;

use super::REDACTED;

/// `url` with the value of `apikey` replaced, for logs.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case("apikey") {
                REDACTED.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    shown.query_pairs_mut().clear().extend_pairs(pairs);
    shown.to_string()
}

/// A reqwest error's causes, without reqwest's own text (which names the URL, and so the
/// API key).
pub(super) fn describe(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut current = std::error::Error::source(error);
    while let Some(cause) = current {
        parts.push(cause.to_string());
        current = cause.source();
    }
    if parts.is_empty() {
        kind_of(error).to_owned()
    } else {
        parts.join(": ")
    }
}

fn kind_of(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection error"
    } else if error.is_body() {
        "body error"
    } else if error.is_decode() {
        "decode error"
    } else if error.is_builder() {
        "builder error"
    } else if error.is_request() {
        "request error"
    } else {
        "http error"
    }
}

/// The start of a body for an HTTP error message.
pub(super) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn redaction_hides_only_the_key() {
        let url = Url::parse(
            "http://127.0.0.1:1/query?function=TIME_SERIES_DAILY&symbol=IBM&apikey=S3CR3T",
        )
        .unwrap();
        let shown = redact(&url);
        assert!(!shown.contains("S3CR3T"), "{shown}");
        assert!(shown.contains("symbol=IBM"), "{shown}");
        assert!(shown.contains("apikey=%5Bredacted%5D"), "{shown}");
    }
}
