//! A backfill job's records: what it loads, where it is, what it did.

use serde::{Deserialize, Serialize};
use stockcast_market::sources::BackfillSpec;

use crate::ingest::Counts;

/// Lifecycle of a backfill job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, not started.
    Pending,
    /// Being worked on (or interrupted, to be resumed at start).
    Running,
    /// Every chunk done.
    Succeeded,
    /// Stopped on an error that retrying will not fix.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobState {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name; an unknown one is returned as the error.
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => return Err(format!("job state {other:?}")),
        })
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A backfill job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Job id.
    pub id: uuid::Uuid,
    /// Client idempotency key.
    pub request_id: Option<String>,
    /// What it loads.
    pub spec: BackfillSpec,
    /// Where it is.
    pub state: JobState,
    /// Chunks in the plan (0 until planned).
    pub chunks_total: i64,
    /// Chunks done.
    pub chunks_done: i64,
    /// What its chunks did.
    pub counts: Counts,
    /// Seconds since epoch, UTC.
    pub created_at: i64,
    /// Seconds since epoch, UTC.
    pub started_at: Option<i64>,
    /// Seconds since epoch, UTC.
    pub finished_at: Option<i64>,
    /// Seconds since epoch, UTC.
    pub updated_at: i64,
    /// Times it was resumed after an interruption.
    pub resumes: i32,
    /// Last error, empty if none.
    pub error: String,
}

/// A change to a job's bookkeeping.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobUpdate {
    /// Applies the change only if the job is in this state (a compare-and-set: of two
    /// workers claiming a pending job, one wins).
    pub only_from: Option<JobState>,
    /// New state.
    pub state: Option<JobState>,
    /// Plan size.
    pub chunks_total: Option<i64>,
    /// Sets `started_at` to now if unset.
    pub started: bool,
    /// Sets `finished_at` to now.
    pub finished: bool,
    /// Adds one to `resumes`.
    pub resumed: bool,
    /// New error text.
    pub error: Option<String>,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs loading this symbol.
    pub symbol: Option<String>,
    /// Jobs created before this job (for paging, newest first; ids are UUIDv7, time-ordered).
    pub before: Option<uuid::Uuid>,
    /// At most this many.
    pub limit: i64,
}
