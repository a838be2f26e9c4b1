//! The header line: which column holds what, and everything else a row parse needs.

use chrono_tz::Tz;

use super::CsvParams;
use super::parse::{Span, split_line, trim};
use crate::Interval;
use crate::sources::BackfillSpec;

/// Why a file's header (or the parameters that go with it) cannot be used. Every variant is
/// fatal for the backfill: no row of the file can be read without a usable header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// The file has no bytes at all.
    #[error("the file is empty; expected a header line like Date,Open,High,Low,Close,Volume")]
    Empty,
    /// The first line is longer than any plausible header.
    #[error("the first line is longer than {0} bytes; is this a CSV file?")]
    HeaderTooLong(usize),
    /// The header is not UTF-8 text.
    #[error("the header line is not UTF-8 text")]
    HeaderNotUtf8,
    /// The header has an unclosed quote.
    #[error("the header {0:?} has an unclosed quote")]
    HeaderUnclosedQuote(String),
    /// A required column is absent.
    #[error(
        "the header {header:?} has no {column} column; expected Date,Open,High,Low,Close[,Adj Close],Volume in any order"
    )]
    MissingColumn {
        /// The header as written.
        header: String,
        /// The missing column.
        column: &'static str,
    },
    /// Two columns mean the same thing.
    #[error("the header has two {role} columns: {first:?} and {second:?}")]
    DuplicateColumn {
        /// What both columns hold.
        role: &'static str,
        /// Name of the first.
        first: String,
        /// Name of the second.
        second: String,
    },
    /// Rows carry no symbol and none was given.
    #[error(
        "the file has no Symbol column and no symbol was given: set the CSV symbol parameter or request exactly one symbol (requested: {requested:?})"
    )]
    NoSymbol {
        /// The spec's symbols.
        requested: Vec<String>,
    },
    /// The file's symbol (from the parameters) is not among the requested symbols.
    #[error("the file's symbol {symbol:?} is not among the requested symbols {requested:?}")]
    SymbolNotRequested {
        /// The symbol parameter.
        symbol: String,
        /// The spec's symbols.
        requested: Vec<String>,
    },
    /// The time zone parameter is not an IANA name.
    #[error("time zone {0:?} is not an IANA time zone name such as America/New_York")]
    UnknownTimeZone(String),
}

/// What messages call an unnamed first column read as the timestamp (the pandas index).
const UNNAMED_INDEX: &str = "(unnamed index)";

/// A column: where it is and what the header calls it (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub index: usize,
    pub name: String,
}

/// Where each row's symbol comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Symbols {
    /// Every row has this symbol.
    Fixed(String),
    /// A column; rows whose symbol is not in `keep` (sorted; empty = all) are skipped.
    Column {
        column: Column,
        keep: Vec<Box<[u8]>>,
    },
}

/// Everything a row parse needs: the column layout read from the header, where symbols and
/// times come from, and the range and interval to keep. Built once per chunk.
#[derive(Debug, Clone)]
pub struct CsvContext {
    /// Date or datetime.
    pub(crate) ts: Column,
    /// A separate time-of-day column, when the file splits date and time.
    pub(crate) time: Option<Column>,
    /// open, high, low, close, volume, in that order.
    pub(crate) values: [Column; 5],
    pub(crate) symbols: Symbols,
    /// One past the highest column index a row must have.
    pub(crate) width: usize,
    pub(crate) tz: Option<Tz>,
    pub(crate) interval: Interval,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// The header line as written (no BOM or line end), to skip repeated headers.
    pub(crate) header: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Date,
    DateTime,
    Time,
    Open,
    High,
    Low,
    Close,
    Volume,
    Symbol,
}

impl Role {
    fn of(name: &str) -> Option<Role> {
        Some(match name.to_ascii_lowercase().as_str() {
            "date" => Role::Date,
            "datetime" | "timestamp" => Role::DateTime,
            "time" => Role::Time,
            "open" => Role::Open,
            "high" => Role::High,
            "low" => Role::Low,
            "close" => Role::Close,
            "volume" => Role::Volume,
            "symbol" | "ticker" => Role::Symbol,
            // Everything else — the unnamed pandas index, `Adj Close` (we store the prices
            // that traded; adjustment for splits and dividends is a view computed later),
            // yfinance's `Dividends`/`Stock Splits` — is ignored.
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Role::Date => "Date",
            Role::DateTime => "Datetime",
            Role::Time => "Time",
            Role::Open => "Open",
            Role::High => "High",
            Role::Low => "Low",
            Role::Close => "Close",
            Role::Volume => "Volume",
            Role::Symbol => "Symbol",
        }
    }
}

impl CsvContext {
    /// Reads the header line (with or without BOM and line end) and resolves the symbol,
    /// time zone, interval and range from the parameters and the spec.
    pub fn new(header: &[u8], params: &CsvParams, spec: &BackfillSpec) -> Result<Self, CsvError> {
        let header = header.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(header);
        let header = header.strip_suffix(b"\n").unwrap_or(header);
        let header = header.strip_suffix(b"\r").unwrap_or(header);
        let text = std::str::from_utf8(header).map_err(|_| CsvError::HeaderNotUtf8)?;

        let mut spans: Vec<Span> = Vec::new();
        if !split_line(header, 0, usize::MAX, &mut spans) {
            return Err(CsvError::HeaderUnclosedQuote(text.to_owned()));
        }
        let mut found: [Option<Column>; 9] = Default::default();
        let mut unnamed_first = None;
        for (index, span) in spans.iter().enumerate() {
            let name = String::from_utf8_lossy(trim(&span.value(header))).into_owned();
            if index == 0 && name.is_empty() {
                unnamed_first = Some(Column {
                    index,
                    name: UNNAMED_INDEX.to_owned(),
                });
            }
            let Some(role) = Role::of(&name) else {
                continue;
            };
            let slot = &mut found[role as usize];
            if let Some(first) = slot {
                return Err(CsvError::DuplicateColumn {
                    role: role.label(),
                    first: first.name.clone(),
                    second: name,
                });
            }
            *slot = Some(Column { index, name });
        }
        let mut take = |role: Role| found[role as usize].take();
        let missing = |column: &'static str| CsvError::MissingColumn {
            header: text.to_owned(),
            column,
        };

