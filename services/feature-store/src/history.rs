//! Historical retrieval: point-in-time rows and spans of stored feature rows, read from the
//! offline store one page at a time, so memory stays bounded by a page whatever the request.

use std::sync::Arc;

use futures::Stream;

use crate::store::{HistoricalRow, OfflineStore, PointInTimeQuery, SpanQuery, StoreError};
use crate::view::{Ts, View};

/// Which rows a historical request wants.
#[derive(Debug, Clone, PartialEq)]
pub enum Entities {
    /// (symbol, as-of time) rows, answered point-in-time correct in this order.
    Rows(Vec<(String, Ts)>),
    /// Every stored row of `symbols` (sorted, without duplicates) with event times
    /// `from <= t < until`, ordered by symbol then event time.
    Span {
        /// Symbols.
        symbols: Vec<String>,
        /// First event time.
        from: Ts,
        /// End of the range (exclusive).
        until: Ts,
    },
}

/// A historical request in domain terms.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// The view version.
    pub view: View,
    /// The rows wanted.
    pub entities: Entities,
    /// Most rows per page.
    pub page: usize,
    /// Label horizon in bars, if a label is wanted.
    pub label_horizon: Option<u32>,
}

impl HistoryQuery {
    /// How many rows the answer has, when known before reading (0 for a span).
    pub fn total_rows(&self) -> i64 {
        match &self.entities {
            Entities::Rows(rows) => rows.len() as i64,
            Entities::Span { .. } => 0,
        }
    }
}

/// The answer to `query` in pages. A span yields its first page even when empty, and ends
/// after a short page; the first error ends the stream.
pub fn pages(
    offline: Arc<dyn OfflineStore>,
    query: HistoryQuery,
) -> impl Stream<Item = Result<Vec<HistoricalRow>, StoreError>> + Send + 'static {
    let pager = Pager {
        offline,
        query,
        next: 0,
        cursor: None,
        done: false,
    };
    futures::stream::unfold(pager, |mut pager| async move {
        let page = pager.next_page().await?;
        Some((page, pager))
    })
}

struct Pager {
    offline: Arc<dyn OfflineStore>,
    query: HistoryQuery,
    /// Pages answered so far.
    next: usize,
    /// Keyset cursor of a span: the last (symbol, event time) answered.
    cursor: Option<(String, Ts)>,
    done: bool,
}

impl Pager {
    async fn next_page(&mut self) -> Option<Result<Vec<HistoricalRow>, StoreError>> {
        if self.done {
            return None;
        }
        let q = &self.query;
        let page = q.page.max(1);
        let result = match &q.entities {
            Entities::Rows(rows) => {
                let part = rows.chunks(page).nth(self.next)?;
                self.offline
                    .point_in_time(PointInTimeQuery {
                        view: &q.view.id,
                        interval: q.view.interval,
                        rows: part,
                        label_horizon: q.label_horizon,
                    })
                    .await
            }
            Entities::Span {
                symbols,
                from,
                until,
            } => {
                let result = self
                    .offline
                    .span(SpanQuery {
                        view: &q.view.id,
                        interval: q.view.interval,
                        symbols,
                        from: *from,
                        until: *until,
                        after: self.cursor.as_ref().map(|(s, t)| (s.as_str(), *t)),
                        limit: page,
                        label_horizon: q.label_horizon,
                    })
                    .await;
                if let Ok(rows) = &result {
                    if rows.is_empty() && self.next > 0 {
                        return None;
                    }
                    self.done = rows.len() < page;
                    self.cursor = rows.last().map(|r| (r.symbol.clone(), r.as_of));
                }
                result
            }
        };
        self.done |= result.is_err();
        self.next += 1;
        Some(result)
    }
}
