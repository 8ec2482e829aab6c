using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using CgmLatest = StreamHealth.Schemas.Avro.Cgm.CgmLatest;
using CgmReading = StreamHealth.Schemas.Avro.Cgm.CgmReading;
using UserKey = StreamHealth.Schemas.Avro.Common.UserKey;

namespace StreamHealth.Cgm.Pipeline;

/// <summary>cgm.readings → cgm.readings table (<see cref="PostgresEventSink{T}"/>): one row per reading id. Each reading id
/// has one owner whatever its time (workload <see cref="Workload"/>): a retry of the same reading is stored once, and an
/// id already used by another user or for another reading (another time, type or value) is dead-lettered, as is a
/// record that does not decode. Records the CGM topology dead-letters (same <see cref="CgmReadings.Validate"/> rule,
/// judged at the same receiving time) are skipped here. Keys and values are Avro (Confluent wire format) read through the
/// process's schema registry connection; an unknown schema id is a record that does not decode (archived naming the id),
/// a registry that cannot be reached an outage (the runner retries).</summary>
public static class CgmReadingsPostgresWriter
{
    public const string Name = "cgm-readings-postgres";
    public const string Workload = "cgm-reading";

    public static ISinkWriter Create(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null, EventTimeRule? timeRule = null) =>
        new PostgresEventSink<(string KeyUserId, CgmReading Reading)>(db,
            Describe(registry.SerDes<UserKey>(), registry.SerDes<CgmReading>(), timeRule ?? EventTimeRule.Default), log);

    // The user is the record key's (the topology checks the reading's own user against it).
    private static PostgresEventWorkload<(string KeyUserId, CgmReading Reading)> Describe(AvroSerDes<UserKey> keys, AvroSerDes<CgmReading> values,
        EventTimeRule timeRule) => new()
    {
        SinkName = Name,
        Decode = record => (keys.ReadKey(record.Key, record.Topic).user_id, values.ReadValue(record.Value, record.Topic)),
        DecodeFailure = "cannot decode cgm.readings record",
        // In cgm.readings.dlq with the reason: the topology judged the record by the same rule at the same receiving time.
        Skip = (r, receivedAtMs) => CgmReadings.Validate(r.KeyUserId, r.Reading, timeRule, receivedAtMs) is not null,
        EventIdWorkload = Workload,
        EventIdField = "reading_id",
        EventKind = "reading (another time, type or value)",
        EventId = static r => r.Reading.reading_id,
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
            p.Add(rows.Column("ids", static (_, r) => r.Reading.reading_id));
            p.Add(rows.Column("users", static (_, r) => r.KeyUserId));
            p.Add(rows.Timestamps("times", static (_, r) => CgmReadings.EventTimeMs(r.Reading)));
            // Not known (null): the event time stands for it.
            p.Add(rows.Timestamps("originals", static (_, r) =>
                CgmReadings.OriginalTimeMs(r.Reading) is var original and not 0 ? original : CgmReadings.EventTimeMs(r.Reading)));
            p.Add(rows.Column("types", static (_, r) => CgmReadings.EventTypeName(r.Reading.event_type)));
            p.Add(rows.Column("glucose", static (_, r) => Nullable(r.Reading.glucose_mg_dl), NpgsqlDbType.Double));
            p.Add(rows.Column("flags", static (_, r) => (short)r.Reading.quality_flags));
            p.Add(rows.Column("formats", static (_, r) => string.IsNullOrEmpty(r.Reading.source_format) ? "producer" : r.Reading.source_format));
            p.Add(rows.Column("carbs", static (_, r) => Nullable(r.Reading.carbs_g), NpgsqlDbType.Double));
            p.Add(rows.Column("slow", static (_, r) => Nullable(r.Reading.insulin_slow_u), NpgsqlDbType.Double));
            p.Add(rows.Column("fast", static (_, r) => Nullable(r.Reading.insulin_fast_u), NpgsqlDbType.Double));
            p.Add(rows.Column("exercise", static (_, r) => Nullable(r.Reading.exercise_min), NpgsqlDbType.Double));
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

    /// <summary>Writes a cgm.latest record (quality flags as the unsigned bit set they are, as on Protobuf).</summary>
    public static Task<RedisResult> WriteAsync(IDatabaseAsync redis, CgmLatest latest)
    {
        var timeMs = AvroTime.ToUnixMs(latest.event_time_unix_ms);
        return RedisLatestHash.WriteAsync(redis, Key(latest.user_id), timeMs, Ttl,
        [
            "user_id", latest.user_id,
            RedisLatestHash.EventTimeField, timeMs,
            "glucose_mg_dl", F(latest.glucose_mg_dl),
            "rate_mg_dl_per_min", F(latest.rate_mg_dl_per_min),
            "trend_arrow", latest.trend_arrow,
            "quality_flags", (uint)latest.quality_flags,
            "window_steps", latest.window_steps,
            "forecast_window_complete", latest.forecast_window_complete ? 1 : 0,
        ]);
    }

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

/// <summary>cgm.latest → <see cref="CgmLatestCache"/>; values are Avro CgmLatest records (Confluent wire format) read
/// through <c>registry</c>.</summary>
public static class CgmLatestRedisWriter
{
    public const string Name = "cgm-latest-redis";

    public static ISinkWriter Create(IConnectionMultiplexer redis, SchemaRegistryConnection registry)
    {
        var values = registry.SerDes<CgmLatest>();
        return new RedisWriteThrough<CgmLatest>(Name, "latest-glucose", redis,
            record => values.ReadValue(record.Value, record.Topic), l => !string.IsNullOrEmpty(l.user_id), CgmLatestCache.WriteAsync);
    }
}
