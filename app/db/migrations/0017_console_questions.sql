-- The console's Questions page.
--
-- An answer given in the console is a delivery like a Telegram button press: stored in the
-- inbox (source 'console', event 'answer') and processed by a worker with the same claim.
-- Only the console's own POST, behind its session and CSRF token, writes such rows.
ALTER TABLE inbox DROP CONSTRAINT inbox_source_check;
ALTER TABLE inbox ADD CONSTRAINT inbox_source_check
    CHECK (source IN ('github', 'telegram', 'console'));

-- `decided_via` names the surface that answered (telegram, terminal, github, console); NULL
-- for decisions made before it, and for questions closed by a deploy or a merge.
ALTER TABLE approvals ADD COLUMN decided_via text;

-- Recently closed questions, newest first (the open ones are few: approvals_open_idx).
CREATE INDEX approvals_decided_at_idx ON approvals (decided_at DESC) WHERE status <> 'pending';
