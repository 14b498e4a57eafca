-- Releases: which commit of `dynamic/` runs. An append-only ledger (a release is never
-- changed or removed) and its append-only history of states; the release in service is the
-- one whose latest state is `live`.

CREATE TABLE releases (
    id           bigserial PRIMARY KEY,
    sha          text,                          -- the merge commit; NULL for the image's own
    source       text        NOT NULL CHECK (source IN ('image', 'merge')),
    repository   text        NOT NULL,
    pr_number    integer,
    job_id       text,
    pressed_by   text        NOT NULL,          -- who pressed Deploy
    conversation text,                          -- where to tell how it went
    previous     bigint REFERENCES releases (id),  -- the release in service when it was cut
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX releases_once_per_pull ON releases (repository, pr_number)
    WHERE source = 'merge';
CREATE UNIQUE INDEX releases_one_image ON releases (source) WHERE source = 'image';

CREATE TABLE release_events (
    id         bigserial PRIMARY KEY,
    release    bigint      NOT NULL REFERENCES releases (id),
    status     text        NOT NULL
               CHECK (status IN ('cut', 'loading', 'live', 'failed', 'superseded', 'rolled_back')),
    actor      text        NOT NULL,
    reason     text,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX release_events_release_idx ON release_events (release, id DESC);
CREATE INDEX release_events_live_idx ON release_events (id DESC) WHERE status = 'live';

CREATE FUNCTION releases_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER releases_no_update_delete BEFORE UPDATE OR DELETE ON releases
    FOR EACH ROW EXECUTE FUNCTION releases_are_append_only();
CREATE TRIGGER releases_no_truncate BEFORE TRUNCATE ON releases
    FOR EACH STATEMENT EXECUTE FUNCTION releases_are_append_only();
CREATE TRIGGER release_events_no_update_delete BEFORE UPDATE OR DELETE ON release_events
    FOR EACH ROW EXECUTE FUNCTION releases_are_append_only();
CREATE TRIGGER release_events_no_truncate BEFORE TRUNCATE ON release_events
    FOR EACH STATEMENT EXECUTE FUNCTION releases_are_append_only();

-- The head the Mechanic validated: Deploy refuses a pull request whose head moved since.
ALTER TABLE jobs ADD COLUMN head_sha text;

-- The local forge merges too (squash, like GitHub).
ALTER TABLE pull_requests ADD COLUMN merge_sha text;
