using Microsoft.Extensions.Logging;
using Npgsql;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;
using NutritionLog = StreamHealth.Schemas.Avro.Insights.NutritionLog;

namespace StreamHealth.Insights.Nutrition;

/// <summary>insights.nutrition → insights.nutrition_logs (<see cref="PostgresEventSink{T}"/>): one row per log id. A log id
/// is one meal of one user whatever its time (workload <see cref="EventIdWorkload"/>, which the gateway claims with too):
/// a retried or replayed record is stored once; one that does not decode, breaks <see cref="NutritionRules"/> or the
/// event-time rule, or reuses another user's or another meal's id is dead-lettered.</summary>
public static class NutritionLogPostgresWriter
{
    public const string Name = "insights-nutrition-postgres";
    public const string EventIdWorkload = "nutrition";
    public const string SinkGroup = "streamhealth-insights-nutrition-postgres";

    public static ISinkWriter Create(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null, EventTimeRule? timeRule = null) =>
        new PostgresEventSink<NutritionLog>(db, Workload(registry.SerDes<NutritionLog>(), timeRule ?? EventTimeRule.Default), log);

    /// <summary>The sink with its runner, as every workload's result sinks are (own consumer group, dead letters in PostgreSQL).</summary>
    public static SinkRunner CreateSink(string bootstrapServers, NpgsqlDataSource db, SchemaRegistryConnection registry, ILoggerFactory logs,
        int sessionTimeoutMs = 6_000, EventTimeRule? timeRule = null) =>
        SinkRunner.For(bootstrapServers, Topics.InsightsNutrition, SinkGroup,
            Create(db, registry, logs.CreateLogger("StreamHealth.Sinks." + Name), timeRule), db, logs, sessionTimeoutMs);

    public static MealNutrients Nutrients(NutritionLog log) =>
        new(log.calories_kcal, log.protein_g, log.carbohydrate_g, log.fat_g, log.fiber_g, log.sugar_g, log.sodium_mg);

    public static string Fingerprint(NutritionLog log) =>
        NutritionRules.Fingerprint(log.meal, AvroTime.ToUnixMs(log.event_time_unix_ms), log.description, Nutrients(log));

    private static PostgresEventWorkload<NutritionLog> Workload(AvroSerDes<NutritionLog> values, EventTimeRule timeRule) => new()
    {
        SinkName = Name,
        Decode = record => values.ReadValue(PostgresEventSink.Value(record), record.Topic),
        DecodeFailure = "cannot decode NutritionLog",
        Refuse = (n, receivedAtMs) =>
            InputRules.CheckId("log_id", n.log_id) ?? InputRules.CheckId("user_id", n.user_id)
            ?? timeRule.Check("eaten_at", AvroTime.ToUnixMs(n.event_time_unix_ms), receivedAtMs)
            ?? NutritionRules.Refuse(n.meal, n.description, Nutrients(n)),
        EventIdWorkload = EventIdWorkload,
        EventIdField = "log_id",
        EventKind = "meal (time, meal, description or nutrients differ)",
        EventId = static n => n.log_id,
        UserId = static n => n.user_id,
        Fingerprint = Fingerprint,
        // ON CONFLICT: a retry or a replay of a meal already stored (same id, hence same user and time).
        InsertSql = """
            INSERT INTO insights.nutrition_logs (user_id, log_id, eaten_at, meal, description, calories_kcal, protein_g, carbohydrate_g,
                                                 fat_g, fiber_g, sugar_g, sodium_mg)
            SELECT * FROM unnest(@users, @ids, @times, @meals, @descriptions, @calories, @protein, @carbohydrate, @fat, @fiber, @sugar, @sodium)
            ON CONFLICT DO NOTHING
            """,
        AddParameters = static (p, rows) =>
        {
            p.Add(rows.Column("users", static (_, n) => n.user_id));
            p.Add(rows.Column("ids", static (_, n) => n.log_id));
            p.Add(rows.Timestamps("times", static (_, n) => AvroTime.ToUnixMs(n.event_time_unix_ms)));
            p.Add(rows.Column("meals", static (_, n) => n.meal));
            p.Add(rows.Column("descriptions", static (_, n) => n.description));
            p.Add(rows.Column("calories", static (_, n) => n.calories_kcal));
            p.Add(rows.Column("protein", static (_, n) => n.protein_g));
            p.Add(rows.Column("carbohydrate", static (_, n) => n.carbohydrate_g));
            p.Add(rows.Column("fat", static (_, n) => n.fat_g));
            p.Add(rows.Column("fiber", static (_, n) => n.fiber_g, NpgsqlTypes.NpgsqlDbType.Double));
            p.Add(rows.Column("sugar", static (_, n) => n.sugar_g, NpgsqlTypes.NpgsqlDbType.Double));
            p.Add(rows.Column("sodium", static (_, n) => n.sodium_mg, NpgsqlTypes.NpgsqlDbType.Double));
        },
    };
}
