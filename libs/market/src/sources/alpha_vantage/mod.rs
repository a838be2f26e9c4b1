//! Alpha Vantage REST source: `TIME_SERIES_DAILY` and `TIME_SERIES_INTRADAY`.
//!
//! Daily series are one request per symbol. Intraday history is one request per calendar
//! month (`month=YYYY-MM`, months in US/Eastern, the zone Alpha Vantage keeps intraday data
//! in), so a backfill resumes month by month. Every request passes one [`RequestBudget`]
//! shared by all clones of an [`AlphaVantage`], and transient failures are retried inside
//! [`fetch`](Source::fetch) with jittered exponential backoff before they are returned as
//! [`SourceError::Retryable`].
//!
//! The API key is sent only in the query string of the request itself: logged URLs carry
//! `apikey=[redacted]`, error messages are built without URLs, and any text that still holds
//! the key (a server message echoing it) has it replaced before it leaves this module.

mod budget;
mod months;
mod parse;
mod settings;
mod text;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

pub use budget::{DailyBudgetSpent, RequestBudget, until_next_utc_midnight};
pub use months::months_between;
pub use settings::AlphaVantageSettings;
pub use text::redact;

use crate::sources::{BackfillSpec, Chunk, ChunkPosition, Source, SourceError, SourceParams};
use months::parse_month;
use parse::{Expect, Failure, av_interval, parse_body};
use settings::MAX_BACKOFF;
use text::{describe, snippet};

/// `outputsize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputSize {
    /// The latest 100 bars.
    #[default]
    Compact,
    /// The full history (daily: 20+ years; intraday: the requested month).
    Full,
}

impl OutputSize {
    /// The value of the `outputsize` query parameter.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutputSize::Compact => "compact",
            OutputSize::Full => "full",
        }
    }
}

/// Parameters of an Alpha Vantage backfill.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlphaVantageParams {
    /// `outputsize`. For intraday, `full` plans one request per month of the range and
    /// `compact` one request per symbol for its latest 100 bars.
    pub output_size: OutputSize,
    /// Include pre- and post-market intraday bars (04:00–09:30 and 16:00–20:00 US/Eastern).
    pub extended_hours: bool,
}

/// Largest response body read; a full month of 1-minute bars is about 4 MiB.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How a secret is shown in logged URLs and messages.
const REDACTED: &str = stockcast_runtime::secret::REDACTED;

/// The Alpha Vantage source. Clones share one HTTP client and one request budget: create
/// one per process.
#[derive(Debug, Clone)]
pub struct AlphaVantage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: AlphaVantageSettings,
    base_url: Url,
    client: reqwest::Client,
    budget: Arc<RequestBudget>,
}

/// How one attempt failed.
enum AttemptError {
    /// Asking again will not help.
    Fatal(String),
    /// Worth another attempt, after at least `hint` if the server named one.
    Retryable {
        reason: String,
        hint: Option<Duration>,
        /// Alpha Vantage's per-minute limit: a final retry waits a whole window.
        rate_limited: bool,
    },
    /// Alpha Vantage says the calls of the day are spent.
    DailyLimit(String),
}

impl AlphaVantage {
    /// A source with its own budget of `settings.calls_per_minute` and
    /// `settings.calls_per_day`. Fails if `settings` do not
    /// [`validate`](AlphaVantageSettings::validate) or the HTTP client cannot be built.
    pub fn new(settings: AlphaVantageSettings) -> Result<Self, SourceError> {
        let budget = RequestBudget::new(settings.calls_per_minute, settings.calls_per_day);
        Self::with_budget(settings, Arc::new(budget))
    }

