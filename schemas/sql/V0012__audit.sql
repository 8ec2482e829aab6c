-- Audit trail of personal data (issue 15): every read and write of a person's data through the gateway appends one row
-- (time, actor, subject, action, resource, outcome). Rows are hash-chained: hash = SHA-256 over a canonical encoding of
-- the row and the previous row's hash (processors/Runtime/Audit/AuditChain.cs), so `streamhealth audit verify` finds a
-- changed row (its hash no longer matches) and a deleted one (a gap in seq, or a prev_hash that matches nothing).
CREATE SCHEMA IF NOT EXISTS audit;

-- seq is assigned by the writer, not by a sequence: under the writers' advisory lock it is the last row's seq + 1, so the
-- chain has no gaps of its own (a sequence loses values to rolled-back transactions, which verify could not tell from a
-- deleted row).
CREATE TABLE IF NOT EXISTS audit.events (
  seq       bigint      PRIMARY KEY CHECK (seq >= 1),
  at        timestamptz NOT NULL,
  actor     text        NOT NULL CHECK (length(actor) <= 200),      -- user:<id>, service:<key name>, anonymous
  subject   text        NOT NULL CHECK (length(subject) <= 128),    -- the person's user id; '' when not one person
  action    text        NOT NULL CHECK (action IN ('read', 'write', 'delete')),
  resource  text        NOT NULL CHECK (length(resource) <= 600),   -- method, route pattern, concrete path
  outcome   int         NOT NULL,                                   -- the HTTP status answered
  prev_hash bytea       NOT NULL CHECK (length(prev_hash) = 32),
  hash      bytea       NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX IF NOT EXISTS events_subject_at ON audit.events (subject, at);
CREATE INDEX IF NOT EXISTS events_at ON audit.events (at);

-- Where retention pruning cut the chain: the last pruned row's seq and hash. Verify starts from the latest anchor, so a
-- pruned chain still verifies, and a row deleted just after the cut is still a gap.
CREATE TABLE IF NOT EXISTS audit.anchors (
  through_seq bigint      PRIMARY KEY,
  hash        bytea       NOT NULL CHECK (length(hash) = 32),
  pruned_rows bigint      NOT NULL,
  pruned_at   timestamptz NOT NULL DEFAULT now()
);

-- Append-only: UPDATE, DELETE and TRUNCATE are refused, except the DELETE of audit.prune (which sets
-- streamhealth.audit_prune for its own transaction). A superuser can still switch triggers off
-- (session_replication_role = replica); the hash chain is what catches that.
CREATE OR REPLACE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'events' AND current_setting('streamhealth.audit_prune', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit.% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

DROP TRIGGER IF EXISTS events_append_only ON audit.events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON audit.events FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
DROP TRIGGER IF EXISTS events_no_truncate ON audit.events;
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON audit.events FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
DROP TRIGGER IF EXISTS anchors_append_only ON audit.anchors;
CREATE TRIGGER anchors_append_only BEFORE UPDATE OR DELETE ON audit.anchors FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
DROP TRIGGER IF EXISTS anchors_no_truncate ON audit.anchors;
CREATE TRIGGER anchors_no_truncate BEFORE TRUNCATE ON audit.anchors FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- Retention: deletes the oldest rows recorded before cutoff, as a prefix of the chain (a row newer than the cutoff stops
-- it, so the chain stays contiguous), and records the anchor. Takes the writers' advisory lock (AuditChain.LockKey), so
-- no append interleaves. SECURITY DEFINER: a role allowed to prune needs EXECUTE on this, not DELETE on the table.
CREATE OR REPLACE FUNCTION audit.prune(cutoff timestamptz) RETURNS TABLE (pruned_rows bigint, through_seq bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = audit, pg_temp AS $$
DECLARE
  cut bigint;
  cut_hash bytea;
  removed bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(23441868507597140);   -- AuditChain.LockKey ("SHAUDIT")
  SELECT coalesce((SELECT min(e.seq) - 1 FROM audit.events e WHERE e.at >= cutoff), (SELECT max(e.seq) FROM audit.events e)) INTO cut;
  IF cut IS NULL OR NOT EXISTS (SELECT 1 FROM audit.events e WHERE e.seq <= cut) THEN
    RETURN QUERY SELECT 0::bigint, NULL::bigint;
    RETURN;
  END IF;
  SELECT e.hash INTO cut_hash FROM audit.events e WHERE e.seq = cut;
  PERFORM set_config('streamhealth.audit_prune', 'on', true);
  DELETE FROM audit.events e WHERE e.seq <= cut;
  GET DIAGNOSTICS removed = ROW_COUNT;
  PERFORM set_config('streamhealth.audit_prune', 'off', true);
  INSERT INTO audit.anchors (through_seq, hash, pruned_rows) VALUES (cut, cut_hash, removed);
  RETURN QUERY SELECT removed, cut;
END $$;

REVOKE UPDATE, DELETE, TRUNCATE ON audit.events, audit.anchors FROM PUBLIC;
