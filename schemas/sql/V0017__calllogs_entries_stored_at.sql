-- When each call-log entry row was written (issue 17), as calllogs.checkins has had since V0014: now() of the sink's
-- transaction. It dates an entry's arrival (what the end-to-end latency of a webhook is measured to, benchmarks/RESULTS.md)
-- apart from the call's own time, event_time. Existing rows get the time of this migration.
ALTER TABLE calllogs.medication_entries ADD COLUMN IF NOT EXISTS stored_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE calllogs.food_entries ADD COLUMN IF NOT EXISTS stored_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE calllogs.symptom_entries ADD COLUMN IF NOT EXISTS stored_at timestamptz NOT NULL DEFAULT now();
