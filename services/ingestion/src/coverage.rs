//! What is stored per symbol: first and last bar, count, and the gaps between.

use std::sync::Arc;

use stockcast_market::Interval;

use crate::error::Error;
use crate::gaps::{self, Gap};
use crate::store::BarStore;

/// First and last bar and count of a (symbol, interval).
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Ticker.
    pub symbol: String,
    /// Bar length.
    pub interval: Interval,
    /// First bar open time, seconds since epoch UTC.
    pub first_ts: i64,
    /// Last bar open time, seconds since epoch UTC.
    pub last_ts: i64,
    /// Bars stored.
    pub bar_count: i64,
}

/// Which coverage to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolQuery {
    /// Only this bar length.
    pub interval: Option<Interval>,
    /// Only symbols starting with this.
    pub symbol_prefix: String,
    /// Start after this (symbol, interval): the previous page's last.
    pub after: Option<(String, Interval)>,
    /// At most this many.
    pub limit: i64,
    /// Whether to find the gaps of each.
    pub include_gaps: bool,
}

/// The coverage of one (symbol, interval).
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolCoverage {
    /// First and last bar and count.
    pub coverage: Coverage,
    /// Its gaps, oldest first; empty unless asked for.
    pub gaps: Vec<Gap>,
}

/// Answers what is stored. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn BarStore>,
}

impl Catalog {
    /// A catalog of `store`.
    pub fn new(store: Arc<dyn BarStore>) -> Self {
        Self { store }
    }

    /// One page of coverage (ordered by symbol, then interval), and where the next page
    /// starts after, if there are more.
    pub async fn symbols(
        &self,
        query: SymbolQuery,
    ) -> Result<(Vec<SymbolCoverage>, Option<(String, Interval)>), Error> {
        let limit = query.limit.max(0) as usize;
        let mut rows = self
            .store
            .coverage(
                query.interval,
                &query.symbol_prefix,
                query.after,
                query.limit + 1,
            )
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = rows
            .last()
            .filter(|_| more)
            .map(|last| (last.symbol.clone(), last.interval));
        let mut symbols = Vec::with_capacity(rows.len());
        for coverage in rows {
            let gaps = if query.include_gaps {
                let ts = self
                    .store
                    .timestamps(&coverage.symbol, coverage.interval)
                    .await?;
                gaps::find(&ts, coverage.interval)
            } else {
                Vec::new()
            };
            symbols.push(SymbolCoverage { coverage, gaps });
        }
        Ok((symbols, next))
    }
}
