-- Raw bars as accepted, one row per (symbol, interval, open time); revision counts corrections.
CREATE TABLE bars (
    symbol      text             NOT NULL,
    interval    text             NOT NULL,
    ts          timestamptz      NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      double precision NOT NULL,
    source      text             NOT NULL,
    revision    integer          NOT NULL DEFAULT 0,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval, ts)
);

-- Every correction: the values a revision replaced and the ones it brought.
CREATE TABLE corrections (
    symbol       text             NOT NULL,
    interval     text             NOT NULL,
    ts           timestamptz      NOT NULL,
    revision     integer          NOT NULL,
    old_open     double precision NOT NULL,
    old_high     double precision NOT NULL,
    old_low      double precision NOT NULL,
    old_close    double precision NOT NULL,
    old_volume   double precision NOT NULL,
    new_open     double precision NOT NULL,
    new_high     double precision NOT NULL,
    new_low      double precision NOT NULL,
    new_close    double precision NOT NULL,
    new_volume   double precision NOT NULL,
    source       text             NOT NULL,
    corrected_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval, ts, revision)
);

CREATE TABLE backfill_jobs (
    job_id         uuid        PRIMARY KEY,
    request_id     text        UNIQUE,
    spec           jsonb       NOT NULL,
    state          text        NOT NULL,
    chunks_total   bigint      NOT NULL DEFAULT 0,
    chunks_done    bigint      NOT NULL DEFAULT 0,
    bars_accepted  bigint      NOT NULL DEFAULT 0,
    bars_rejected  bigint      NOT NULL DEFAULT 0,
    bars_duplicate bigint      NOT NULL DEFAULT 0,
    bars_corrected bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    resumes        integer     NOT NULL DEFAULT 0,
    error          text        NOT NULL DEFAULT ''
);

-- A chunk is recorded in the same transaction as its bars: a restarted job skips it.
CREATE TABLE backfill_chunks (
    job_id    uuid        NOT NULL REFERENCES backfill_jobs (job_id) ON DELETE CASCADE,
    chunk_key text        NOT NULL,
    done_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, chunk_key)
);
