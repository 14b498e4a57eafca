-- Mechanic jobs from the chat: queued, run by a worker, abortable, resumable; and the outbox
-- through which any process speaks into a conversation another process serves.

ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN (
    'proposed', 'queued', 'running', 'question', 'answered', 'opened', 'failed', 'refused', 'aborted',
    'deployed'));
ALTER TABLE jobs
    ADD COLUMN stage              text,
    ADD COLUMN attempts           integer NOT NULL DEFAULT 0,  -- runs started (> 1: resumed)
    ADD COLUMN abort_requested_at timestamptz,
    ADD COLUMN abort_requested_by text,
    ADD COLUMN pr_url             text,
    ADD COLUMN aider_seconds      real    NOT NULL DEFAULT 0,  -- Aider's own time, all rounds
    ADD COLUMN approval           text,                       -- the [Deploy] [Abort] question
    ADD COLUMN told_at            timestamptz,                -- its ending is in the outbox
    ADD COLUMN template_only      boolean NOT NULL DEFAULT false,
    ADD COLUMN given_plan         jsonb;                      -- a plan decided before the job
CREATE INDEX jobs_conversation_idx ON jobs (conversation, created_at DESC);

-- One row per message to show; a keyed row (a job's progress) is edited in place: each
-- change bumps `version`, and a channel shows the latest version once.
CREATE TABLE outbox (
    id                bigserial PRIMARY KEY,
    conversation      text        NOT NULL,
    key               text UNIQUE,
    text              text        NOT NULL,
    approval          text REFERENCES approvals (id),
    version           integer     NOT NULL DEFAULT 1,
    delivered_version integer     NOT NULL DEFAULT 0,
    channel_ref       jsonb,                       -- where it is shown, to edit it later
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_undelivered_idx ON outbox (conversation, id)
    WHERE delivered_version < version;
