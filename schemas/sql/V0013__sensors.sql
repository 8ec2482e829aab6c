-- Water-network sensors (issue 16): the node registry, the windowed metrics the sensors topology emits, their data quality,
-- the districts' efficiency, anomalies with their lifecycle, flow predictions, and retention for the time series (computed metrics 90 days, predictions 30 days, anomalies
-- until resolved plus 30 days).
CREATE SCHEMA IF NOT EXISTS sensors;

-- The node registry: what the network has. A reading from a node not registered here is dead-lettered by the sensors
-- topology ("unknown node"); a node never changes district (moving it is a new node id). cadence_seconds is the interval
-- the node reports at, so a window's completeness can be judged. Retired nodes stay (their history still names them).
CREATE TABLE IF NOT EXISTS sensors.nodes (
  node_id          text        PRIMARY KEY,
  district_id      text        NOT NULL,
  kind             text        NOT NULL CHECK (kind IN ('inflow', 'meter', 'pressure_logger', 'quality_probe')),
  metrics          text[]      NOT NULL CHECK (cardinality(metrics) > 0),
  cadence_seconds  int         NOT NULL CHECK (cadence_seconds BETWEEN 1 AND 86400),
  name             text,
  latitude         double precision CHECK (latitude BETWEEN -90 AND 90),
  longitude        double precision CHECK (longitude BETWEEN -180 AND 180),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  retired_at       timestamptz
);
CREATE INDEX IF NOT EXISTS nodes_district ON sensors.nodes (district_id, node_id);

