-- Same shape as the PostgreSQL schema; times are seconds since epoch, UTC.
CREATE TABLE bars (
    symbol      TEXT    NOT NULL,
    interval    TEXT    NOT NULL,
    ts          INTEGER NOT NULL,
    open        REAL    NOT NULL,
    high        REAL    NOT NULL,
    low         REAL    NOT NULL,
    close       REAL    NOT NULL,
    volume      REAL    NOT NULL,
    source      TEXT    NOT NULL,
    revision    INTEGER NOT NULL DEFAULT 0,
    ingested_at INTEGER NOT NULL DEFAULT (unixepoch()),
    PRIMARY KEY (symbol, interval, ts)
) WITHOUT ROWID;

CREATE TABLE corrections (
    symbol       TEXT    NOT NULL,
    interval     TEXT    NOT NULL,
    ts           INTEGER NOT NULL,
    revision     INTEGER NOT NULL,
    old_open     REAL    NOT NULL,
    old_high     REAL    NOT NULL,
    old_low      REAL    NOT NULL,
    old_close    REAL    NOT NULL,
    old_volume   REAL    NOT NULL,
    new_open     REAL    NOT NULL,
    new_high     REAL    NOT NULL,
    new_low      REAL    NOT NULL,
    new_close    REAL    NOT NULL,
    new_volume   REAL    NOT NULL,
    source       TEXT    NOT NULL,
    corrected_at INTEGER NOT NULL DEFAULT (unixepoch()),
    PRIMARY KEY (symbol, interval, ts, revision)
);

CREATE TABLE backfill_jobs (
    job_id         TEXT    PRIMARY KEY,
    request_id     TEXT    UNIQUE,
    spec           TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    chunks_total   INTEGER NOT NULL DEFAULT 0,
    chunks_done    INTEGER NOT NULL DEFAULT 0,
    bars_accepted  INTEGER NOT NULL DEFAULT 0,
    bars_rejected  INTEGER NOT NULL DEFAULT 0,
    bars_duplicate INTEGER NOT NULL DEFAULT 0,
    bars_corrected INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL DEFAULT (unixepoch()),
    started_at     INTEGER,
    finished_at    INTEGER,
    updated_at     INTEGER NOT NULL DEFAULT (unixepoch()),
    resumes        INTEGER NOT NULL DEFAULT 0,
    error          TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE backfill_chunks (
    job_id    TEXT    NOT NULL REFERENCES backfill_jobs (job_id) ON DELETE CASCADE,
    chunk_key TEXT    NOT NULL,
    done_at   INTEGER NOT NULL DEFAULT (unixepoch()),
    PRIMARY KEY (job_id, chunk_key)
);
