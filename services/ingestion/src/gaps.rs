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

fn is_weekday(ts: i64) -> bool {
    // 1970-01-01 was a Thursday (weekday index 3, Monday = 0).
    let weekday = (ts.div_euclid(DAY) + 3).rem_euclid(7);
    weekday < 5
}

/// Gaps between the ascending open times `ts` of bars of length `interval`.
pub fn find(ts: &[i64], interval: Interval) -> Vec<Gap> {
    let step = interval.seconds();
    let mut gaps = Vec::new();
    for pair in ts.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if interval == Interval::D1 {
            let missing = ((a + DAY)..b)
                .step_by(DAY as usize)
                .filter(|t| is_weekday(*t))
                .count() as i64;
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
