-- The offline store of the feature store, in the service's own schema.
-- Key text columns compare by bytes (COLLATE "C"): cheaper index comparisons than a
-- locale's, and the same order as the service's own sorting.

-- Bars the service consumed, one row per (symbol, interval, open time).
CREATE TABLE bars (
    symbol   text COLLATE "C" NOT NULL,
    interval text COLLATE "C" NOT NULL,
    ts       timestamptz      NOT NULL,
    open     double precision NOT NULL,
    high     double precision NOT NULL,
    low      double precision NOT NULL,
    close    double precision NOT NULL,
    volume   double precision NOT NULL,
    PRIMARY KEY (symbol, interval, ts)
);

-- The canonical definition (JSON) of each view version served, recorded once.
CREATE TABLE views (
    view          text COLLATE "C" NOT NULL,
    version       integer     NOT NULL CHECK (version >= 1),
    definition    text        NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (view, version)
);

-- Every feature vector; values in the view's feature order, NaN = absent.
-- The primary key drives point-in-time lookups (latest event_time <= as-of).
CREATE TABLE feature_rows (
    view       text COLLATE "C" NOT NULL,
    version    integer            NOT NULL CHECK (version >= 1),
    symbol     text COLLATE "C" NOT NULL,
    event_time timestamptz        NOT NULL,
    values     double precision[] NOT NULL,
    PRIMARY KEY (view, version, symbol, event_time)
);

-- Per (view version, symbol): the indicator state after the last bar folded in.
CREATE TABLE view_states (
    view        text COLLATE "C" NOT NULL,
    version     integer     NOT NULL CHECK (version >= 1),
    symbol      text COLLATE "C" NOT NULL,
    last_bar_ts timestamptz NOT NULL,
    bars_seen   bigint      NOT NULL,
    state       bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (view, version, symbol)
);

CREATE TABLE materialization_jobs (
    job_id          uuid        PRIMARY KEY,
    request_id      text        UNIQUE,
    view            text COLLATE "C" NOT NULL,
    version         integer     NOT NULL,
    symbols         text[]      NOT NULL,
    from_ts         timestamptz NOT NULL,
    until_ts        timestamptz NOT NULL,
    chunk_seconds   bigint      NOT NULL,
    state           text        NOT NULL,
    chunks_done     bigint      NOT NULL DEFAULT 0,
    chunks_total    bigint      NOT NULL,
    bars_read       bigint      NOT NULL DEFAULT 0,
    vectors_written bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL,
    error           text
);

CREATE INDEX materialization_jobs_unfinished
    ON materialization_jobs (created_at, job_id)
    WHERE state IN ('pending', 'running');

-- A chunk is recorded in the same transaction as its rows: a resumed job skips it and
-- continues from the state stored after it.
CREATE TABLE materialization_chunks (
    job_id          uuid        NOT NULL REFERENCES materialization_jobs (job_id) ON DELETE CASCADE,
    chunk           bigint      NOT NULL,
    state           bytea       NOT NULL,
    bars_read       bigint      NOT NULL,
    vectors_written bigint      NOT NULL,
    done_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, chunk)
);
