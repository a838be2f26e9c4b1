//! Hand-written parser for the ISO date and datetime forms CSV exports use.
//!
//! chrono's format-string parser is general and about ten times slower than this; dates are
//! on every row, so they are parsed here byte by byte and only time-zone conversion goes
//! through chrono-tz.

use chrono::{LocalResult, NaiveDate, TimeZone};
use chrono_tz::Tz;

const DAY: i64 = 86_400;

/// A timestamp as written in the file, before it is placed in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    /// Days since 1970-01-01 of the date as written.
    pub days: i64,
    /// Seconds since midnight as written; `None` for a bare date.
    pub secs: Option<u32>,
    /// Seconds east of UTC, when the value carries an offset.
    pub offset: Option<i32>,
}

/// Why a value could not be placed in time; the caller adds the column and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TsError {
    /// Not one of the accepted forms (or an impossible date such as 2023-02-29).
    Format,
    /// Seconds with a non-zero fraction, which no bar can open at.
    Fraction,
    /// A local time skipped by a daylight-saving change.
    Nonexistent,
    /// A local time that occurs twice at a daylight-saving change.
    Ambiguous,
}

/// Parses `YYYY-MM-DD` optionally followed by `T`/space and a time of day (see [`parse_time`]).
pub(crate) fn parse_timestamp(v: &[u8]) -> Result<Written, TsError> {
    let (year, month, day) = parse_date(v).ok_or(TsError::Format)?;
    let days = days_from_civil(year, month, day);
    let mut w = Written {
        year,
        month,
        day,
        days,
        secs: None,
        offset: None,
    };
    let rest = &v[10..];
    match rest.first() {
        None => Ok(w),
        Some(b'T' | b't' | b' ') => {
            let (secs, offset) = parse_time(&rest[1..])?;
            w.secs = Some(secs);
            w.offset = offset;
            Ok(w)
        }
        Some(_) => Err(TsError::Format),
    }
}

/// Parses a date-only value for a file whose time of day is in a separate column.
pub(crate) fn parse_date_only(v: &[u8]) -> Result<Written, TsError> {
    let w = parse_timestamp(v)?;
    if w.secs.is_some() {
        return Err(TsError::Format);
    }
    Ok(w)
}

