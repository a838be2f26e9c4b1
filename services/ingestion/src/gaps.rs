//! Gaps in a symbol's stored bars.
//!
//! Daily bars: a weekday without a bar between two stored bars is missing (exchange holidays
//! count as gaps; the service knows no holiday calendar). Intraday bars: within one UTC day,
//! two consecutive bars further apart than the interval leave the bars between them missing;
//! the time between sessions is not a gap.

use stockcast_market::Interval;

/// A run of missing bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Open time of the first missing bar, seconds since epoch UTC.
    pub start: i64,
    /// Open time of the next stored bar (exclusive end).
    pub end: i64,
    /// Bars missing.
    pub missing: i64,
}

const DAY: i64 = 86_400;

/// Weekdays among the days numbered `0..day` since 1970-01-01 (negative `day` counts back).
fn weekdays_before(day: i64) -> i64 {
    // Day 0 was a Thursday; shift so that week boundaries fall on Mondays (day -3).
    let shifted = day + 3;
    let weeks = shifted.div_euclid(7);
    let rest = shifted.rem_euclid(7).min(5);
    weeks * 5 + rest
}

/// Weekdays whose 00:00 lies in `[from, to)` (seconds since epoch): constant time, whatever
/// the span.
fn weekdays_between(from: i64, to: i64) -> i64 {
    let first = from.div_euclid(DAY) + i64::from(from.rem_euclid(DAY) != 0);
    let end = to.div_euclid(DAY) + i64::from(to.rem_euclid(DAY) != 0);
    (weekdays_before(end) - weekdays_before(first)).max(0)
}

/// Gaps between the ascending open times `ts` of bars of length `interval`, in time
/// proportional to the number of bars, however far apart they are.
pub fn find(ts: &[i64], interval: Interval) -> Vec<Gap> {
    let step = interval.seconds();
    let mut gaps = Vec::new();
    for pair in ts.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if interval == Interval::D1 {
            let missing = weekdays_between(a.saturating_add(DAY), b);
            if missing > 0 {
                gaps.push(Gap {
                    start: a + DAY,
                    end: b,
                    missing,
                });
            }
        } else if a.div_euclid(DAY) == b.div_euclid(DAY) && b - a > step {
            gaps.push(Gap {
                start: a + step,
                end: b,
                missing: (b - a) / step - 1,
            });
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-01-01 is a Monday.
    const MONDAY: i64 = 1_704_067_200;

    #[test]
    fn weekends_are_not_daily_gaps_but_missing_weekdays_are() {
        let friday = MONDAY + 4 * DAY;
        let next_monday = MONDAY + 7 * DAY;
        assert!(find(&[friday, next_monday], Interval::D1).is_empty());
        let gaps = find(&[MONDAY, MONDAY + 3 * DAY], Interval::D1);
        assert_eq!(
            gaps,
            vec![Gap {
                start: MONDAY + DAY,
                end: MONDAY + 3 * DAY,
                missing: 2
            }]
        );
    }

    #[test]
    fn weekday_counts_match_a_day_by_day_walk_and_do_not_depend_on_the_span() {
        let walk = |from: i64, to: i64| {
            (from.div_euclid(DAY)..to.div_euclid(DAY) + 1)
                .map(|d| d * DAY)
                .filter(|t| *t >= from && *t < to && (t.div_euclid(DAY) + 3).rem_euclid(7) < 5)
                .count() as i64
        };
        for from in (-40..40).map(|d| MONDAY + d * DAY + (d % 3) * 3_600) {
            for len in 0..30 {
                let to = from + len * DAY - (len % 2) * 7_200;
                assert_eq!(weekdays_between(from, to), walk(from, to), "{from}..{to}");
            }
        }
        // 1900 to 2100 and beyond: answered at once (a day-by-day walk took minutes).
        let far = find(&[-2_208_988_800, 4_102_444_800], Interval::D1);
        assert_eq!(far[0].missing, walk(-2_208_988_800 + DAY, 4_102_444_800));
        let extreme = find(
            &[i64::MIN / 2 / DAY * DAY, i64::MAX / 2 / DAY * DAY],
            Interval::D1,
        );
        assert!(extreme[0].missing > 0);
    }

    #[test]
    fn intraday_gaps_stay_within_a_day() {
        let open = MONDAY + 14 * 3_600 + 1_800;
        let ts = [open, open + 60, open + 300, MONDAY + DAY + 52_200];
        let gaps = find(&ts, Interval::M1);
        assert_eq!(
            gaps,
            vec![Gap {
                start: open + 120,
                end: open + 300,
                missing: 3
            }]
        );
    }
}
