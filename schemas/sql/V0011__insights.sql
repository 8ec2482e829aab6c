-- The insights workload (issue 15): a person's profile fields the rules personalise on, the daily aggregates and rolling
-- summaries the insights topology materialises, goals, nutrition logs and the recommendations generated from them.
CREATE SCHEMA IF NOT EXISTS insights;

-- Profile. time_zone (IANA name) decides where the person's local day begins for the daily aggregates when a metric's
-- recorded_at carries no offset. date_of_birth and medical_history are personal health data: only their AES-256-GCM
-- envelopes are stored ("v1.<key id>.<base64url of nonce | ciphertext | tag>"), so a copy of the table reveals neither,
-- and the key id inside lets keys rotate.
ALTER TABLE identity.users ADD COLUMN IF NOT EXISTS time_zone           text NOT NULL DEFAULT 'UTC';
ALTER TABLE identity.users ADD COLUMN IF NOT EXISTS sex                 text CHECK (sex IN ('female', 'male', 'other'));
ALTER TABLE identity.users ADD COLUMN IF NOT EXISTS date_of_birth_enc   text;
ALTER TABLE identity.users ADD COLUMN IF NOT EXISTS medical_history_enc text;
ALTER TABLE identity.users ADD COLUMN IF NOT EXISTS profile_updated_at  timestamptz;

-- One row per person, metric type and local day, upserted by the insights topology's sink whenever the day changes
-- (a late record inside the grace period updates its day). Values are in the type's stored unit (HealthMetricTypes).
-- day_start is the UTC instant the person's local day began (the partition column); utc_offset_minutes the offset it
-- was computed with. total suits summed types (steps, water_ml, calories, sleep_hours), mean the sampled ones
-- (heart_rate, weight).
SELECT streamhealth.create_time_series('insights', 'daily_metrics', $cols$
  user_id            text             NOT NULL,
  metric             text             NOT NULL,
  local_date         date             NOT NULL,
  day_start          timestamptz      NOT NULL,
  utc_offset_minutes int              NOT NULL,
  count              int              NOT NULL CHECK (count > 0),
  total              double precision NOT NULL,
  min                double precision NOT NULL,
  max                double precision NOT NULL,
  mean               double precision NOT NULL,
  last_value         double precision NOT NULL,
  last_time          timestamptz      NOT NULL,
  updated_at         timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, metric, day_start, local_date)
$cols$, 'day_start');
CREATE INDEX IF NOT EXISTS daily_metrics_user_date ON insights.daily_metrics (user_id, local_date, metric);

-- Rolling summaries over the person's last 7 and 30 local days (ending with through_date, the latest day with data),
-- kept current by the topology: per_day_* are over the days with data (a missing day is unknown, not zero).
CREATE TABLE IF NOT EXISTS insights.metric_summaries (
  user_id        text             NOT NULL,
  metric         text             NOT NULL,
  window_days    int              NOT NULL CHECK (window_days IN (7, 30)),
  through_date   date             NOT NULL,
  days_with_data int              NOT NULL CHECK (days_with_data BETWEEN 1 AND window_days),
  total          double precision NOT NULL,   -- sum of the days' totals
  per_day_mean   double precision NOT NULL,   -- mean of the days' totals
  value_mean     double precision NOT NULL,   -- mean of every record (sampled types)
  min            double precision NOT NULL,
  max            double precision NOT NULL,
  updated_at     timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, metric, window_days)
);

-- Meals: POST /api/v1/nutrition-logs/ → insights.nutrition → this table (idempotent on log_id, claimed in event_ids).
SELECT streamhealth.create_time_series('insights', 'nutrition_logs', $cols$
  user_id        text             NOT NULL,
  log_id         text             NOT NULL,
  eaten_at       timestamptz      NOT NULL,
  meal           text             NOT NULL CHECK (meal IN ('breakfast', 'lunch', 'dinner', 'snack')),
  description    text             NOT NULL,
  calories_kcal  double precision NOT NULL,
  protein_g      double precision NOT NULL,
  carbohydrate_g double precision NOT NULL,
  fat_g          double precision NOT NULL,
  fiber_g        double precision,
  sugar_g        double precision,
  sodium_mg      double precision,
  PRIMARY KEY (user_id, log_id, eaten_at)
$cols$, 'eaten_at');
CREATE INDEX IF NOT EXISTS nutrition_logs_user_time ON insights.nutrition_logs (user_id, eaten_at, log_id);

-- Goals: a target for one metric type over a period (a local day, week or month), at least or at most; progress is
-- computed from insights.daily_metrics when read.
CREATE TABLE IF NOT EXISTS insights.goals (
  goal_id     text             PRIMARY KEY,
  user_id     text             NOT NULL,
  metric      text             NOT NULL,
  target      double precision NOT NULL,
  unit        text             NOT NULL,
  period      text             NOT NULL CHECK (period IN ('day', 'week', 'month')),
  direction   text             NOT NULL CHECK (direction IN ('at_least', 'at_most')),
  starts_on   date             NOT NULL,
  ends_on     date,
  fingerprint text             NOT NULL,   -- what a retry under the same goal_id must repeat
  created_at  timestamptz      NOT NULL DEFAULT now(),
  CHECK (ends_on IS NULL OR ends_on >= starts_on)
);
CREATE INDEX IF NOT EXISTS goals_user ON insights.goals (user_id, created_at);

-- Recommendations as generated (GET /api/v1/recommendations computes them on a cache miss and stores what it answered):
-- the history GET /api/v1/health-insights/user/{user_id} reads.
SELECT streamhealth.create_time_series('insights', 'generated', $cols$
  user_id      text        NOT NULL,
  insight_id   text        NOT NULL,
  generated_at timestamptz NOT NULL,
  window_days  int         NOT NULL,
  rule         text        NOT NULL,
  priority     int         NOT NULL,
  title        text        NOT NULL,
  reason       text        NOT NULL,
  figures      jsonb       NOT NULL,
  PRIMARY KEY (user_id, insight_id, generated_at)
$cols$, 'generated_at');
CREATE INDEX IF NOT EXISTS generated_user_time ON insights.generated (user_id, generated_at);
