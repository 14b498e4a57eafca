-- The console (/console): one-time login links and server-side sessions.
-- Only hashes of the secrets are kept: a reader of this table cannot log in with it.
CREATE TABLE console_links (
    token_hash  bytea       PRIMARY KEY,          -- sha256 of the link's token
    person      text        NOT NULL,             -- who the session will be, e.g. 'cli:ada'
    role        text        NOT NULL CHECK (role IN ('admin', 'reader')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz                       -- set once: a link logs in one time
);

CREATE TABLE console_sessions (
    id_hash      bytea       PRIMARY KEY,         -- sha256 of the cookie's value
    person       text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('admin', 'reader')),
    csrf         text        NOT NULL,            -- the token every action must carry
    via          text        NOT NULL,            -- 'link' or 'github'
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE INDEX console_links_expiry ON console_links (expires_at);

-- "Sign in with GitHub": the state sent to GitHub, checked once when it comes back.
CREATE TABLE console_oauth_states (
    state_hash  bytea       PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
