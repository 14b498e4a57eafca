-- Grants are part of a release's ledger entry: agent name -> the `[permissions.*]` tables of
-- its manifest as the core read them when the release was cut (`app.agents.grants`). Written
-- once with the row, never changed (the table stays append-only). NULL: a release cut before
-- grants were recorded; it is taken to grant nothing.
ALTER TABLE releases ADD COLUMN grants jsonb;

-- Whether whoever answered a question was an admin where they answered: a Deploy whose
-- release adds or widens a grant needs an admin's press, and the deploy runs later, in a
-- worker, from the recorded decision.
ALTER TABLE approvals ADD COLUMN decided_by_admin boolean NOT NULL DEFAULT false;
