//! Rows to records: the hot path of CSV ingestion.
//!
//! Lines are split into byte ranges of the input and numbers and dates are parsed from those
//! ranges directly; the only allocation per good row is the bar's symbol.

use std::borrow::Cow;

use memchr::{memchr, memchr2_iter};
use stockcast_proto::stockcast::types::v1::RejectReason;

use super::header::{Column, CsvContext, Symbols};
use super::time::{TsError, Written, parse_date_only, parse_time, parse_timestamp, resolve};
use crate::sources::{Row, SourceRecord, Unreadable};
use crate::{Bar, Interval, Rejection};

/// Media type of the payload of an unreadable CSV row.
pub const CSV_PAYLOAD_TYPE: &str = "text/csv";

/// A field of a line: a byte range of the input with surrounding blanks and quotes removed,
/// and whether it holds `""` escapes to undo.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    start: usize,
    end: usize,
    escaped: bool,
}

impl Span {
    fn trimmed(line: &[u8], base: usize, start: usize, end: usize) -> Span {
        let (mut start, mut end) = (start, end);
        while start < end && is_blank(line[start]) {
            start += 1;
        }
        while end > start && is_blank(line[end - 1]) {
            end -= 1;
        }
        Span {
            start: base + start,
            end: base + end,
            escaped: false,
        }
    }

    /// The field's text, unescaped.
    pub(crate) fn value<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        let raw = &input[self.start..self.end];
        if !self.escaped {
            return Cow::Borrowed(raw);
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            out.push(raw[i]);
            // Inside a quoted field quotes only come in `""` pairs.
            i += if raw[i] == b'"' { 2 } else { 1 };
        }
        Cow::Owned(out)
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_start(v: &[u8]) -> &[u8] {
    let n = v.iter().take_while(|&&b| is_blank(b)).count();
    &v[n..]
}

/// `v` without surrounding spaces and tabs.
pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let v = trim_start(v);
    let n = v.iter().rev().take_while(|&&b| is_blank(b)).count();
    &v[..v.len() - n]
}

/// Splits one line (no line end) into at most `max_fields` fields, offsets relative to the
/// buffer the line starts at `base` of. Returns false if a quoted field is not closed: fields
/// never span lines, so that chunks can be cut at any line end and one stray quote costs one
/// row, not the rest of the file.
pub(crate) fn split_line(line: &[u8], base: usize, max_fields: usize, out: &mut Vec<Span>) -> bool {
    let mut start = 0;
    for i in memchr2_iter(b',', b'"', line) {
        if line[i] == b'"' {
            out.clear();
            return split_quoted(line, base, max_fields, out);
        }
        out.push(Span::trimmed(line, base, start, i));
        start = i + 1;
        if out.len() >= max_fields {
            return true;
        }
    }
    out.push(Span::trimmed(line, base, start, line.len()));
    true
}

fn split_quoted(line: &[u8], base: usize, max_fields: usize, out: &mut Vec<Span>) -> bool {
    let n = line.len();
    let mut i = 0;
    loop {
        let j = i + (line[i..].len() - trim_start(&line[i..]).len());
        if j < n && line[j] == b'"' {
            let start = j + 1;
            let mut k = start;
            let mut escaped = false;
            let close = loop {
                match memchr(b'"', &line[k..]) {
                    None => return false,
                    Some(q) if line.get(k + q + 1) == Some(&b'"') => {
                        escaped = true;
                        k += q + 2;
                    }
                    Some(q) => break k + q,
                }
            };
            let after =
                close + 1 + (line[close + 1..].len() - trim_start(&line[close + 1..]).len());
            if after < n && line[after] != b',' {
                // Text after the closing quote: keep the field as written, so the row's
                // rejection shows it.
                let stop = memchr(b',', &line[after..]).map_or(n, |c| after + c);
                out.push(Span::trimmed(line, base, i, stop));
                i = stop;
            } else {
                let mut span = Span::trimmed(line, base, start, close);
                span.escaped = escaped;
                out.push(span);
                i = after;
            }
        } else {
            let stop = memchr(b',', &line[i..]).map_or(n, |c| i + c);
            out.push(Span::trimmed(line, base, i, stop));
            i = stop;
        }
        if out.len() >= max_fields || i >= n {
            return true;
        }
        i += 1;
    }
}

