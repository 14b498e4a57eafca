-- Quiet reviews (issue 20): `/pause` per pull request, `/ignore` remembered, and which
-- findings went to the collapsed digest.

-- A paused pull request gets no automatic review (opened, synchronize, ...); `/review`
-- still reviews it. `/resume` deletes the row.
CREATE TABLE review_pauses (
    repository  text        NOT NULL,          -- owner/name
    pull_number integer     NOT NULL,
    paused_by   text        NOT NULL,          -- github:<login>
    paused_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, pull_number)
);

-- Findings a writer dismissed (`/ignore` in the thread of a review comment). GitHub holds
-- the same (the reply, the 👎) and is read back on each review; this copy is for the
-- console and for a GitHub that cannot be read.
CREATE TABLE review_ignores (
    repository  text        NOT NULL,
    pull_number integer     NOT NULL,
    fingerprint text        NOT NULL,
    ignored_by  text        NOT NULL,
    comment_id  bigint      NOT NULL,          -- the Persais review comment answered
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, pull_number, fingerprint)
);

-- A minor finding (the digest): remembered so it is not said again, but it does not count
-- for the check run's verdict.
ALTER TABLE review_findings ADD COLUMN digest boolean NOT NULL DEFAULT false;
