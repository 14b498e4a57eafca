-- Retention (app/retention): what the periodic prune looks for, found by index and in
-- bounded batches instead of by scanning the whole table each run.

-- Deliveries closed long enough ago to go (open and dead ones are never pruned).
CREATE INDEX inbox_closed_idx ON inbox (processed_at) WHERE status IN ('processed', 'ignored');

-- Messages every version of which has been shown.
CREATE INDEX outbox_shown_idx ON outbox (updated_at) WHERE delivered_version >= version;
