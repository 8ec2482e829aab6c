-- CGM: every reading of cgm.readings (sink), and the datasets of POST /process_unified.
CREATE SCHEMA IF NOT EXISTS cgm;

-- cgm.readings sink. Idempotent on (reading_id, reading_time): reading ids are derived from the user, the
-- source format, the event type, the original time and the value, so the same file uploaded twice,
-- a replay, or a duplicate delivery inserts nothing new. Times are on the export's clock (stored as UTC).
SELECT streamhealth.create_time_series('cgm', 'readings', $cols$
  reading_id       text             NOT NULL,
  user_id          text             NOT NULL,
  reading_time     timestamptz      NOT NULL,
  original_time    timestamptz      NOT NULL,
  event_type       text             NOT NULL,   -- egv, fingerstick, carbs, insulin, exercise
  glucose_mg_dl    double precision,            -- NULL when the row carries no glucose
  quality_flags    smallint         NOT NULL,   -- 1 out of range, 2 calibration, 4 imputed, 8 duplicate time, 16 synchronised
  source_format    text             NOT NULL,
  carbs_g          double precision,
  insulin_slow_u   double precision,
  insulin_fast_u   double precision,
  exercise_min     double precision,
  source_partition int              NOT NULL,
  source_offset    bigint           NOT NULL,
  PRIMARY KEY (reading_id, reading_time)
$cols$, 'reading_time');

CREATE INDEX IF NOT EXISTS readings_user_time ON cgm.readings (user_id, reading_time DESC);

-- POST /process_unified: a resampled 5-minute series stored under a content hash (the handle). The
-- arrays are parallel, oldest first; glucose is mg/dL on the grid, flags the unified quality flags.
CREATE TABLE IF NOT EXISTS cgm.datasets (
  handle         text        PRIMARY KEY,
  source_format  text        NOT NULL,
  step_minutes   int         NOT NULL,
  first_time     timestamptz NOT NULL,
  last_time      timestamptz NOT NULL,
  points         int         NOT NULL,
  sequences      int         NOT NULL,
  times_unix_ms  bigint[]    NOT NULL,
  glucose_mg_dl  real[]      NOT NULL,
  quality_flags  smallint[]  NOT NULL,
  sequence_ids   int[]       NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now()
);

-- "A request covering a subset of an already processed range ending at the same time reuses it."
CREATE INDEX IF NOT EXISTS datasets_last_time ON cgm.datasets (last_time);
