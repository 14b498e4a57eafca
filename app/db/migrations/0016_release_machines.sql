-- How a release went on each Fly machine: one row per thing that happened to a machine while
-- the deployer moved it onto the release (or back off it). Appended by app/deploy/machines.py,
-- read by the console's release page. The local deployer moves no machine and writes none.
CREATE TABLE release_machines (
    id       bigserial   PRIMARY KEY,
    release  bigint      NOT NULL REFERENCES releases (id),
    machine  text        NOT NULL,              -- the Fly machine's id
    name     text        NOT NULL DEFAULT '',
    outcome  text        NOT NULL
             CHECK (outcome IN ('updating', 'on', 'restarting', 'failed', 'put_back',
                                'not_put_back')),
    detail   text,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX release_machines_release_idx ON release_machines (release, id);