-- sensors.metrics sink: one row per node, metric, window size and window start, the window's final result. Idempotent on
-- that key (a replayed window is the same row). Statistics are NULL for a window without readings (the topology's NaN).
SELECT streamhealth.create_time_series('sensors', 'window_metrics', $cols$
  node_id          text             NOT NULL,
  district_id      text             NOT NULL,
  metric           text             NOT NULL,
  unit             text             NOT NULL,
  window_minutes   int              NOT NULL CHECK (window_minutes IN (1, 15, 60)),
  window_start     timestamptz      NOT NULL,
  window_end       timestamptz      NOT NULL,
  reading_count    int              NOT NULL CHECK (reading_count >= 0),
  duplicate_count  int              NOT NULL CHECK (duplicate_count >= 0),
  late_count       int              NOT NULL CHECK (late_count >= 0),
  min              double precision,
  max              double precision,
  mean             double precision,
  stddev           double precision,
  p50              double precision,
  p95              double precision,
  source_partition int              NOT NULL,
  source_offset    bigint           NOT NULL,
  PRIMARY KEY (node_id, metric, window_minutes, window_start)
$cols$, 'window_start');
CREATE INDEX IF NOT EXISTS window_metrics_district ON sensors.window_metrics (district_id, window_minutes, window_start DESC);

-- Anomalies and leaks: one row per anomaly id, updated as it evolves (open → acknowledged → resolved). ended_at is NULL
-- while the anomaly goes on; resolved_at is when it was resolved (by the detector seeing it end, or by an operator).
CREATE TABLE IF NOT EXISTS sensors.anomalies (
  anomaly_id       text             PRIMARY KEY,
  kind             text             NOT NULL,
  district_id      text             NOT NULL,
  node_id          text,
  metric           text,
  started_at       timestamptz      NOT NULL,
  ended_at         timestamptz,
  severity         text             NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
  score            double precision NOT NULL,
  state            text             NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
  reason           text             NOT NULL,
  observed         double precision,            -- in unit: a leak's net flow, a residual's 15-minute mean
  expected         double precision,            -- in unit: the reference it departs from
  unit             text,
  acknowledged_at  timestamptz,
  acknowledged_by  text,                        -- the credential's name
  acknowledged_note text,
  resolved_at      timestamptz,
  updated_at       timestamptz      NOT NULL DEFAULT now(),
  CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS anomalies_open ON sensors.anomalies (state, started_at DESC) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS anomalies_district ON sensors.anomalies (district_id, started_at DESC);

-- Data quality of each 15- and 60-minute window of each node's metric, from the district analysis (sensors.quality). A
-- window judged before its data arrived (missing) is judged again when it does: the later verdict replaces the row.
-- problems names the rules that found one; checks holds every rule's score and reason.
SELECT streamhealth.create_time_series('sensors', 'window_quality', $cols$
  node_id          text             NOT NULL,
  district_id      text             NOT NULL,
  metric           text             NOT NULL,
  window_minutes   int              NOT NULL CHECK (window_minutes IN (15, 60)),
  window_start     timestamptz      NOT NULL,
  window_end       timestamptz      NOT NULL,
  usable           boolean          NOT NULL,
  score            double precision NOT NULL CHECK (score BETWEEN 0 AND 1),   -- the lowest rule score
  problems         text[]           NOT NULL,
  checks           jsonb            NOT NULL,
  PRIMARY KEY (node_id, metric, window_minutes, window_start)
$cols$, 'window_start');

-- Network efficiency: each district's water balance per UTC day and over the rolling days ending with it (sensors.efficiency).
SELECT streamhealth.create_time_series('sensors', 'efficiency', $cols$
  district_id                 text             NOT NULL,
  day_start                   timestamptz      NOT NULL,
  inflow_m3                   double precision NOT NULL,
  metered_m3                  double precision NOT NULL,
  non_revenue_m3              double precision NOT NULL,
  non_revenue_percent         double precision NOT NULL,
  completeness                double precision NOT NULL,
  rolling_days                int              NOT NULL,
  rolling_inflow_m3           double precision NOT NULL,
  rolling_metered_m3          double precision NOT NULL,
  rolling_non_revenue_m3      double precision NOT NULL,
  rolling_non_revenue_percent double precision NOT NULL,
  rolling_completeness        double precision NOT NULL,
  PRIMARY KEY (district_id, day_start)
$cols$, 'day_start');

-- Flow predictions (sensors.predictions): for each node and issue time (the end of the newest hour the forecast knew), the next
-- 24 hours with 80 % and 95 % intervals (L/s; NULL while the node has too few past errors to give them) and the forecaster.
SELECT streamhealth.create_time_series('sensors', 'predictions', $cols$
  node_id          text             NOT NULL,
  district_id      text             NOT NULL,
  metric           text             NOT NULL,
  issued_at        timestamptz      NOT NULL,
  target_time      timestamptz      NOT NULL,   -- the forecast hour's start
  method           text             NOT NULL,
  mean             double precision NOT NULL,
  lower_80         double precision,
  upper_80         double precision,
  lower_95         double precision,
  upper_95         double precision,
  PRIMARY KEY (node_id, metric, issued_at, target_time)
$cols$, 'issued_at');

-- Retention of time series: TimescaleDB's retention policy (a background job dropping whole chunks) where the table is a
-- hypertable; otherwise streamhealth.enforce_retention() drops every partition whose whole range is older than the keep,
-- run hourly by the hosts that write the table. Rows older than the cutoff inside a partition that still holds newer rows
-- stay until the partition goes (monthly partitions: a 90-day keep holds 90-121 days): retention drops storage units, as
-- Timescale's does with its chunks, rather than deleting row by row.
CREATE TABLE IF NOT EXISTS streamhealth.retention_policies (
  table_schema text     NOT NULL,
  table_name   text     NOT NULL,
  keep         interval NOT NULL CHECK (keep > interval '0'),
  PRIMARY KEY (table_schema, table_name)
);

CREATE OR REPLACE FUNCTION streamhealth.set_retention(target_schema text, target_table text, keep_for interval)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  is_hypertable boolean;
BEGIN
  INSERT INTO streamhealth.retention_policies AS p (table_schema, table_name, keep) VALUES (target_schema, target_table, keep_for)
    ON CONFLICT ON CONSTRAINT retention_policies_pkey DO UPDATE SET keep = EXCLUDED.keep;
  -- Timescale's catalogue exists only with the extension: queried dynamically, or the function would not plan without it.
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = $1 AND hypertable_name = $2)'
      INTO is_hypertable USING target_schema, target_table;
    IF is_hypertable THEN
      EXECUTE format('SELECT remove_retention_policy(%L, if_exists => true)', format('%I.%I', target_schema, target_table));
      EXECUTE format('SELECT add_retention_policy(%L, %L::interval)', format('%I.%I', target_schema, target_table), keep_for);
    END IF;
  END IF;
END
$fn$;

-- Drops the partitions of the natively partitioned tables under a policy whose upper bound is at or before now() - keep
-- (the default partition is never dropped). Returns one row per dropped partition. Hypertables are left to Timescale's job.
CREATE OR REPLACE FUNCTION streamhealth.enforce_retention(as_of timestamptz DEFAULT now())
RETURNS TABLE (dropped_partition text, dropped_upper_bound timestamptz) LANGUAGE plpgsql AS $fn$
DECLARE
  policy record;
  part record;
BEGIN
  FOR policy IN SELECT * FROM streamhealth.retention_policies LOOP
    FOR part IN
      SELECT c.oid::regclass::text AS name,
             substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz AS bound
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass(format('%I.%I', policy.table_schema, policy.table_name))
        AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
    LOOP
      IF part.bound <= as_of - policy.keep THEN
        EXECUTE format('DROP TABLE %s', part.name);
        dropped_partition := part.name;
        dropped_upper_bound := part.bound;
        RETURN NEXT;
      END IF;
    END LOOP;
  END LOOP;
END
$fn$;

SELECT streamhealth.set_retention('sensors', 'window_metrics', interval '90 days');
SELECT streamhealth.set_retention('sensors', 'window_quality', interval '90 days');
SELECT streamhealth.set_retention('sensors', 'efficiency', interval '90 days');
SELECT streamhealth.set_retention('sensors', 'predictions', interval '30 days');

-- Anomalies are kept until resolved plus 30 days: a plain table (an open anomaly must never be dropped with a chunk).
CREATE OR REPLACE FUNCTION sensors.prune_resolved_anomalies(as_of timestamptz DEFAULT now(), keep interval DEFAULT interval '30 days')
RETURNS bigint LANGUAGE sql AS $fn$
  WITH gone AS (DELETE FROM sensors.anomalies WHERE state = 'resolved' AND resolved_at <= as_of - keep RETURNING 1)
  SELECT count(*) FROM gone;
$fn$;
