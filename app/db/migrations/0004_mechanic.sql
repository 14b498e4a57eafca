-- Mechanic jobs and the local forge's pull requests.

CREATE TABLE jobs (
    id           text PRIMARY KEY,
    conversation text        NOT NULL,
    requested_by text        NOT NULL,
    request      text        NOT NULL,
    status       text        NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'question', 'opened', 'failed', 'refused',
                                   'aborted', 'deployed')),
    plan         jsonb,
    branch       text,
    pr_number    integer,
    rounds       integer     NOT NULL DEFAULT 0,
    cost         numeric(12, 6) NOT NULL DEFAULT 0,
    transcript   text,
    message      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The local forge: pull requests for branches of the bare repository in PERSAIS_HOME.
CREATE TABLE pull_requests (
    number     serial PRIMARY KEY,
    repository text        NOT NULL,
    job_id     text UNIQUE,              -- one pull request per job, ever
    branch     text        NOT NULL,
    base       text        NOT NULL,
    head_sha   text        NOT NULL,
    title      text        NOT NULL,
    body       text        NOT NULL,
    state      text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'merged')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
