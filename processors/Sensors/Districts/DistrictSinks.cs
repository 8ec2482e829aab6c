using System.Text.Json;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Sensors.Metrics;
using DistrictEfficiency = StreamHealth.Schemas.Avro.Sensors.DistrictEfficiency;
using DistrictKey = StreamHealth.Schemas.Avro.Common.DistrictKey;
using SensorAnomaly = StreamHealth.Schemas.Avro.Sensors.SensorAnomaly;
using SensorKey = StreamHealth.Schemas.Avro.Common.SensorKey;
using SensorPrediction = StreamHealth.Schemas.Avro.Sensors.SensorPrediction;
using SensorQuality = StreamHealth.Schemas.Avro.Sensors.SensorQuality;

namespace StreamHealth.Sensors.Districts;

/// <summary>The district analysis' results → PostgreSQL, one <see cref="PostgresEventSink{T}"/> each (results are state: upserts by
/// their identity, a batch keeping each identity's last record, so a replay or a re-emission from the outbox is the same row):
/// <list type="bullet">
/// <item>sensors.anomalies → sensors.anomalies by anomaly id. State only moves forward: a resolved anomaly stays resolved, an
/// operator's acknowledgement survives the detector's later events, and a replayed "open" never reopens a resolved one. Observed
/// and expected stay as the anomaly opened with them (what the operator was alerted to).</item>
/// <item>sensors.quality → sensors.window_quality by node, metric, size and window start (a later verdict replaces an earlier
/// one: a missing window judged again when its data came).</item>
/// <item>sensors.efficiency → sensors.efficiency by district and day.</item>
/// <item>sensors.predictions → sensors.predictions, a row per forecast hour, by node, metric, issue time and hour (a forecast is
/// deterministic for its inputs: a repeat inserts nothing).</item>
/// </list>
/// A record that does not decode, or whose value's district or node is not its key's, is dead-lettered with the reason.</summary>
public static class DistrictSinks
{
    public const string AnomaliesName = "sensors-anomalies-postgres", QualityName = "sensors-quality-postgres", EfficiencyName = "sensors-efficiency-postgres",
        PredictionsName = "sensors-predictions-postgres";

    public static ISinkWriter Anomalies(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null)
    {
        var keys = registry.SerDes<DistrictKey>();
        var values = registry.SerDes<SensorAnomaly>();
        return new PostgresEventSink<SensorAnomaly>(db, new PostgresEventWorkload<SensorAnomaly>
        {
            SinkName = AnomaliesName,
            Decode = record => PostgresEventSink.KeyedBy(keys.ReadKey(record.Key, record.Topic).district_id, values.ReadValue(record.Value, record.Topic),
                "district_id", static a => a.district_id),
            DecodeFailure = "cannot decode sensors.anomalies record",
            Refuse = static (a, _) => a.state is "open" or "resolved" ? null : $"state = '{a.state}': not open or resolved",
            UserId = static a => a.district_id,
            InsertSql = """
                INSERT INTO sensors.anomalies AS a (anomaly_id, kind, district_id, node_id, metric, started_at, ended_at, severity, score, state,
                    reason, observed, expected, unit, resolved_at)
                SELECT DISTINCT ON (id) id, kind, district, node, metric, started, ended, severity, score, state, reason, observed, expected, unit,
                       CASE WHEN state = 'resolved' THEN COALESCE(ended, started) END
                FROM unnest(@ids, @kinds, @districts, @nodes, @metrics, @starts, @ends, @severities, @scores, @states, @reasons, @observed,
                            @expected, @units) WITH ORDINALITY
                     AS u(id, kind, district, node, metric, started, ended, severity, score, state, reason, observed, expected, unit, ord)
                ORDER BY id, ord DESC
                ON CONFLICT (anomaly_id) DO UPDATE SET
                    ended_at = COALESCE(EXCLUDED.ended_at, a.ended_at),
                    severity = EXCLUDED.severity, score = EXCLUDED.score, reason = EXCLUDED.reason,
                    state = CASE WHEN a.state = 'resolved' OR EXCLUDED.state = 'resolved' THEN 'resolved' ELSE a.state END,
                    resolved_at = CASE WHEN a.state = 'resolved' THEN a.resolved_at ELSE EXCLUDED.resolved_at END,
                    updated_at = now()
                """,
            AddParameters = static (p, rows) =>
            {
                p.Add(rows.Column("ids", static (_, a) => a.anomaly_id));
                p.Add(rows.Column("kinds", static (_, a) => a.kind));
                p.Add(rows.Column("districts", static (_, a) => a.district_id));
                p.Add(rows.Column("nodes", static (_, a) => a.node_id, NpgsqlDbType.Text));
                p.Add(rows.Column("metrics", static (_, a) => a.metric, NpgsqlDbType.Text));
                p.Add(rows.Timestamps("starts", static (_, a) => AvroTime.ToUnixMs(a.start_unix_ms)));
                p.Add(rows.Column("ends", static (_, a) => a.end_unix_ms is { } e ? DateTime.UnixEpoch.AddMilliseconds(AvroTime.ToUnixMs(e)) : (DateTime?)null,
                    NpgsqlDbType.TimestampTz));
                p.Add(rows.Column("severities", static (_, a) => a.severity));
                p.Add(rows.Column("scores", static (_, a) => Finite(a.score)));
                p.Add(rows.Column("states", static (_, a) => a.state));
                p.Add(rows.Column("reasons", static (_, a) => a.reason));
                p.Add(rows.Column("observed", static (_, a) => NodeWindowView.Stat(a.observed), NpgsqlDbType.Double));
                p.Add(rows.Column("expected", static (_, a) => NodeWindowView.Stat(a.expected), NpgsqlDbType.Double));
                p.Add(rows.Column("units", static (_, a) => a.unit));
            },
        }, log);
    }

