-- Call-log check-ins (issue 17): each extracted call (calllogs.checkins) and its entries (calllogs.entries), one table per
-- kind so each kind's attributes are typed columns. Written by the calllogs sinks (PostgresEventSink): the ids are deterministic
-- (a check-in is its call_id, an entry call_id:index), each claimed in streamhealth.event_ids, and inserted ON CONFLICT DO
-- NOTHING, so a replay or a redelivery stores each row once. Time series partitioned by the call's start, like the sensors'
-- (the key carries the time column, as a partitioned table's key must; the event_ids claim makes the id unique whatever its time).
CREATE SCHEMA IF NOT EXISTS calllogs;

SELECT streamhealth.create_time_series('calllogs', 'checkins', $cols$
  call_id          text        NOT NULL,
  patient_id       text        NOT NULL,
  event_time       timestamptz NOT NULL,   -- call start
  provider         text        NOT NULL,
  duration_s       int         NOT NULL CHECK (duration_s >= 0),
  medication_count int         NOT NULL CHECK (medication_count >= 0),
  food_count       int         NOT NULL CHECK (food_count >= 0),
  symptom_count    int         NOT NULL CHECK (symptom_count >= 0),
  extractor        text        NOT NULL,
  stored_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (call_id, event_time)
$cols$, 'event_time');
CREATE INDEX IF NOT EXISTS checkins_patient ON calllogs.checkins (patient_id, event_time DESC);

-- Columns every entry table has: the ids, the call's start, the normalised name, the extractor's confidence (0..1) and the
-- span it read (UTF-16 offsets into the call's transcript).
SELECT streamhealth.create_time_series('calllogs', 'medication_entries', $cols$
  entry_id         text             NOT NULL,
  call_id          text             NOT NULL,
  patient_id       text             NOT NULL,
  event_time       timestamptz      NOT NULL,
  generic_name     text             NOT NULL,
  dose_value       double precision,            -- in dose_unit
  dose_unit        text,
  frequency        text,
  status           text             NOT NULL CHECK (status IN ('taken', 'skipped', 'stopped', 'mentioned', 'unspecified')),
  confidence       double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
  span_start       int              NOT NULL CHECK (span_start >= 0),
  span_length      int              NOT NULL CHECK (span_length >= 0),
  extractor        text             NOT NULL,
  PRIMARY KEY (entry_id, event_time)
$cols$, 'event_time');
CREATE INDEX IF NOT EXISTS medication_entries_patient ON calllogs.medication_entries (patient_id, event_time DESC);

SELECT streamhealth.create_time_series('calllogs', 'food_entries', $cols$
  entry_id         text             NOT NULL,
  call_id          text             NOT NULL,
  patient_id       text             NOT NULL,
  event_time       timestamptz      NOT NULL,
  item             text             NOT NULL,
  quantity_value   double precision,            -- servings, in quantity_unit
  quantity_unit    text,
  meal             text             CHECK (meal IN ('breakfast', 'lunch', 'dinner', 'snack', 'unspecified')),
  confidence       double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
  span_start       int              NOT NULL CHECK (span_start >= 0),
  span_length      int              NOT NULL CHECK (span_length >= 0),
  extractor        text             NOT NULL,
  PRIMARY KEY (entry_id, event_time)
$cols$, 'event_time');
CREATE INDEX IF NOT EXISTS food_entries_patient ON calllogs.food_entries (patient_id, event_time DESC);

SELECT streamhealth.create_time_series('calllogs', 'symptom_entries', $cols$
  entry_id         text             NOT NULL,
  call_id          text             NOT NULL,
  patient_id       text             NOT NULL,
  event_time       timestamptz      NOT NULL,
  name             text             NOT NULL,
  present          boolean          NOT NULL,   -- false: the patient denied it
  severity         text,                        -- mild, moderate, severe or a pain score "N/10"
  onset            text,
  confidence       double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
  span_start       int              NOT NULL CHECK (span_start >= 0),
  span_length      int              NOT NULL CHECK (span_length >= 0),
  extractor        text             NOT NULL,
  PRIMARY KEY (entry_id, event_time)
$cols$, 'event_time');
CREATE INDEX IF NOT EXISTS symptom_entries_patient ON calllogs.symptom_entries (patient_id, event_time DESC);
