using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;

namespace StreamHealth.Cgm.Pipeline;

/// <summary>cgm.readings → cgm.readings table (<see cref="PostgresEventSink{T}"/>): one row per reading id. Each reading id
/// has one owner whatever its time (workload <see cref="Workload"/>): a retry of the same reading is stored once, and an
/// id already used by another user or for another reading (another time, type or value) is dead-lettered, as is a
/// record that does not decode. Records the CGM topology dead-letters (same <see cref="CgmReadings.Validate"/> rule,
/// judged at the same receiving time) are skipped here.</summary>
public static class CgmReadingsPostgresWriter
{
    public const string Name = "cgm-readings-postgres";
    public const string Workload = "cgm-reading";

    public static ISinkWriter Create(NpgsqlDataSource db, ILogger? log = null, EventTimeRule? timeRule = null) =>
        new PostgresEventSink<(string KeyUserId, CgmReading Reading)>(db, Describe(timeRule ?? EventTimeRule.Default), log);

    // The user is the record key's (the topology checks the reading's own user against it).
    private static PostgresEventWorkload<(string KeyUserId, CgmReading Reading)> Describe(EventTimeRule timeRule) => new()
    {
        SinkName = Name,
        Decode = static record => (UserKey.Parser.ParseFrom(PostgresEventSink.Key(record)).UserId,
                                   CgmReading.Parser.ParseFrom(PostgresEventSink.Value(record))),
        DecodeFailure = "cannot decode cgm.readings record",
        // In cgm.readings.dlq with the reason: the topology judged the record by the same rule at the same receiving time.
        Skip = (r, receivedAtMs) => CgmReadings.Validate(r.KeyUserId, r.Reading, timeRule, receivedAtMs) is not null,
        EventIdWorkload = Workload,
        EventIdField = "reading_id",
        EventKind = "reading (another time, type or value)",
        EventId = static r => r.Reading.ReadingId,
        UserId = static r => r.KeyUserId,
        Fingerprint = static r => CgmReadings.Fingerprint(r.Reading),
        InsertSql = """
            INSERT INTO cgm.readings (reading_id, user_id, reading_time, original_time, event_type, glucose_mg_dl,
                quality_flags, source_format, carbs_g, insulin_slow_u, insulin_fast_u, exercise_min, source_partition, source_offset)
            SELECT * FROM unnest(@ids, @users, @times, @originals, @types, @glucose, @flags, @formats, @carbs, @slow, @fast,
                                 @exercise, @partitions, @offsets)
            ON CONFLICT (reading_id, reading_time) DO NOTHING
            """,
        AddParameters = static (p, rows) =>
        {
            p.Add(rows.Column("ids", static (_, r) => r.Reading.ReadingId));
            p.Add(rows.Column("users", static (_, r) => r.KeyUserId));
            p.Add(rows.Timestamps("times", static (_, r) => r.Reading.EventTimeUnixMs));
            p.Add(rows.Timestamps("originals", static (_, r) =>
                r.Reading.OriginalTimeUnixMs == 0 ? r.Reading.EventTimeUnixMs : r.Reading.OriginalTimeUnixMs));
            p.Add(rows.Column("types", static (_, r) => CgmReadings.EventTypeName(r.Reading.EventType)));
            p.Add(rows.Column("glucose", static (_, r) => Nullable(r.Reading.GlucoseMgDl), NpgsqlDbType.Double));
            p.Add(rows.Column("flags", static (_, r) => (short)r.Reading.QualityFlags));
            p.Add(rows.Column("formats", static (_, r) => r.Reading.SourceFormat.Length == 0 ? "producer" : r.Reading.SourceFormat));
            p.Add(rows.Column("carbs", static (_, r) => Nullable(r.Reading.CarbsG), NpgsqlDbType.Double));
            p.Add(rows.Column("slow", static (_, r) => Nullable(r.Reading.InsulinSlowU), NpgsqlDbType.Double));
            p.Add(rows.Column("fast", static (_, r) => Nullable(r.Reading.InsulinFastU), NpgsqlDbType.Double));
            p.Add(rows.Column("exercise", static (_, r) => Nullable(r.Reading.ExerciseMin), NpgsqlDbType.Double));
            p.Add(rows.Column("partitions", static (record, _) => record.Partition));
            p.Add(rows.Column("offsets", static (record, _) => record.Offset));
        },
    };

    /// <summary>NaN is how a reading says "not measured"; the column says it with NULL.</summary>
    private static double? Nullable(double v) => double.IsNaN(v) ? null : v;
}

/// <summary>A user's latest aligned glucose and trend as the gateway serves it.</summary>
public sealed record CgmLatestValue(string UserId, long EventTimeUnixMs, double GlucoseMgDl, double RateMgDlPerMin,
    string TrendArrow, uint QualityFlags, int WindowSteps, bool ForecastWindowComplete);

/// <summary>Redis hash <c>streamhealth:cgm:latest:{userId}</c>: the user's latest step and trend arrow, written
/// through from cgm.latest with compare-and-set on event time, expiring 7 days after the last write.</summary>
public static class CgmLatestCache
{
    public const string KeyPrefix = "streamhealth:cgm:latest:";
    public static readonly TimeSpan Ttl = TimeSpan.FromDays(7);

    public static RedisKey Key(string userId) => KeyPrefix + userId;

    public static Task<RedisResult> WriteAsync(IDatabaseAsync redis, CgmLatest latest) =>
        RedisLatestHash.WriteAsync(redis, Key(latest.UserId), latest.EventTimeUnixMs, Ttl,
        [
            "user_id", latest.UserId,
            RedisLatestHash.EventTimeField, latest.EventTimeUnixMs,
            "glucose_mg_dl", F(latest.GlucoseMgDl),
            "rate_mg_dl_per_min", F(latest.RateMgDlPerMin),
            "trend_arrow", latest.TrendArrow,
            "quality_flags", latest.QualityFlags,
            "window_steps", latest.WindowSteps,
            "forecast_window_complete", latest.ForecastWindowComplete ? 1 : 0,
        ]);

    public static async Task<CgmLatestValue?> ReadAsync(IDatabaseAsync redis, string userId)
    {
        var fields = await redis.HashGetAllAsync(Key(userId));
        if (fields.Length == 0) return null;
        var d = fields.ToDictionary(f => (string)f.Name!, f => (string)f.Value!);
        return new CgmLatestValue(d["user_id"], long.Parse(d[RedisLatestHash.EventTimeField], CultureInfo.InvariantCulture),
            P(d["glucose_mg_dl"]), P(d["rate_mg_dl_per_min"]), d["trend_arrow"], uint.Parse(d["quality_flags"], CultureInfo.InvariantCulture),
            int.Parse(d["window_steps"], CultureInfo.InvariantCulture), d["forecast_window_complete"] == "1");
    }

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
    private static double P(string s) => double.Parse(s, CultureInfo.InvariantCulture);
}

/// <summary>cgm.latest → <see cref="CgmLatestCache"/>.</summary>
public static class CgmLatestRedisWriter
{
    public static ISinkWriter Create(IConnectionMultiplexer redis) => new RedisWriteThrough<CgmLatest>(
        "cgm-latest-redis", "latest-glucose", redis, CgmLatest.Parser, l => l.UserId.Length > 0, CgmLatestCache.WriteAsync);
}
