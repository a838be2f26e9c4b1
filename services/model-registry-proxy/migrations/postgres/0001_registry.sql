-- Every alias change the proxy made or detected, in order. Rows are never changed or removed.
CREATE TABLE audit_log (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL,
    actor        text        NOT NULL,
    kind         text        NOT NULL,
    model_name   text        NOT NULL,
    alias        text        NOT NULL,
    from_version bigint      NOT NULL,
    to_version   bigint      NOT NULL,
    reason       text        NOT NULL,
    origin       text        NOT NULL
);

CREATE INDEX audit_log_by_model ON audit_log (model_name, alias, id DESC);
CREATE INDEX audit_log_by_time ON audit_log (occurred_at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;

CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- The aliases as last recorded, updated in the transaction of each audit entry: changes made
-- in the registry behind the proxy's back are what differs from it.
CREATE TABLE known_aliases (
    model_name text   NOT NULL,
    alias      text   NOT NULL,
    version    bigint NOT NULL,
    PRIMARY KEY (model_name, alias)
);

-- Audit entries up to this id have been published as model events (an outbox cursor: an
-- event whose publish failed is sent again by the next change or poll).
CREATE TABLE publish_cursor (
    id       integer PRIMARY KEY CHECK (id = 1),
    audit_id bigint  NOT NULL
);
INSERT INTO publish_cursor (id, audit_id) VALUES (1, 0);
