using Microsoft.Extensions.Logging;
using Npgsql;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using HealthMetric = StreamHealth.Schemas.Avro.Insights.HealthMetric;

namespace StreamHealth.Insights.Metrics;

/// <summary>insights.metrics → streamhealth.health_metrics (<see cref="PostgresEventSink{T}"/>): one row per metric id. A
/// metric id is one metric of one user whatever its time (workload <see cref="EventIdWorkload"/>, which the gateway claims
/// with too): a retried or replayed record is stored once; one that does not decode, breaks the type rules
/// (<see cref="HealthMetricTypes"/>) or the event-time rule, or reuses another user's or another metric's id is
/// dead-lettered.</summary>
public static class HealthMetricPostgresWriter
{
    public const string Name = "insights-metrics-postgres";
    public const string EventIdWorkload = "metric";
    public const string SinkGroup = "streamhealth-insights-metrics-postgres";

    public static ISinkWriter Create(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null, EventTimeRule? timeRule = null) =>
        new PostgresEventSink<HealthMetric>(db, Workload(registry.SerDes<HealthMetric>(), timeRule ?? EventTimeRule.Default), log);

    /// <summary>The sink with its runner, as every workload's result sinks are (own consumer group, dead letters in PostgreSQL).</summary>
    public static SinkRunner CreateSink(string bootstrapServers, NpgsqlDataSource db, SchemaRegistryConnection registry, ILoggerFactory logs,
        int sessionTimeoutMs = 6_000, EventTimeRule? timeRule = null) =>
        SinkRunner.For(bootstrapServers, Topics.InsightsMetrics, SinkGroup,
            Create(db, registry, logs.CreateLogger("StreamHealth.Sinks." + Name), timeRule), db, logs, sessionTimeoutMs);

    private static PostgresEventWorkload<HealthMetric> Workload(AvroSerDes<HealthMetric> values, EventTimeRule timeRule) => new()
    {
        SinkName = Name,
        Decode = record => values.ReadValue(PostgresEventSink.Value(record), record.Topic),
        DecodeFailure = "cannot decode HealthMetric",
        Refuse = (m, receivedAtMs) =>
            InputRules.CheckId("metric_id", m.metric_id) ?? InputRules.CheckId("user_id", m.user_id)
            ?? timeRule.Check("recorded_at", AvroTime.ToUnixMs(m.event_time_unix_ms), receivedAtMs)
            ?? HealthMetricTypes.Refuse(m.metric, m.value, m.unit),
        EventIdWorkload = EventIdWorkload,
        EventIdField = "metric_id",
        EventKind = "metric (type, time, value or unit differ)",
        EventId = static m => m.metric_id,
        UserId = static m => m.user_id,
        Fingerprint = static m => HealthMetricTypes.Fingerprint(m.metric, AvroTime.ToUnixMs(m.event_time_unix_ms), m.value, m.unit),
        // ON CONFLICT: a retry or a replay of a metric already stored (same id, hence same user and time).
        InsertSql = """
            INSERT INTO streamhealth.health_metrics (user_id, metric_id, event_time, metric, value, unit)
            SELECT u, id, t, m, v, un FROM unnest(@users, @ids, @times, @metrics, @values, @units) AS x(u, id, t, m, v, un)
            ON CONFLICT DO NOTHING
            """,
        AddParameters = static (p, rows) =>
        {
            p.Add(rows.Column("users", static (_, m) => m.user_id));
            p.Add(rows.Column("ids", static (_, m) => m.metric_id));
            p.Add(rows.Timestamps("times", static (_, m) => AvroTime.ToUnixMs(m.event_time_unix_ms)));
            p.Add(rows.Column("metrics", static (_, m) => m.metric));
            p.Add(rows.Column("values", static (_, m) => m.value));
            p.Add(rows.Column("units", static (_, m) => m.unit));
        },
    };
}