    public static ISinkWriter Quality(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null)
    {
        var keys = registry.SerDes<SensorKey>();
        var values = registry.SerDes<SensorQuality>();
        return new PostgresEventSink<SensorQuality>(db, new PostgresEventWorkload<SensorQuality>
        {
            SinkName = QualityName,
            Decode = record => PostgresEventSink.KeyedBy(keys.ReadKey(record.Key, record.Topic).node_id, values.ReadValue(record.Value, record.Topic),
                "node_id", static q => q.node_id),
            DecodeFailure = "cannot decode sensors.quality record",
            Refuse = static (q, _) => q.window_minutes is 15 or 60 ? null : $"window_minutes = {q.window_minutes}: not 15 or 60",
            UserId = static q => q.node_id,
            InsertSql = """
                INSERT INTO sensors.window_quality AS q (node_id, district_id, metric, window_minutes, window_start, window_end, usable, score, problems, checks)
                SELECT DISTINCT ON (node, metric, minutes, start) node, district, metric, minutes, start, finish, usable, score,
                       string_to_array(problems, ',') , checks::jsonb
                FROM unnest(@nodes, @districts, @metrics, @minutes, @starts, @ends, @usable, @scores, @problems, @checks) WITH ORDINALITY
                     AS u(node, district, metric, minutes, start, finish, usable, score, problems, checks, ord)
                ORDER BY node, metric, minutes, start, ord DESC
                ON CONFLICT (node_id, metric, window_minutes, window_start) DO UPDATE SET
                    usable = EXCLUDED.usable, score = EXCLUDED.score, problems = EXCLUDED.problems, checks = EXCLUDED.checks
                """,
            AddParameters = static (p, rows) =>
            {
                p.Add(rows.Column("nodes", static (_, q) => q.node_id));
                p.Add(rows.Column("districts", static (_, q) => q.district_id));
                p.Add(rows.Column("metrics", static (_, q) => q.metric));
                p.Add(rows.Column("minutes", static (_, q) => q.window_minutes));
                p.Add(rows.Timestamps("starts", static (_, q) => AvroTime.ToUnixMs(q.window_start_unix_ms)));
                p.Add(rows.Timestamps("ends", static (_, q) => AvroTime.ToUnixMs(q.event_time_unix_ms)));
                p.Add(rows.Column("usable", static (_, q) => q.usable));
                p.Add(rows.Column("scores", static (_, q) => LowestScore(q)));
                // Rule names are fixed words without commas; '' is no problem (string_to_array gives an empty array).
                p.Add(rows.Column("problems", static (_, q) => string.Join(",", q.checks.Where(c => c.problem).Select(c => c.rule))));
                p.Add(rows.Column("checks", static (_, q) => JsonSerializer.Serialize(q.checks.ToDictionary(c => c.rule,
                    c => new { score = Finite(c.score), problem = c.problem, reason = c.reason }))));
            },
        }, log);
    }

