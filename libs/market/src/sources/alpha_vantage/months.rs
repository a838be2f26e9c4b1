//! The calendar months of an intraday backfill: Alpha Vantage serves intraday history one
//! month (`month=YYYY-MM`, in US/Eastern) per request.

use chrono::{DateTime, Datelike, NaiveDate};

/// Calendar months `YYYY-MM` in US/Eastern that overlap `[start, end)` (seconds since epoch
/// UTC), in order. Empty when the range is.
pub fn months_between(start: i64, end: i64) -> Vec<String> {
    let local =
        |ts: i64| DateTime::from_timestamp(ts, 0).map(|t| t.with_timezone(&chrono_tz::US::Eastern));
    let (Some(first), Some(last)) = (local(start), local(end.saturating_sub(1))) else {
        return Vec::new();
    };
    if start >= end {
        return Vec::new();
    }
    let (mut year, mut month) = (first.year(), first.month());
    let mut months = Vec::new();
    while (year, month) <= (last.year(), last.month()) {
        months.push(format!("{year:04}-{month:02}"));
        (year, month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
    }
    months
}

/// Checks a `YYYY-MM` month.
pub(super) fn parse_month(month: &str) -> Result<NaiveDate, String> {
    if month.len() != 7 {
        return Err(format!("month {month:?} is not YYYY-MM"));
    }
    NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .map_err(|e| format!("month {month:?} is not YYYY-MM: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ts(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    #[test]
    fn months_are_counted_in_us_eastern() {
        assert_eq!(
            months_between(ts("2024-01-15T00:00:00Z"), ts("2024-04-01T00:00:00Z")),
            vec!["2024-01", "2024-02", "2024-03"]
        );
        // 2024-04-01T03:00Z is still 31 March in New York.
        assert_eq!(
            months_between(ts("2024-03-31T12:00:00Z"), ts("2024-04-01T03:00:00Z")),
            vec!["2024-03"]
        );
        // 2024-03-01T02:00Z is 29 February in New York.
        assert_eq!(
            months_between(ts("2024-03-01T02:00:00Z"), ts("2024-03-02T00:00:00Z")),
            vec!["2024-02", "2024-03"]
        );
        assert_eq!(
            months_between(ts("2023-11-20T00:00:00Z"), ts("2024-02-01T05:00:00Z")),
            vec!["2023-11", "2023-12", "2024-01"]
        );
        assert!(months_between(10, 10).is_empty());
        assert!(months_between(i64::MAX - 5, i64::MAX).is_empty());
    }
}
