-- One owner per event id, whatever the event's time (issue 11: idempotency is by id, not by (id, time)).
-- The time-series tables must carry their time column in every unique key (partitions, hypertables), so they
-- cannot say "this id exists once"; this plain table does. A measurement id, reading id or request id belongs to
-- the first (user, fingerprint) that claims it: the same id again with the same fingerprint is a retry (stored
-- once, answered with the original result); with another user or another fingerprint (another time, value, unit
-- or source) it is a conflict (HTTP 409 at the gateway, a dead letter in a sink). Claimed by the gateway before it
-- produces and by each sink inside its batch transaction (streamhealth.EventIds).
CREATE TABLE IF NOT EXISTS streamhealth.event_ids (
  workload    text        NOT NULL,   -- 'weight', 'cgm-reading', 'forecast', ...
  event_id    text        NOT NULL,
  user_id     text        NOT NULL,
  fingerprint text        NOT NULL,   -- what the id stands for: the event's identifying content, hashed
  claimed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workload, event_id)
);
