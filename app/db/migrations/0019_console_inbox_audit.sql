-- The console's Inbox and Audit log pages: each list is read newest first, a page at a time
-- (keyset), under a filter; these indexes let every page stop after its 51 rows instead of
-- sorting the whole table.

-- Inbox: newest first by (received_at, id), all deliveries or those in one status.
CREATE INDEX inbox_received_idx ON inbox (received_at, id);
CREATE INDEX inbox_status_received_idx ON inbox (status, received_at, id);

-- Audit log: by person, by action (exact, or a prefix such as 'console.': byte order, so a
-- prefix is one range of the index), by time, and a subject's story (a delivery's replays).
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
CREATE INDEX audit_log_action_idx ON audit_log ((action COLLATE "C"), id);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_subject_idx ON audit_log (subject, id);
