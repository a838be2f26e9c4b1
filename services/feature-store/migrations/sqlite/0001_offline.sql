-- Same shape as the PostgreSQL schema; times are seconds since epoch, UTC; a feature
-- vector is a BLOB of little-endian f64 (NaN survives, which a REAL column would not keep).

CREATE TABLE bars (
    symbol   TEXT    NOT NULL,
    interval TEXT    NOT NULL,
    ts       INTEGER NOT NULL,
    open     REAL    NOT NULL,
    high     REAL    NOT NULL,
    low      REAL    NOT NULL,
    close    REAL    NOT NULL,
    volume   REAL    NOT NULL,
    PRIMARY KEY (symbol, interval, ts)
) WITHOUT ROWID;

CREATE TABLE views (
    view          TEXT    NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    definition    TEXT    NOT NULL,
    registered_at INTEGER NOT NULL DEFAULT (unixepoch()),
    PRIMARY KEY (view, version)
) WITHOUT ROWID;

CREATE TABLE feature_rows (
    view       TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    symbol     TEXT    NOT NULL,
    event_time INTEGER NOT NULL,
    vals       BLOB    NOT NULL,
    PRIMARY KEY (view, version, symbol, event_time)
) WITHOUT ROWID;

CREATE TABLE view_states (
    view        TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    symbol      TEXT    NOT NULL,
    last_bar_ts INTEGER NOT NULL,
    bars_seen   INTEGER NOT NULL,
    state       BLOB    NOT NULL,
    updated_at  INTEGER NOT NULL DEFAULT (unixepoch()),
    PRIMARY KEY (view, version, symbol)
) WITHOUT ROWID;

CREATE TABLE materialization_jobs (
    job_id          TEXT    PRIMARY KEY,
    request_id      TEXT    UNIQUE,
    view            TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    symbols         TEXT    NOT NULL, -- JSON array
    from_ts         INTEGER NOT NULL,
    until_ts        INTEGER NOT NULL,
    chunk_seconds   INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    chunks_done     INTEGER NOT NULL DEFAULT 0,
    chunks_total    INTEGER NOT NULL,
    bars_read       INTEGER NOT NULL DEFAULT 0,
    vectors_written INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    updated_at      INTEGER NOT NULL,
    error           TEXT
);

CREATE INDEX materialization_jobs_unfinished
    ON materialization_jobs (created_at, job_id)
    WHERE state IN ('pending', 'running');

CREATE TABLE materialization_chunks (
    job_id          TEXT    NOT NULL REFERENCES materialization_jobs (job_id) ON DELETE CASCADE,
    chunk           INTEGER NOT NULL,
    state           BLOB    NOT NULL,
    bars_read       INTEGER NOT NULL,
    vectors_written INTEGER NOT NULL,
    done_at         INTEGER NOT NULL DEFAULT (unixepoch()),
    PRIMARY KEY (job_id, chunk)
) WITHOUT ROWID;
