-- Every alias change the proxy made or detected, in order. Rows are never changed or removed.
CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at_ms INTEGER NOT NULL,
    actor          TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    model_name     TEXT    NOT NULL,
    alias          TEXT    NOT NULL,
    from_version   INTEGER NOT NULL,
    to_version     INTEGER NOT NULL,
    reason         TEXT    NOT NULL,
    origin         TEXT    NOT NULL
);

CREATE INDEX audit_log_by_model ON audit_log (model_name, alias, id DESC);
CREATE INDEX audit_log_by_time ON audit_log (occurred_at_ms);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- The aliases as last recorded, updated in the transaction of each audit entry.
CREATE TABLE known_aliases (
    model_name TEXT    NOT NULL,
    alias      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    PRIMARY KEY (model_name, alias)
);

-- Audit entries up to this id have been published as model events (an outbox cursor).
CREATE TABLE publish_cursor (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    audit_id INTEGER NOT NULL
);
INSERT INTO publish_cursor (id, audit_id) VALUES (1, 0);