        // A Datetime/Timestamp column is a full timestamp; otherwise Date, with an optional
        // Time column holding the time of day; a lone Time column is a full timestamp. With
        // none of them, an unnamed first column is the timestamp: pandas writes a frame's
        // index there without a name (`,Open,High,…` from `DataFrame.to_csv()` of a frame
        // indexed by date). When a date column exists, an unnamed first column is a row
        // number and ignored.
        let (date, datetime, time) = (take(Role::Date), take(Role::DateTime), take(Role::Time));
        let (ts, time) = match (datetime, date, time, unnamed_first) {
            (Some(ts), _, _, _) => (ts, None),
            (None, Some(date), time, _) => (date, time),
            (None, None, Some(time), _) => (time, None),
            (None, None, None, Some(index)) => (index, None),
            (None, None, None, None) => return Err(missing("Date")),
        };
        let mut value = |role: Role| take(role).ok_or_else(|| missing(role.label()));
        let values = [
            value(Role::Open)?,
            value(Role::High)?,
            value(Role::Low)?,
            value(Role::Close)?,
            value(Role::Volume)?,
        ];
        let symbols = resolve_symbols(take(Role::Symbol), params, spec)?;

        let mut width = values
            .iter()
            .map(|c| c.index)
            .max()
            .unwrap_or(0)
            .max(ts.index);
        if let Some(time) = &time {
            width = width.max(time.index);
        }
        if let Symbols::Column { column, .. } = &symbols {
            width = width.max(column.index);
        }
        let tz = match &params.time_zone {
            None => None,
            Some(name) => Some(
                name.trim()
                    .parse::<Tz>()
                    .map_err(|_| CsvError::UnknownTimeZone(name.clone()))?,
            ),
        };
        Ok(Self {
            ts,
            time,
            values,
            symbols,
            width: width + 1,
            tz,
            interval: spec.interval,
            start: spec.start,
            end: spec.end,
            header: header.to_vec(),
        })
    }

    /// The symbol of every row, when the file has no Symbol column.
    pub fn fixed_symbol(&self) -> Option<&str> {
        match &self.symbols {
            Symbols::Fixed(symbol) => Some(symbol),
            Symbols::Column { .. } => None,
        }
    }
}

fn resolve_symbols(
    column: Option<Column>,
    params: &CsvParams,
    spec: &BackfillSpec,
) -> Result<Symbols, CsvError> {
    let param = params.symbol.as_deref().map(str::trim);
    if let Some(column) = column {
        // Both the spec's list and the symbol parameter narrow what is loaded.
        let mut keep: Vec<Box<[u8]>> = match param {
            Some(symbol) if spec.symbols.is_empty() || spec.symbols.iter().any(|s| s == symbol) => {
                vec![symbol.as_bytes().into()]
            }
            Some(symbol) => {
                return Err(CsvError::SymbolNotRequested {
                    symbol: symbol.to_owned(),
                    requested: spec.symbols.clone(),
                });
            }
            None => spec.symbols.iter().map(|s| s.as_bytes().into()).collect(),
        };
        keep.sort();
        keep.dedup();
        return Ok(Symbols::Column { column, keep });
    }
    match (param, spec.symbols.as_slice()) {
        (Some(symbol), requested) => {
            if requested.is_empty() || requested.iter().any(|s| s == symbol) {
                Ok(Symbols::Fixed(symbol.to_owned()))
            } else {
                Err(CsvError::SymbolNotRequested {
                    symbol: symbol.to_owned(),
                    requested: requested.to_vec(),
                })
            }
        }
        (None, [only]) => Ok(Symbols::Fixed(only.clone())),
        (None, requested) => Err(CsvError::NoSymbol {
            requested: requested.to_vec(),
        }),
    }
}
