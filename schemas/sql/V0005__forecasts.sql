-- CGM forecasts: every forecast of cgm.forecasts (the forecaster's PostgreSQL sink).
-- Idempotent on (request_id, forecast_time): the forecaster delivers at least once, and a replay or a repeated
-- delivery of the same request inserts nothing new. forecast_time is the time of the request's last input step
-- (the forecast covers forecast_time + step_minutes … + horizon_steps × step_minutes).
SELECT streamhealth.create_time_series('cgm', 'forecasts', $cols$
  request_id       text             NOT NULL,
  user_id          text             NOT NULL,
  forecast_time    timestamptz      NOT NULL,
  step_minutes     int              NOT NULL,
  horizon_steps    int              NOT NULL,
  median_mg_dl     real[]           NOT NULL,   -- horizon_steps values, t + step_minutes first
  quantiles        real[]           NOT NULL,   -- the band levels, e.g. {0.05, 0.25, 0.75, 0.95}
  bands_mg_dl      real[]           NOT NULL,   -- level-major: bands_mg_dl[k * horizon_steps + h + 1] is level k, step h (0-based k, h)
  model_version    text             NOT NULL,
  mc_samples       int              NOT NULL,
  source_partition int              NOT NULL,
  source_offset    bigint           NOT NULL,
  stored_at        timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (request_id, forecast_time)
$cols$, 'forecast_time');

CREATE INDEX IF NOT EXISTS forecasts_user_time ON cgm.forecasts (user_id, forecast_time DESC);
