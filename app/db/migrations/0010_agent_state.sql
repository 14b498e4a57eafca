-- The `state` capability: each dynamic agent's own key-value namespace, kept by the core
-- (the agent's process has no database). Size caps are enforced by app/agents/capabilities.py.
CREATE TABLE agent_state (
    agent      text        NOT NULL,
    key        text        NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    value      jsonb       NOT NULL,
    bytes      integer     NOT NULL CHECK (bytes >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, key)
);
