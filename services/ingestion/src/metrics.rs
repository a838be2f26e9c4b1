//! Metric names of the ingestion service.

use stockcast_proto::stockcast::events::v1::IngestPath;
use stockcast_proto::stockcast::types::v1::RejectReason;

use crate::store::Counts;

/// Bars processed, by `outcome` (accepted, duplicate, corrected, rejected) and `path`
/// (push, backfill).
pub const BARS: &str = "stockcast_ingestion_bars_total";
/// Bars rejected, by `reason` (the reject reason code name).
pub const REJECTIONS: &str = "stockcast_ingestion_rejections_total";
/// Backfill chunks done, by `source`.
pub const CHUNKS: &str = "stockcast_ingestion_backfill_chunks_total";

pub(crate) fn counted(counts: &Counts, path: IngestPath) {
    let path = match path {
        IngestPath::Push => "push",
        IngestPath::Backfill => "backfill",
        IngestPath::Unspecified => "unspecified",
    };
    for (outcome, n) in [
        ("accepted", counts.accepted),
        ("duplicate", counts.duplicate),
        ("corrected", counts.corrected),
        ("rejected", counts.rejected),
    ] {
        if n > 0 {
            metrics::counter!(BARS, "outcome" => outcome, "path" => path).increment(n as u64);
        }
    }
}

pub(crate) fn rejected(reason: RejectReason) {
    metrics::counter!(REJECTIONS, "reason" => reason.as_str_name()).increment(1);
}

pub(crate) fn chunk_done(source: &'static str) {
    metrics::counter!(CHUNKS, "source" => source).increment(1);
}
