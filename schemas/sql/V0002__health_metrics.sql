-- insights.metrics sink: generic per-person metrics, idempotent on (user_id, metric_id, event_time).
SELECT streamhealth.create_time_series('streamhealth', 'health_metrics', $cols$
  user_id     text             NOT NULL,
  metric_id   text             NOT NULL,
  event_time  timestamptz      NOT NULL,
  metric      text             NOT NULL,
  value       double precision NOT NULL,
  unit        text             NOT NULL,
  PRIMARY KEY (user_id, metric_id, event_time)
$cols$, 'event_time');