/// Parses the rows of `bytes` — whole lines of a CSV file after its header — into records.
///
/// `first_line` is the 1-based line number of the first line of `bytes` in the file (the
/// header is line 1), used as the index of unreadable rows. Blank lines and repeats of the
/// header line (concatenated exports) are skipped, as are rows outside the context's time
/// range or symbol filter. Never fails: a row that cannot be read becomes
/// [`SourceRecord::Unreadable`] with its bytes and a reason naming the column.
pub fn parse_csv(bytes: &[u8], first_line: u64, ctx: &CsvContext) -> Vec<SourceRecord> {
    let mut out = Vec::with_capacity(bytes.len() / 48 + 1);
    let mut spans: Vec<Span> = Vec::with_capacity(ctx.width);
    let mut line_no = first_line;
    let mut pos = 0;
    while pos < bytes.len() {
        let (end, next) = match memchr(b'\n', &bytes[pos..]) {
            Some(i) => (pos + i, pos + i + 1),
            None => (bytes.len(), bytes.len()),
        };
        let content_end = if end > pos && bytes[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        let base = pos;
        let line = &bytes[base..content_end];
        let this_line = line_no;
        line_no += 1;
        pos = next;
        if trim(line).is_empty() {
            continue;
        }
        spans.clear();
        let parsed = if split_line(line, base, ctx.width, &mut spans) {
            parse_row(bytes, &spans, ctx)
        } else {
            let symbol = match &ctx.symbols {
                Symbols::Fixed(symbol) => symbol.clone(),
                Symbols::Column { .. } => String::new(),
            };
            Parsed::Bad(
                symbol,
                Rejection::new(
                    RejectReason::Malformed,
                    "",
                    "the row has a quote that is not closed on its line",
                ),
            )
        };
        match parsed {
            Parsed::Bar(bar) => out.push(SourceRecord::Row(Row {
                bar,
                index: i64::try_from(this_line).unwrap_or(i64::MAX),
                payload: line.to_vec(),
                payload_type: CSV_PAYLOAD_TYPE,
            })),
            Parsed::Skip => {}
            Parsed::Bad(_, _) if line == ctx.header.as_slice() => {}
            Parsed::Bad(symbol, rejection) => out.push(SourceRecord::Unreadable(Unreadable {
                payload: line.to_vec(),
                payload_type: CSV_PAYLOAD_TYPE,
                index: i64::try_from(this_line).unwrap_or(i64::MAX),
                symbol,
                rejection,
            })),
        }
    }
    out
}

enum Parsed {
    Bar(Bar),
    /// Outside the range or the symbol filter.
    Skip,
    /// Unreadable, with the symbol if it was read.
    Bad(String, Rejection),
}

fn parse_row(input: &[u8], spans: &[Span], ctx: &CsvContext) -> Parsed {
    let symbol = match &ctx.symbols {
        Symbols::Fixed(symbol) => symbol.clone(),
        Symbols::Column { column, keep } => {
            let value = match field(input, spans, column, "symbol") {
                Ok(value) => value,
                Err(rejection) => return Parsed::Bad(String::new(), rejection),
            };
            if !keep.is_empty() && keep.binary_search_by(|k| (**k).cmp(&value)).is_err() {
                return Parsed::Skip;
            }
            String::from_utf8_lossy(&value).into_owned()
        }
    };
    let ts = match timestamp(input, spans, ctx) {
        Ok(ts) => ts,
        Err(rejection) => return Parsed::Bad(symbol, rejection),
    };
    if ts < ctx.start || ts >= ctx.end {
        return Parsed::Skip;
    }
    let [open, high, low, close, volume] = &ctx.values;
    let values = (|| {
        Ok::<_, Rejection>([
            number(input, spans, open, "open")?,
            number(input, spans, high, "high")?,
            number(input, spans, low, "low")?,
            number(input, spans, close, "close")?,
            number(input, spans, volume, "volume")?,
        ])
    })();
    match values {
        Ok([open, high, low, close, volume]) => Parsed::Bar(Bar {
            symbol,
            interval: ctx.interval,
            ts,
            open,
            high,
            low,
            close,
            volume,
        }),
        Err(rejection) => Parsed::Bad(symbol, rejection),
    }
}

/// A non-empty field, or a rejection naming the column.
fn field<'a>(
    input: &'a [u8],
    spans: &[Span],
    column: &Column,
    name: &'static str,
) -> Result<Cow<'a, [u8]>, Rejection> {
    match spans.get(column.index) {
        Some(span) if span.end > span.start => Ok(span.value(input)),
        Some(_) => Err(empty(column, name)),
        None => Err(missing(column, name, spans.len())),
    }
}

