-- Call-log change data capture by polling (issue 17), beside the signed webhook.
--
-- calllogs.provider_calls is the ledger of every provider call StreamHealth has taken up, whichever way it came: the poller
-- records a call once its notice is on calllogs.raw (noticed_at), the fetch worker once its transcript is on calllogs.calls
-- (fetched_at). The poller lists only calls missing here, and the fetch worker fetches a call only when it has no fetched_at,
-- so a webhook and a poll of the same call (cdc_mode hybrid), an overlapping or repeated listing page, or a restart never
-- fetch and publish a call twice. Rows are kept 30 days (calllogs.prune_provider_calls), far past the poller's look-back.
CREATE TABLE IF NOT EXISTS calllogs.provider_calls (
  provider     text        NOT NULL,
  call_id      text        NOT NULL,
  completed_at timestamptz,              -- when the call ended, as the provider says (null until known)
  origin       text        NOT NULL CHECK (origin IN ('webhook', 'polling', 'unspecified')),
  noticed_at   timestamptz,              -- the poller's notice was acknowledged on calllogs.raw
  fetched_at   timestamptz,              -- the transcript was acknowledged on calllogs.calls
  PRIMARY KEY (provider, call_id)
);
CREATE INDEX IF NOT EXISTS provider_calls_age ON calllogs.provider_calls (coalesce(fetched_at, noticed_at));

-- One row per polled provider: the end time up to which every listed call has been taken up. The poller lists from there less
-- its look-back (calls the provider lists late), and moves it on only after a whole listing was taken up, so that a restart
-- starts where the last complete poll ended: the ledger removes what the look-back lists again.
CREATE TABLE IF NOT EXISTS calllogs.poll_cursors (
  provider        text        PRIMARY KEY,
  completed_since timestamptz NOT NULL,
  polled_at       timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION calllogs.prune_provider_calls(as_of timestamptz DEFAULT now(), keep interval DEFAULT interval '30 days')
RETURNS bigint LANGUAGE sql AS $fn$
  WITH gone AS (DELETE FROM calllogs.provider_calls WHERE coalesce(fetched_at, noticed_at) <= as_of - keep RETURNING 1)
  SELECT count(*) FROM gone;
$fn$;