/// Parses `HH:MM[:SS[.fff]]` followed by an optional offset: `Z`, `±HH:MM`, `±HHMM`, `±HH`
/// or ` UTC`. Returns seconds since midnight and the offset in seconds east of UTC.
pub(crate) fn parse_time(v: &[u8]) -> Result<(u32, Option<i32>), TsError> {
    let hour = two_digits(v, 0).ok_or(TsError::Format)?;
    let minute = match v.get(2) {
        Some(b':') => two_digits(v, 3).ok_or(TsError::Format)?,
        _ => return Err(TsError::Format),
    };
    let mut i = 5;
    let mut second = 0;
    if v.get(i) == Some(&b':') {
        second = two_digits(v, i + 1).ok_or(TsError::Format)?;
        i += 3;
        if v.get(i) == Some(&b'.') {
            i += 1;
            let digits = v[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return Err(TsError::Format);
            }
            if v[i..i + digits].iter().any(|&b| b != b'0') {
                return Err(TsError::Fraction);
            }
            i += digits;
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(TsError::Format);
    }
    let offset = parse_offset(&v[i..]).ok_or(TsError::Format)?;
    Ok((hour * 3_600 + minute * 60 + second, offset))
}

/// `None` when malformed; `Some(None)` when there is no offset.
fn parse_offset(v: &[u8]) -> Option<Option<i32>> {
    match v {
        [] => Some(None),
        [b'Z' | b'z'] | b"UTC" | b" UTC" => Some(Some(0)),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let hours = two_digits(rest, 0)?;
            let minutes = match rest.len() {
                2 => 0,
                4 => two_digits(rest, 2)?,
                5 if rest[2] == b':' => two_digits(rest, 3)?,
                _ => return None,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = (hours * 3_600 + minutes * 60) as i32;
            Some(Some(if *sign == b'-' { -secs } else { secs }))
        }
        _ => None,
    }
}

fn parse_date(v: &[u8]) -> Option<(i32, u32, u32)> {
    if v.len() < 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let year = two_digits(v, 0)? * 100 + two_digits(v, 2)?;
    let month = two_digits(v, 5)?;
    let day = two_digits(v, 8)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some((year as i32, month, day))
}

fn two_digits(v: &[u8], at: usize) -> Option<u32> {
    match (v.get(at), v.get(at + 1)) {
        (Some(a @ b'0'..=b'9'), Some(b @ b'0'..=b'9')) => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Places a written timestamp in UTC.
///
/// A bare date is 00:00 UTC of that date. For daily bars a datetime at local midnight is read
/// as its date too (yfinance writes daily bars as `2024-01-02 00:00:00-05:00`): the trading
/// date is what a daily bar is keyed by, not the exchange's midnight in UTC. Any other time
/// is converted with its offset, else in `tz`, else as UTC.
pub(crate) fn resolve(w: Written, daily: bool, tz: Option<&Tz>) -> Result<i64, TsError> {
    let secs = match w.secs {
        None => return Ok(w.days * DAY),
        Some(0) if daily => return Ok(w.days * DAY),
        Some(secs) => secs,
    };
    match (w.offset, tz) {
        (Some(offset), _) => Ok(w.days * DAY + i64::from(secs) - i64::from(offset)),
        (None, None) => Ok(w.days * DAY + i64::from(secs)),
        (None, Some(tz)) => {
            let naive = NaiveDate::from_ymd_opt(w.year, w.month, w.day)
                .and_then(|d| d.and_hms_opt(secs / 3_600, secs / 60 % 60, secs % 60))
                .ok_or(TsError::Format)?;
            match tz.from_local_datetime(&naive) {
                LocalResult::Single(t) => Ok(t.timestamp()),
                LocalResult::Ambiguous(_, _) => Err(TsError::Ambiguous),
                LocalResult::None => Err(TsError::Nonexistent),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn utc(v: &str) -> Result<i64, TsError> {
        resolve(parse_timestamp(v.as_bytes())?, false, None)
    }

    fn chrono_ts(v: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(v).unwrap().timestamp()
    }

    #[test]
    fn dates_match_chrono() {
        for (y, m, d) in [
            (1970, 1, 1),
            (1969, 12, 31),
            (2000, 2, 29),
            (2024, 3, 1),
            (1, 1, 1),
        ] {
            let expected = NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp();
            assert_eq!(days_from_civil(y, m, d) * DAY, expected, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(utc("2024-01-02"), Ok(chrono_ts("2024-01-02T00:00:00Z")));
        assert_eq!(
            utc("2024-01-02 09:30"),
            Ok(chrono_ts("2024-01-02T09:30:00Z"))
        );
        assert_eq!(
            utc("2024-01-02T09:30:15Z"),
            Ok(chrono_ts("2024-01-02T09:30:15Z"))
        );
        assert_eq!(
            utc("2024-01-02 09:30:00-05:00"),
            Ok(chrono_ts("2024-01-02T14:30:00Z"))
        );
        assert_eq!(
            utc("2024-01-02 09:30:00+0530"),
            Ok(chrono_ts("2024-01-02T04:00:00Z"))
        );
        assert_eq!(
            utc("2024-01-02 09:30:00+01"),
            Ok(chrono_ts("2024-01-02T08:30:00Z"))
        );
        assert_eq!(
            utc("2024-01-02 09:30:00.000"),
            Ok(chrono_ts("2024-01-02T09:30:00Z"))
        );
        assert_eq!(
            utc("2024-01-02 09:30:00 UTC"),
            Ok(chrono_ts("2024-01-02T09:30:00Z"))
        );
    }

    #[test]
    fn rejected_forms() {
        for v in [
            "",
            "2024-1-02",
            "2024/01/02",
            "2024-13-01",
            "2023-02-29",
            "2024-01-32",
            "2024-01-02x",
            "2024-01-02 9:30",
            "2024-01-02 24:00",
            "2024-01-02 09:60",
            "2024-01-02 09:30:00+5",
            "2024-01-02 09:30:00.",
            "02.01.2024",
            "2024-01-02 09:30:00+24:00",
        ] {
            assert_eq!(utc(v), Err(TsError::Format), "{v:?}");
        }
        assert_eq!(utc("2024-01-02 09:30:00.5"), Err(TsError::Fraction));
    }

    #[test]
    fn daily_midnight_keeps_the_written_date() {
        let w = parse_timestamp(b"2024-01-02 00:00:00-05:00").unwrap();
        assert_eq!(
            resolve(w, true, None),
            Ok(chrono_ts("2024-01-02T00:00:00Z"))
        );
        assert_eq!(
            resolve(w, false, None),
            Ok(chrono_ts("2024-01-02T05:00:00Z"))
        );
    }

    #[test]
    fn time_zones_follow_dst() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let at = |v: &str| resolve(parse_timestamp(v.as_bytes()).unwrap(), false, Some(&ny));
        assert_eq!(
            at("2024-01-02 09:30"),
            Ok(chrono_ts("2024-01-02T14:30:00Z"))
        );
        assert_eq!(
            at("2024-07-02 09:30"),
            Ok(chrono_ts("2024-07-02T13:30:00Z"))
        );
        assert_eq!(at("2024-03-10 02:30"), Err(TsError::Nonexistent));
        assert_eq!(at("2024-11-03 01:30"), Err(TsError::Ambiguous));
        assert_eq!(
            at("2024-07-02 09:30Z"),
            Ok(chrono_ts("2024-07-02T09:30:00Z"))
        );
    }
}