#[cold]
fn empty(column: &Column, name: &'static str) -> Rejection {
    Rejection::new(
        RejectReason::MissingField,
        name,
        format!("column {:?} is empty", column.name),
    )
}

#[cold]
fn missing(column: &Column, name: &'static str, fields: usize) -> Rejection {
    Rejection::new(
        RejectReason::MissingField,
        name,
        format!(
            "column {:?} is missing (the row has {fields} fields)",
            column.name
        ),
    )
}

fn number(
    input: &[u8],
    spans: &[Span],
    column: &Column,
    name: &'static str,
) -> Result<f64, Rejection> {
    let value = field(input, spans, column, name)?;
    parse_f64(&value).ok_or_else(|| not_a_number(column, name, &value))
}

#[cold]
fn not_a_number(column: &Column, name: &'static str, value: &[u8]) -> Rejection {
    Rejection::new(
        RejectReason::Malformed,
        name,
        format!(
            "column {:?} is {:?}, not a number",
            column.name,
            String::from_utf8_lossy(value)
        ),
    )
}

/// Powers of ten that are exact in an f64.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A decimal number, correctly rounded.
///
/// Prices are short plain decimals (`187.149994`), which Clinger's fast path reads exactly:
/// when the digits form an integer of at most 2^53 and there are at most 22 decimals, both
/// it and the power of ten are exact f64s and one IEEE division rounds correctly. Anything
/// else (signs, exponents, long mantissas, `inf`) goes to std's parser, which is also
/// correctly rounded, so both paths give the same bits and `{}`-formatted values round-trip.
pub(crate) fn parse_f64(v: &[u8]) -> Option<f64> {
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut decimals = 0usize;
    let mut dot = false;
    for &b in v {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
                digits += 1;
                decimals += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => return parse_f64_slow(v),
        }
    }
    // 19 digits cannot overflow a u64, so `mantissa` is exact when the check passes.
    if digits == 0 || digits > 19 || mantissa > 1 << 53 || decimals >= EXACT_POWERS_OF_TEN.len() {
        return parse_f64_slow(v);
    }
    Some(mantissa as f64 / EXACT_POWERS_OF_TEN[decimals])
}

#[cold]
fn parse_f64_slow(v: &[u8]) -> Option<f64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn timestamp(input: &[u8], spans: &[Span], ctx: &CsvContext) -> Result<i64, Rejection> {
    let date = field(input, spans, &ctx.ts, "ts")?;
    let written = match &ctx.time {
        None => parse_timestamp(&date).map_err(|e| ts_rejection(e, &ctx.ts, &date, ctx))?,
        Some(time_column) => {
            let mut written =
                parse_date_only(&date).map_err(|e| ts_rejection(e, &ctx.ts, &date, ctx))?;
            let time = field(input, spans, time_column, "ts")?;
            let (secs, offset) =
                parse_time(&time).map_err(|e| ts_rejection(e, time_column, &time, ctx))?;
            written.secs = Some(secs);
            written.offset = offset;
            written
        }
    };
    resolve(written, ctx.interval == Interval::D1, ctx.tz.as_ref())
        .map_err(|e| ts_rejection(e, &ctx.ts, &written_text(&written, &date), ctx))
}

