-- The service spine: pgvector, the webhook inbox, GitHub App installations, the audit log.

CREATE EXTENSION IF NOT EXISTS vector;

-- Every verified delivery, exactly once per (source, delivery_id). The worker moves a row
-- through received -> processed | ignored, or failed (will retry) -> dead (gave up).
CREATE TABLE inbox (
    id            bigserial PRIMARY KEY,
    source        text        NOT NULL CHECK (source IN ('github', 'telegram')),
    delivery_id   text        NOT NULL,
    event         text        NOT NULL,
    action        text,
    payload       jsonb       NOT NULL,
    status        text        NOT NULL DEFAULT 'received'
                  CHECK (status IN ('received', 'processed', 'ignored', 'failed', 'dead')),
    attempts      integer     NOT NULL DEFAULT 0,
    handled_count integer     NOT NULL DEFAULT 0,
    last_error    text,
    received_at   timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz,
    processed_by  text,
    UNIQUE (source, delivery_id)
);
CREATE INDEX inbox_open_idx ON inbox (status) WHERE status IN ('received', 'failed', 'dead');

CREATE TABLE installations (
    id                   bigint PRIMARY KEY,
    account_login        text        NOT NULL,
    account_type         text        NOT NULL,
    target_type          text,
    repository_selection text,
    permissions          jsonb       NOT NULL DEFAULT '{}',
    events               jsonb       NOT NULL DEFAULT '[]',
    suspended_at         timestamptz,
    deleted_at           timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE installation_repositories (
    installation_id bigint NOT NULL REFERENCES installations (id) ON DELETE CASCADE,
    repository_id   bigint NOT NULL,
    full_name       text   NOT NULL,
    private         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (installation_id, repository_id)
);

-- Append-only: the database itself refuses to change or remove a row.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    subject text,
    detail  jsonb       NOT NULL DEFAULT '{}'
);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
