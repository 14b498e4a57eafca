-- The GitHub App's reviews and what they said, so a re-review does not repeat itself and a
-- newer push supersedes a review still running for an older head.

CREATE TABLE reviews (
    id           bigserial PRIMARY KEY,
    repository   text        NOT NULL,          -- owner/name
    pull_number  integer     NOT NULL,
    head_sha     text        NOT NULL,
    since_sha    text,                          -- a re-review: the head reviewed before
    trigger      text        NOT NULL,          -- opened, synchronize, ..., or "command"
    delivery     text        NOT NULL UNIQUE,   -- the delivery (or command) that asked for it
    status       text        NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'posted', 'superseded', 'skipped',
                                   'failed')),
    reason       text,                          -- why it was skipped, superseded or failed
    check_run_id bigint,
    review_id    bigint,
    conclusion   text,
    comments     integer     NOT NULL DEFAULT 0,
    findings     integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX reviews_pull_idx ON reviews (repository, pull_number, id DESC);

-- Every finding said on a pull request, by fingerprint (source, rule, the line's text).
CREATE TABLE review_findings (
    repository  text     NOT NULL,
    pull_number integer  NOT NULL,
    fingerprint text     NOT NULL,
    review      bigint   NOT NULL REFERENCES reviews (id),
    path        text     NOT NULL,
    line        integer,
    severity    text     NOT NULL,
    PRIMARY KEY (repository, pull_number, fingerprint)
);

-- Things said once: a refusal to one comment, a broken config file at one blob.
CREATE TABLE github_notices (
    key text PRIMARY KEY,
    at  timestamptz NOT NULL DEFAULT now()
);

-- Mechanic jobs asked from GitHub: a fix on an existing pull request's branch.
ALTER TABLE jobs ADD COLUMN kind text NOT NULL DEFAULT 'create' CHECK (kind IN ('create', 'fix'));
ALTER TABLE jobs ADD COLUMN target_pr integer;

-- Link buttons under a message that asks nothing (GitHub news: [View PR]).
ALTER TABLE outbox ADD COLUMN links jsonb;