fn written_text(written: &Written, date: &[u8]) -> Vec<u8> {
    match written.secs {
        Some(secs) if date.len() == 10 => format!(
            "{} {:02}:{:02}:{:02}",
            String::from_utf8_lossy(date),
            secs / 3_600,
            secs / 60 % 60,
            secs % 60
        )
        .into_bytes(),
        _ => date.to_vec(),
    }
}

fn ts_rejection(error: TsError, column: &Column, value: &[u8], ctx: &CsvContext) -> Rejection {
    let value = String::from_utf8_lossy(value);
    let zone = ctx
        .tz
        .map_or_else(|| "UTC".to_owned(), |tz| tz.name().to_owned());
    let what = match error {
        TsError::Format if ctx.time.as_ref() == Some(column) => {
            "not a time of day (HH:MM[:SS] with an optional Z or ±HH:MM offset)".to_owned()
        }
        TsError::Format => {
            "not a date (YYYY-MM-DD) or datetime (YYYY-MM-DD HH:MM[:SS] with an optional Z or ±HH:MM offset)".to_owned()
        }
        TsError::Fraction => "a time with a fractional second, which no bar opens at".to_owned(),
        TsError::Nonexistent => {
            format!("a local time that does not exist in {zone} (skipped by a daylight-saving change)")
        }
        TsError::Ambiguous => format!(
            "a local time that occurs twice in {zone} (daylight-saving change); write it with an offset"
        ),
    };
    Rejection::new(
        RejectReason::InvalidTimestamp,
        "ts",
        format!("column {:?} is {value:?}, {what}", column.name),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    fn std_parse(v: &str) -> Option<f64> {
        v.parse().ok()
    }

    #[test]
    fn the_fast_path_agrees_with_std() {
        for v in [
            "0",
            "1",
            "1.",
            ".5",
            "187.149994",
            "0.1",
            "0.3",
            "9007199254740993",
            "9007199254740992.5",
            "123456789012345678901",
            "1e5",
            "-2.5",
            "+2.5",
            "inf",
            "NaN",
            "",
            ".",
            "1..2",
            "1,5",
            "00000000000000000000001",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "4.35",
            "1O.5",
        ] {
            assert_eq!(
                parse_f64(v.as_bytes()).map(f64::to_bits),
                std_parse(v).map(f64::to_bits),
                "{v:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn the_fast_path_agrees_with_std_on_any_decimal(v in "[0-9]{0,20}(\\.[0-9]{0,24})?") {
            prop_assert_eq!(parse_f64(v.as_bytes()).map(f64::to_bits), std_parse(&v).map(f64::to_bits));
        }

        #[test]
        fn displayed_floats_round_trip(x in proptest::num::f64::POSITIVE | proptest::num::f64::NORMAL) {
            prop_assert_eq!(parse_f64(x.to_string().as_bytes()), Some(x));
        }
    }

    #[test]
    fn fields_are_split_trimmed_and_unquoted() {
        let line = br#" a ,"b, ""c""" , "d"x,,"e""#;
        let mut spans = Vec::new();
        assert!(split_line(line, 0, usize::MAX, &mut spans));
        let values: Vec<Vec<u8>> = spans.iter().map(|s| s.value(line).into_owned()).collect();
        assert_eq!(
            values,
            [
                b"a".to_vec(),
                br#"b, "c""#.to_vec(),
                br#""d"x"#.to_vec(),
                b"".to_vec(),
                b"e".to_vec()
            ]
        );
        spans.clear();
        assert!(!split_line(br#"a,"b"#, 0, usize::MAX, &mut spans));
        spans.clear();
        assert!(split_line(b"a,b,", 0, usize::MAX, &mut spans));
        assert_eq!(spans.len(), 3);
    }
}