    public static ISinkWriter Efficiency(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null)
    {
        var keys = registry.SerDes<DistrictKey>();
        var values = registry.SerDes<DistrictEfficiency>();
        return new PostgresEventSink<DistrictEfficiency>(db, new PostgresEventWorkload<DistrictEfficiency>
        {
            SinkName = EfficiencyName,
            Decode = record => PostgresEventSink.KeyedBy(keys.ReadKey(record.Key, record.Topic).district_id, values.ReadValue(record.Value, record.Topic),
                "district_id", static e => e.district_id),
            DecodeFailure = "cannot decode sensors.efficiency record",
            UserId = static e => e.district_id,
            InsertSql = """
                INSERT INTO sensors.efficiency (district_id, day_start, inflow_m3, metered_m3, non_revenue_m3, non_revenue_percent, completeness,
                    rolling_days, rolling_inflow_m3, rolling_metered_m3, rolling_non_revenue_m3, rolling_non_revenue_percent, rolling_completeness)
                SELECT DISTINCT ON (district, day) district, day, inflow, metered, nrw, nrw_pct, completeness, rdays, rinflow, rmetered, rnrw, rnrw_pct, rcompleteness
                FROM unnest(@districts, @days, @inflow, @metered, @nrw, @nrwpct, @completeness, @rdays, @rinflow, @rmetered, @rnrw, @rnrwpct, @rcompleteness)
                     WITH ORDINALITY AS u(district, day, inflow, metered, nrw, nrw_pct, completeness, rdays, rinflow, rmetered, rnrw, rnrw_pct, rcompleteness, ord)
                ORDER BY district, day, ord DESC
                ON CONFLICT (district_id, day_start) DO UPDATE SET
                    inflow_m3 = EXCLUDED.inflow_m3, metered_m3 = EXCLUDED.metered_m3, non_revenue_m3 = EXCLUDED.non_revenue_m3,
                    non_revenue_percent = EXCLUDED.non_revenue_percent, completeness = EXCLUDED.completeness, rolling_days = EXCLUDED.rolling_days,
                    rolling_inflow_m3 = EXCLUDED.rolling_inflow_m3, rolling_metered_m3 = EXCLUDED.rolling_metered_m3,
                    rolling_non_revenue_m3 = EXCLUDED.rolling_non_revenue_m3, rolling_non_revenue_percent = EXCLUDED.rolling_non_revenue_percent,
                    rolling_completeness = EXCLUDED.rolling_completeness
                """,
            AddParameters = static (p, rows) =>
            {
                p.Add(rows.Column("districts", static (_, e) => e.district_id));
                p.Add(rows.Timestamps("days", static (_, e) => AvroTime.ToUnixMs(e.day_start_unix_ms)));
                p.Add(rows.Column("inflow", static (_, e) => Finite(e.inflow_m3)));
                p.Add(rows.Column("metered", static (_, e) => Finite(e.metered_m3)));
                p.Add(rows.Column("nrw", static (_, e) => Finite(e.non_revenue_m3)));
                p.Add(rows.Column("nrwpct", static (_, e) => Finite(e.non_revenue_percent)));
                p.Add(rows.Column("completeness", static (_, e) => Finite(e.completeness)));
                p.Add(rows.Column("rdays", static (_, e) => e.rolling_days));
                p.Add(rows.Column("rinflow", static (_, e) => Finite(e.rolling_inflow_m3)));
                p.Add(rows.Column("rmetered", static (_, e) => Finite(e.rolling_metered_m3)));
                p.Add(rows.Column("rnrw", static (_, e) => Finite(e.rolling_non_revenue_m3)));
                p.Add(rows.Column("rnrwpct", static (_, e) => Finite(e.rolling_non_revenue_percent)));
                p.Add(rows.Column("rcompleteness", static (_, e) => Finite(e.rolling_completeness)));
            },
        }, log);
    }

