-- The console's Jobs page: each line of a Mechanic job's progress, kept as it is said in the
-- chat (written in the same transaction as the outbox row), and a notification whenever a
-- job has something new to show, so one LISTEN per process can feed every watcher.

CREATE TABLE job_events (
    seq    bigserial   PRIMARY KEY,               -- the SSE event id
    job_id text        NOT NULL REFERENCES jobs (id),
    at     timestamptz NOT NULL DEFAULT now(),
    kind   text        NOT NULL CHECK (kind IN ('queued', 'stage', 'note', 'finish')),
    text   text        NOT NULL                   -- the stage, the note, or 'ok' / 'failed'
);
CREATE INDEX job_events_job_idx ON job_events (job_id, seq);

CREATE FUNCTION job_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_events', NEW.job_id);
    RETURN NULL;
END $$;
CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_notify();

-- A status change (opened, failed, aborted, deployed …) is news for the job's watchers too.
CREATE FUNCTION jobs_status_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_events', NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_status_notify AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION jobs_status_notify();

-- The Jobs list: newest first, by status or by who asked, 50 a page (keyset on created_at, id).
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_status_created_idx ON jobs (status, created_at DESC, id DESC);
CREATE INDEX jobs_requested_by_created_idx ON jobs (requested_by, created_at DESC, id DESC);
