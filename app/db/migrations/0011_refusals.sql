-- One refusal per stranger per window (PERSAIS_REFUSAL_WINDOW_SECONDS): the window's start
-- and how many of their requests it has refused, the answered one included. A stranger who
-- writes fifty times is answered and audited once; the next window's audit row says how
-- many were refused quietly before it.
CREATE TABLE refusals (
    who     text        PRIMARY KEY,  -- 'tg:<user id>' or 'github:<login>@<owner>/<repo>'
    since   timestamptz NOT NULL,
    refused integer     NOT NULL CHECK (refused >= 1)
);
