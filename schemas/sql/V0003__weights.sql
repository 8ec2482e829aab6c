-- weights.filtered sink: every measurement with its filter result, raw and filtered side by side.
-- Idempotent on (measurement_id, measured_at): replays and duplicate deliveries insert nothing new.
-- (The time column is part of the key because partitioned tables and hypertables require it.)
CREATE SCHEMA IF NOT EXISTS weights;

SELECT streamhealth.create_time_series('weights', 'measurements', $cols$
  measurement_id         text             NOT NULL,
  user_id                text             NOT NULL,
  measured_at            timestamptz      NOT NULL,
  source                 text             NOT NULL,
  raw_weight_kg          double precision NOT NULL,   -- NaN when the unit was unknown or the value not a number
  accepted               boolean          NOT NULL,
  filtered_weight_kg     double precision NOT NULL,   -- 0 while the user's filter is not initialised
  trend_kg_per_week      double precision NOT NULL,
  confidence             double precision NOT NULL,
  prediction_error_kg    double precision NOT NULL,
  normalized_innovation  double precision NOT NULL,
  needs_initialization   boolean          NOT NULL,
  needs_reinitialization boolean          NOT NULL,
  reasons                text[]           NOT NULL,
  source_partition       int              NOT NULL,
  source_offset          bigint           NOT NULL,
  PRIMARY KEY (measurement_id, measured_at)
$cols$, 'measured_at');

-- History and latest-by-user reads.
CREATE INDEX IF NOT EXISTS measurements_user_time ON weights.measurements (user_id, measured_at DESC);
