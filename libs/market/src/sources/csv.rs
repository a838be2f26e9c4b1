//! CSV file source (being implemented).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Parameters of a CSV backfill.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvParams {
    /// The file.
    pub path: PathBuf,
    /// Symbol of every row, for files without a `Symbol` column.
    pub symbol: Option<String>,
    /// IANA time zone of timestamps without an offset; UTC when absent.
    pub time_zone: Option<String>,
}
