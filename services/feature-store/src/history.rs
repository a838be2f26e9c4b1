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

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::store::{FeatureRow, ViewWrite, WriteBatch};
    use crate::view::default_view;

    /// An offline store holding rows of `symbols` at event times 1..=n each.
    async fn store_with(view: &View, symbols: &[&str], n: i64) -> Arc<dyn OfflineStore> {
        let store =
            crate::store::sql::open(&Default::default(), &stockcast_runtime::Shutdown::new())
                .await
                .unwrap();
        let rows = symbols
            .iter()
            .flat_map(|s| {
                (1..=n).map(|t| FeatureRow {
                    symbol: (*s).to_owned(),
                    event_time: t,
                    values: vec![t as f64],
                })
            })
            .collect();
        let write = WriteBatch {
            views: vec![ViewWrite {
                view: view.id.clone(),
                rows,
                states: Vec::new(),
                keep_existing: false,
            }],
            ..WriteBatch::default()
        };
        store.write(&write).await.unwrap();
        store
    }

    /// The rows of each page as (symbol, as-of).
    async fn answer(store: Arc<dyn OfflineStore>, query: HistoryQuery) -> Vec<Vec<(String, Ts)>> {
        pages(store, query)
            .map(|page| {
                page.unwrap()
                    .into_iter()
                    .map(|r| (r.symbol, r.as_of))
                    .collect()
            })
            .collect()
            .await
    }

    fn span(view: &View, symbols: &[&str], page: usize) -> HistoryQuery {
        HistoryQuery {
            view: view.clone(),
            entities: Entities::Span {
                symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
                from: 0,
                until: 100,
            },
            page,
            label_horizon: None,
        }
    }

    #[tokio::test]
    async fn a_span_pages_by_cursor_across_symbols_and_ends_after_a_short_page() {
        let view = View::compile(&default_view()).unwrap();
        let store = store_with(&view, &["A", "B"], 3).await;
        let pages = answer(Arc::clone(&store), span(&view, &["A", "B"], 4)).await;
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [4, 2]);
        assert_eq!(pages[0][3], ("B".to_owned(), 1));
        assert_eq!(pages[1], [("B".to_owned(), 2), ("B".to_owned(), 3)]);
        // A full last page asks once more and yields nothing further.
        let sizes: Vec<usize> = answer(Arc::clone(&store), span(&view, &["A", "B"], 3))
            .await
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [3, 3]);
        // An empty span still answers one (empty) page, which carries the header.
        let empty = answer(store, span(&view, &["ZZZ"], 3)).await;
        assert_eq!(empty, [Vec::<(String, Ts)>::new()]);
    }

    #[tokio::test]
    async fn entity_rows_are_answered_in_order_in_pages() {
        let view = View::compile(&default_view()).unwrap();
        let store = store_with(&view, &["A"], 3).await;
        let rows: Vec<(String, Ts)> = [("A", 3), ("B", 1), ("A", 2)]
            .iter()
            .map(|(s, t)| ((*s).to_owned(), *t))
            .collect();
        let query = HistoryQuery {
            view: view.clone(),
            entities: Entities::Rows(rows.clone()),
            page: 2,
            label_horizon: None,
        };
        assert_eq!(query.total_rows(), 3);
        let pages = answer(store, query).await;
        assert_eq!(pages, [rows[..2].to_vec(), rows[2..].to_vec()]);
    }
}
