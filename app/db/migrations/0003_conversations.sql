-- Conversations and approvals. The conversation state itself lives in LangGraph's
-- checkpoint tables (created by AsyncPostgresSaver.setup at start); these tables are what
-- the rest of Persais needs to find and show.

CREATE TABLE conversations (
    id          text PRIMARY KEY,            -- the thread: tg:<chat>, cli:<name>, gh:<repo>#<n>
    channel     text        NOT NULL,
    last_user   text        NOT NULL,
    mode        text,
    messages    integer     NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_last_at_idx ON conversations (last_at DESC);

-- A question with buttons. `id` is short: it travels in Telegram's 64-byte callback_data.
-- The decision is resumed into the LangGraph thread `approval:<id>`.
CREATE TABLE approvals (
    id           text PRIMARY KEY,
    conversation text        NOT NULL,
    agent        text        NOT NULL,
    question     text        NOT NULL,
    prompt       text        NOT NULL,
    choices      jsonb       NOT NULL,
    requested_by text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'decided', 'expired')),
    choice       text,
    decided_by   text,
    decided_at   timestamptz,
    delivered_at timestamptz,               -- the decision reached the agent
    channel_ref  jsonb,                     -- where the question is shown, to edit it later
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX approvals_open_idx ON approvals (expires_at) WHERE status = 'pending';
CREATE INDEX approvals_undelivered_idx ON approvals (decided_at)
    WHERE status <> 'pending' AND delivered_at IS NULL;