    /// A source drawing on `budget`, which other sources may share.
    pub fn with_budget(
        settings: AlphaVantageSettings,
        budget: Arc<RequestBudget>,
    ) -> Result<Self, SourceError> {
        settings
            .validate("alpha_vantage")
            .map_err(|e| SourceError::Fatal(e.to_string()))?;
        let base_url = Url::parse(&settings.base_url)
            .map_err(|e| SourceError::Fatal(format!("alpha_vantage.base_url: {e}")))?;
        let timeout = Duration::from_millis(settings.request_timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // A redirect would carry the API key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stockcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                SourceError::Fatal(format!("cannot build the HTTP client: {}", describe(&e)))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                base_url,
                client,
                budget,
            }),
        })
    }

    /// Requests left `(in the current minute, today)`, for status reports.
    pub fn budget_status(&self) -> (u32, u32) {
        self.inner.budget.status()
    }

    /// The request URL of a chunk, API key included.
    fn url(&self, spec: &BackfillSpec, chunk: &Chunk) -> Result<(Url, Expect), SourceError> {
        let params = params_of(spec)?;
        let symbol = chunk.symbol.as_deref().ok_or_else(|| {
            SourceError::Fatal(format!("alpha vantage chunk {} has no symbol", chunk.key))
        })?;
        let month = match &chunk.position {
            ChunkPosition::Whole => None,
            ChunkPosition::Month(month) if spec.interval.is_intraday() => {
                parse_month(month).map_err(|reason| {
                    SourceError::Fatal(format!("alpha vantage chunk {}: {reason}", chunk.key))
                })?;
                Some(month.as_str())
            }
            other => {
                return Err(SourceError::Fatal(format!(
                    "alpha vantage chunk {} has position {other:?}, not a whole {} series",
                    chunk.key,
                    if spec.interval.is_intraday() {
                        "or month of an intraday"
                    } else {
                        "daily"
                    }
                )));
            }
        };
        let mut url = self.inner.base_url.clone();
        {
            let mut query = url.query_pairs_mut();
            match av_interval(spec.interval) {
                None => {
                    query
                        .append_pair("function", "TIME_SERIES_DAILY")
                        .append_pair("symbol", symbol)
                        .append_pair("outputsize", params.output_size.as_str());
                }
                Some(interval) => {
                    // A month is always asked in full: compact would be its last 100 bars.
                    let size = if month.is_some() {
                        OutputSize::Full
                    } else {
                        params.output_size
                    };
                    query
                        .append_pair("function", "TIME_SERIES_INTRADAY")
                        .append_pair("symbol", symbol)
                        .append_pair("interval", interval)
                        .append_pair("outputsize", size.as_str())
                        .append_pair(
                            "extended_hours",
                            if params.extended_hours {
                                "true"
                            } else {
                                "false"
                            },
                        );
                    if let Some(month) = month {
                        query.append_pair("month", month);
                    }
                }
            }
            query
                .append_pair("datatype", "json")
                .append_pair("apikey", self.inner.settings.api_key.expose());
        }
        let expect = Expect {
            symbol: symbol.to_owned(),
            interval: spec.interval,
            start: spec.start,
            end: spec.end,
        };
        Ok((url, expect))
    }

    /// One request and its parsed response.
    async fn attempt(
        &self,
        url: &Url,
        expect: &Expect,
    ) -> Result<Vec<crate::sources::SourceRecord>, AttemptError> {
        let transport = |e: reqwest::Error| {
            let what = if e.is_timeout() {
                format!(
                    "request timed out after {} ms",
                    self.inner.settings.request_timeout_ms
                )
            } else if e.is_connect() {
                format!("cannot connect: {}", describe(&e))
            } else if e.is_body() || e.is_decode() {
                format!("response body cut short: {}", describe(&e))
            } else {
                format!("request failed: {}", describe(&e))
            };
            AttemptError::Retryable {
                reason: what,
                hint: None,
                rate_limited: false,
            }
        };
        let mut response = self
            .inner
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read the body in pieces: a cut connection is a transport failure worth retrying,
        // unlike a complete body that is not JSON.
        let mut body = Vec::new();
        while let Some(piece) = response.chunk().await.map_err(transport)? {
            if body.len() + piece.len() > MAX_BODY_BYTES {
                return Err(AttemptError::Fatal(format!(
                    "response body is larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&piece);
        }

        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(AttemptError::Retryable {
                reason: format!("HTTP {status}: {}", snippet(&body)),
                hint: retry_after,
                rate_limited: status == StatusCode::TOO_MANY_REQUESTS,
            });
        }
        if !status.is_success() {
            return Err(AttemptError::Fatal(format!(
                "HTTP {status}: {}",
                snippet(&body)
            )));
        }

        // A full month of 1-minute bars takes milliseconds to parse: off the async threads.
        let expect = expect.clone();
        let parsed = tokio::task::spawn_blocking(move || parse_body(&body, &expect))
            .await
            .map_err(|e| AttemptError::Fatal(format!("response parser failed: {e}")))?;
        parsed.map_err(|failure| match failure {
            Failure::Fatal(reason) => AttemptError::Fatal(reason),
            Failure::RateLimited {
                message,
                daily: true,
            } => AttemptError::DailyLimit(message),
            Failure::RateLimited {
                message,
                daily: false,
            } => AttemptError::Retryable {
                reason: format!("rate limited: {message}"),
                hint: None,
                rate_limited: true,
            },
        })
    }

    /// Delay before retry number `retry` (0-based): `retry_base_ms · 2^retry`, capped, then
    /// jittered down to half so that parallel jobs spread out (a base of 0 retries at once).
    fn backoff(&self, retry: u32) -> Duration {
        let base = Duration::from_millis(self.inner.settings.retry_base_ms);
        stockcast_runtime::Backoff::new(base, MAX_BACKOFF.max(base))
            .map(|b| b.delay(retry))
            .unwrap_or(Duration::ZERO)
    }

    /// `text` with the API key replaced, for anything that leaves this module.
    fn scrub(&self, text: String) -> String {
        let key = self.inner.settings.api_key.expose();
        // A key this short would blank ordinary words; real keys are 16 characters.
        if key.len() >= 4 && text.contains(key) {
            text.replace(key, REDACTED)
        } else {
            text
        }
    }

    fn require_key(&self) -> Result<(), SourceError> {
        if self.inner.settings.api_key.is_empty() {
            return Err(SourceError::Fatal(
                "no Alpha Vantage API key is configured (config key `alpha_vantage.api_key`)"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Source for AlphaVantage {
    async fn plan(&self, spec: &BackfillSpec) -> Result<Vec<Chunk>, SourceError> {
        let params = params_of(spec)?;
        self.require_key()?;
        if spec.symbols.is_empty() {
            return Err(SourceError::Fatal(
                "symbols is empty: an Alpha Vantage backfill needs at least one symbol".to_owned(),
            ));
        }
        if let Some(bad) = spec
            .symbols
            .iter()
            .find(|s| s.is_empty() || s.trim() != s.as_str() || s.contains('/'))
        {
            return Err(SourceError::Fatal(format!(
                "symbol {bad:?} cannot be asked of Alpha Vantage"
            )));
        }
        let whole = |symbol: &String, what: &str| Chunk {
            key: format!("{symbol}/{what}"),
            symbol: Some(symbol.clone()),
            position: ChunkPosition::Whole,
        };
        if !spec.interval.is_intraday() {
            return Ok(spec.symbols.iter().map(|s| whole(s, "daily")).collect());
        }
        if params.output_size == OutputSize::Compact {
            return Ok(spec.symbols.iter().map(|s| whole(s, "latest")).collect());
        }
        let months = months_between(spec.start, spec.end);
        Ok(spec
            .symbols
            .iter()
            .flat_map(|symbol| {
                months.iter().map(move |month| Chunk {
                    key: format!("{symbol}/{month}"),
                    symbol: Some(symbol.clone()),
                    position: ChunkPosition::Month(month.clone()),
                })
            })
            .collect())
    }

    async fn fetch(
        &self,
        spec: &BackfillSpec,
        chunk: &Chunk,
    ) -> Result<Vec<crate::sources::SourceRecord>, SourceError> {
        self.require_key()?;
        let (url, expect) = self.url(spec, chunk)?;
        let logged_url = redact(&url);
        let max_retries = self.inner.settings.max_retries;
        let mut retry = 0;
        loop {
            if let Err(spent) = self.inner.budget.acquire().await {
                debug!(chunk = %chunk.key, "alpha vantage daily budget spent");
                return Err(SourceError::Retryable {
                    reason: format!("alpha vantage {}: {spent}", chunk.key),
                    retry_after: spent.retry_after,
                });
            }
            debug!(chunk = %chunk.key, url = %logged_url, retry, "alpha vantage request");
            let (reason, hint, rate_limited) = match self.attempt(&url, &expect).await {
                Ok(records) => {
                    debug!(chunk = %chunk.key, records = records.len(), "alpha vantage chunk fetched");
                    return Ok(records);
                }
                Err(AttemptError::Fatal(reason)) => {
                    let reason = self.scrub(reason);
                    warn!(chunk = %chunk.key, error = %reason, "alpha vantage request failed");
                    return Err(SourceError::Fatal(format!(
                        "alpha vantage {}: {reason}",
                        chunk.key
                    )));
                }
                Err(AttemptError::DailyLimit(message)) => {
                    let spent = self.inner.budget.exhaust_day();
                    let message = self.scrub(message);
                    warn!(chunk = %chunk.key, error = %message, "alpha vantage daily limit reached");
                    return Err(SourceError::Retryable {
                        reason: format!("alpha vantage {}: daily limit: {message}", chunk.key),
                        retry_after: spent.retry_after,
                    });
                }
                Err(AttemptError::Retryable {
                    reason,
                    hint,
                    rate_limited,
                }) => (self.scrub(reason), hint, rate_limited),
            };
            let delay = self.backoff(retry).max(hint.unwrap_or_default());
            if retry >= max_retries {
                warn!(chunk = %chunk.key, error = %reason, attempts = retry + 1, "alpha vantage request failed, giving up");
                // A per-minute rate limit that outlasted the retries needs a full window.
                let retry_after = if rate_limited {
                    delay.max(Duration::from_secs(60))
                } else {
                    delay
                };
                let attempts = retry + 1;
                return Err(SourceError::Retryable {
                    reason: format!(
                        "alpha vantage {}: {reason} (after {attempts} attempt{})",
                        chunk.key,
                        if attempts == 1 { "" } else { "s" }
                    ),
                    retry_after,
                });
            }
            warn!(
                chunk = %chunk.key,
                error = %reason,
                retry = retry + 1,
                delay_ms = delay.as_millis() as u64,
                "alpha vantage request failed, retrying"
            );
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }
}

/// The Alpha Vantage parameters of `spec`, or why it is not for this source.
fn params_of(spec: &BackfillSpec) -> Result<&AlphaVantageParams, SourceError> {
    match &spec.params {
        SourceParams::AlphaVantage(params) => Ok(params),
        other => Err(SourceError::Fatal(format!(
            "the backfill is for source {}, not alpha_vantage",
            other.source_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let source = AlphaVantage::new(AlphaVantageSettings {
            retry_base_ms: 1_000,
            ..AlphaVantageSettings::default()
        })
        .unwrap();
        for retry in 0..10 {
            let full = Duration::from_millis(1_000 << retry).min(MAX_BACKOFF);
            let delay = source.backoff(retry);
            assert!(delay >= full / 2 && delay <= full, "{retry}: {delay:?}");
        }
        assert!(source.backoff(40) <= MAX_BACKOFF);
    }
}