    public static ISinkWriter Predictions(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null)
    {
        var keys = registry.SerDes<SensorKey>();
        var values = registry.SerDes<SensorPrediction>();
        return new PostgresEventSink<SensorPrediction>(db, new PostgresEventWorkload<SensorPrediction>
        {
            SinkName = PredictionsName,
            Decode = record => PostgresEventSink.KeyedBy(keys.ReadKey(record.Key, record.Topic).node_id, values.ReadValue(record.Value, record.Topic),
                "node_id", static p => p.node_id),
            DecodeFailure = "cannot decode sensors.predictions record",
            Refuse = static (p, _) => p.points.Count is > 0 and <= 168 ? null : $"points: {p.points.Count} hours, expected 1-168",
            UserId = static p => p.node_id,
            // A record holds its hours; each becomes a row (its points travel as one JSON array per record, NaN as null).
            InsertSql = """
                INSERT INTO sensors.predictions (node_id, district_id, metric, issued_at, target_time, method, mean, lower_80, upper_80, lower_95, upper_95)
                SELECT u.node, u.district, u.metric, u.issued, to_timestamp((p->>'t')::bigint / 1000.0), u.method, (p->>'m')::float8,
                       (p->>'l80')::float8, (p->>'u80')::float8, (p->>'l95')::float8, (p->>'u95')::float8
                FROM unnest(@nodes, @districts, @metrics, @issued, @methods, @points) AS u(node, district, metric, issued, method, points),
                     jsonb_array_elements(u.points::jsonb) p
                ON CONFLICT (node_id, metric, issued_at, target_time) DO NOTHING
                """,
            AddParameters = static (p, rows) =>
            {
                p.Add(rows.Column("nodes", static (_, f) => f.node_id));
                p.Add(rows.Column("districts", static (_, f) => f.district_id));
                p.Add(rows.Column("metrics", static (_, f) => f.metric));
                p.Add(rows.Timestamps("issued", static (_, f) => AvroTime.ToUnixMs(f.event_time_unix_ms)));
                p.Add(rows.Column("methods", static (_, f) => f.method));
                p.Add(rows.Column("points", static (_, f) => JsonSerializer.Serialize(f.points.Select(x => new
                {
                    t = AvroTime.ToUnixMs(x.hour_start_unix_ms), m = Finite(x.mean), l80 = NodeWindowView.Stat(x.lower_80), u80 = NodeWindowView.Stat(x.upper_80),
                    l95 = NodeWindowView.Stat(x.lower_95), u95 = NodeWindowView.Stat(x.upper_95),
                }))));
            },
        }, log);
    }

    // A NaN (a percentage of no inflow) is stored as 0 where the column cannot be NULL, as NULL where it can.
    private static double Finite(double v) => double.IsFinite(v) ? v : 0;

    private static double LowestScore(SensorQuality q)
    {
        var lowest = 1.0;
        foreach (var c in q.checks) if (double.IsFinite(c.score)) lowest = Math.Min(lowest, Math.Clamp(c.score, 0, 1));
        return lowest;
    }

    /// <summary>The consumer group of one of the district stage's sinks (<paramref name="kind"/>: anomalies, quality, efficiency, predictions).</summary>
    public static string SinkGroup(string groupPrefix, string kind) => $"{groupPrefix}-{kind}-postgres-sink";

    public static IReadOnlyList<SinkRunner> Create(DistrictTopics topics, string groupPrefix, string bootstrapServers, NpgsqlDataSource postgres,
        SchemaRegistryConnection registry, ILoggerFactory logs, int sessionTimeoutMs = 6_000) =>
    [
        SinkRunner.For(bootstrapServers, topics.Anomalies, SinkGroup(groupPrefix, "anomalies"),
            Anomalies(postgres, registry, logs.CreateLogger("StreamHealth.Sinks." + AnomaliesName)), postgres, logs, sessionTimeoutMs),
        SinkRunner.For(bootstrapServers, topics.Quality, SinkGroup(groupPrefix, "quality"),
            Quality(postgres, registry, logs.CreateLogger("StreamHealth.Sinks." + QualityName)), postgres, logs, sessionTimeoutMs),
        SinkRunner.For(bootstrapServers, topics.Efficiency, SinkGroup(groupPrefix, "efficiency"),
            Efficiency(postgres, registry, logs.CreateLogger("StreamHealth.Sinks." + EfficiencyName)), postgres, logs, sessionTimeoutMs),
        SinkRunner.For(bootstrapServers, topics.Predictions, SinkGroup(groupPrefix, "predictions"),
            Predictions(postgres, registry, logs.CreateLogger("StreamHealth.Sinks." + PredictionsName)), postgres, logs, sessionTimeoutMs),
    ];
}
