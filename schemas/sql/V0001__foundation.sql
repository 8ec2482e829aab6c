-- Foundation: the streamhealth schema, the time-series helper every workload's tables use,
-- and the dead-letter archive. Migrations are applied in version order, once each, in a transaction.

DO $$
BEGIN
  -- Production runs TimescaleDB (compose/, k8s/); it must be in shared_preload_libraries there.
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
    CREATE EXTENSION IF NOT EXISTS timescaledb;
  END IF;
END $$;

CREATE SCHEMA IF NOT EXISTS streamhealth;

-- create_time_series: a hypertable where TimescaleDB is installed, else a table natively
-- range-partitioned by time (one partition per partition_interval, plus a default partition for
-- anything outside the range) with a BRIN index on the time column. BRIN suits append-mostly
-- time-ordered data: tiny, and autosummarize keeps it current without a manual summarize.
-- Returns 'exists', 'hypertable' or 'partitioned'.
CREATE OR REPLACE FUNCTION streamhealth.create_time_series(
    schema_name        text,
    table_name         text,
    columns_ddl        text,
    time_column        text,
    partition_interval interval    DEFAULT '1 month',
    first_partition    timestamptz DEFAULT '2015-01-01 00:00:00+00',
    last_partition     timestamptz DEFAULT '2031-01-01 00:00:00+00')
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
  qualified text := format('%I.%I', schema_name, table_name);
  lower_bound timestamptz;
  upper_bound timestamptz;
BEGIN
  IF to_regclass(qualified) IS NOT NULL THEN
    RETURN 'exists';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    EXECUTE format('CREATE TABLE %s (%s)', qualified, columns_ddl);
    EXECUTE format('SELECT create_hypertable(%L, %L, chunk_time_interval => %L::interval)',
                   qualified, time_column, partition_interval);
    RETURN 'hypertable';
  END IF;
  EXECUTE format('CREATE TABLE %s (%s) PARTITION BY RANGE (%I)', qualified, columns_ddl, time_column);
  lower_bound := first_partition;
  WHILE lower_bound < last_partition LOOP
    upper_bound := lower_bound + partition_interval;
    EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                   schema_name, table_name || '_p' || to_char(lower_bound AT TIME ZONE 'UTC', 'YYYYMMDD'),
                   qualified, lower_bound, upper_bound);
    lower_bound := upper_bound;
  END LOOP;
  EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s DEFAULT', schema_name, table_name || '_pdefault', qualified);
  EXECUTE format('CREATE INDEX %I ON %s USING brin (%I) WITH (autosummarize = on)',
                 table_name || '_' || time_column || '_brin', qualified, time_column);
  RETURN 'partitioned';
END
$fn$;

-- Every record that a processor could not handle, as it arrived, with the reason.
-- Keyed by its source position, so archiving the same dead letter twice is a no-op.
CREATE TABLE IF NOT EXISTS streamhealth.dead_letters (
  source_topic     text        NOT NULL,
  source_partition int         NOT NULL,
  source_offset    bigint      NOT NULL,
  processor        text        NOT NULL,
  error            text        NOT NULL,
  record_key       bytea,
  record_value     bytea,
  received_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source_topic, source_partition, source_offset)
);
