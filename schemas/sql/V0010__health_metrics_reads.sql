-- GET /api/v1/health-metrics: a person's metrics by time (and type), and one metric by its id.
-- streamhealth.health_metrics (V0002) is partitioned by event_time; these indexes are created on every partition.
CREATE INDEX IF NOT EXISTS health_metrics_user_time ON streamhealth.health_metrics (user_id, event_time, metric_id);
CREATE INDEX IF NOT EXISTS health_metrics_metric_id ON streamhealth.health_metrics (metric_id);
