-- What each model call used and cost, for the work it was made for: a review, a pull
-- request's description, a Mechanic job, a question to the memory. One row per call (a chat
-- completion, or one call Aider reported). Tokens are as the answer reported them (NULL: it
-- said nothing); cost_usd is the provider's figure, else the configured price, else NULL:
-- unknown, never guessed. Budgets sum these rows (per subject, and since midnight UTC).

CREATE TABLE model_costs (
    id                bigserial   PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    kind              text        NOT NULL CHECK (kind IN ('review', 'describe', 'job', 'ask')),
    subject           text        NOT NULL,       -- reviews.id, jobs.id, …
    model             text        NOT NULL,
    source            text        NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'aider')),
    prompt_tokens     integer     CHECK (prompt_tokens >= 0),
    completion_tokens integer     CHECK (completion_tokens >= 0),
    cost_usd          numeric(12, 6) CHECK (cost_usd >= 0)
);
CREATE INDEX model_costs_subject_idx ON model_costs (kind, subject);
CREATE INDEX model_costs_at_idx ON model_costs (at);
