using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;
using StreamHealth.Runtime.SchemaRegistry;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Streams;
using StreamHealth.Runtime.Validation;
using CgmForecast = StreamHealth.Schemas.Avro.Cgm.CgmForecast;

namespace StreamHealth.Forecast.Service;

/// <summary>cgm.forecasts → cgm.forecasts table (<see cref="PostgresEventSink{T}"/>): one row per request id. Each request
/// id has one owner whatever its time (workload <see cref="Workload"/>, fingerprint: the forecast time; the user is
/// compared too): a replayed forecast is stored once, one reusing another user's or another forecast's id is
/// dead-lettered. So is a record that does not decode or holds what PostgreSQL or the API cannot carry faithfully
/// (control characters in ids or the model version, non-finite values, a time outside the event-time rule). Values are
/// Avro CgmForecast records (Confluent wire format) read through the process's schema registry connection.</summary>
public static class ForecastPostgresWriter
{
    public const string Name = "cgm-forecasts-postgres";
    public const string Workload = "forecast";
    public const int MaxModelVersionLength = 128;

    public static ISinkWriter Create(NpgsqlDataSource db, SchemaRegistryConnection registry, ILogger? log = null, EventTimeRule? timeRule = null) =>
        new PostgresEventSink<CgmForecast>(db, Describe(registry.SerDes<CgmForecast>(), timeRule ?? EventTimeRule.Default), log);

    /// <summary>Null when the forecast can be stored, else why (naming the field).</summary>
    public static string? Validate(CgmForecast f)
    {
        if ((InputRules.CheckId("request_id", f.request_id) ?? InputRules.CheckId("user_id", f.user_id)) is { } badId) return badId;
        if (InputRules.CheckText("model_version", f.model_version ?? "", MaxModelVersionLength) is { } badText) return badText;
        var median = f.median_mg_dl ?? [];
        var bands = f.bands ?? [];
        if (bands.Any(b => (b.glucose_mg_dl?.Count ?? 0) != median.Count)) return "a band's length differs from the median's";
        if (FirstNonFinite(median) is { } m) return $"median_mg_dl[{m}] is not a finite number";
        for (var k = 0; k < bands.Count; k++)
        {
            if (!float.IsFinite(bands[k].quantile)) return $"bands[{k}].quantile is not a finite number";
            if (FirstNonFinite(bands[k].glucose_mg_dl ?? []) is { } b) return $"bands[{k}].glucose_mg_dl[{b}] is not a finite number";
        }
        return null;
    }

    private static int? FirstNonFinite(IList<float> values)
    {
        for (var i = 0; i < values.Count; i++) if (!float.IsFinite(values[i])) return i;
        return null;
    }

    private static PostgresEventWorkload<CgmForecast> Describe(AvroSerDes<CgmForecast> values, EventTimeRule timeRule) => new()
    {
        SinkName = Name,
        Decode = record => values.ReadValue(record.Value, record.Topic),
        DecodeFailure = "cannot decode CgmForecast",
        // The forecast carries its request's timestamp, so this is the judgement the forecaster made of the request.
        Refuse = (f, receivedAtMs) => (Validate(f) ?? timeRule.Check("event_time_unix_ms", TimeMs(f), receivedAtMs)) is { } problem
            ? "forecast cannot be stored: " + problem : null,
        EventIdWorkload = Workload,
        EventIdField = "request_id",
        EventKind = "forecast (another forecast time)",
        EventId = static f => f.request_id,
        UserId = static f => f.user_id,
        // Unix milliseconds as on Protobuf: the fingerprints already in streamhealth.event_ids still match.
        Fingerprint = static f => TimeMs(f).ToString(CultureInfo.InvariantCulture),
        // Arrays travel flattened (one parameter each, unnest cannot return arrays per row) and are sliced per row:
        // row i's slices start (1-based) after the rows before it.
        InsertSql = """
            INSERT INTO cgm.forecasts (request_id, user_id, forecast_time, step_minutes, horizon_steps, median_mg_dl, quantiles,
                bands_mg_dl, model_version, mc_samples, source_partition, source_offset)
            SELECT (@ids)[i], (@users)[i], (@times)[i], (@steps)[i], (@horizons)[i],
                   (@medians)[(@medianStart)[i] : (@medianStart)[i] + (@horizons)[i] - 1],
                   coalesce((@levels)[(@levelStart)[i] : (@levelStart)[i] + (@levelCounts)[i] - 1], '{}'),
                   coalesce((@bands)[(@bandStart)[i] : (@bandStart)[i] + (@horizons)[i] * (@levelCounts)[i] - 1], '{}'),
                   (@models)[i], (@samples)[i], (@partitions)[i], (@offsets)[i]
            FROM generate_series(1, cardinality(@ids)) AS i
            ON CONFLICT (request_id, forecast_time) DO NOTHING
            """,
        AddParameters = static (p, rows) =>
        {
            p.Add(rows.Column("ids", static (_, f) => f.request_id));
            p.Add(rows.Column("users", static (_, f) => f.user_id));
            p.Add(rows.Timestamps("times", static (_, f) => TimeMs(f)));
            p.Add(rows.Column("steps", static (_, f) => f.step_minutes));
            p.Add(rows.Column("horizons", static (_, f) => f.median_mg_dl.Count));
            p.Add(rows.Column("levelCounts", static (_, f) => f.bands.Count));
            p.Add(rows.Column("models", static (_, f) => f.model_version));
            p.Add(rows.Column("samples", static (_, f) => f.mc_samples));
            p.Add(rows.Column("partitions", static (record, _) => record.Partition));
            p.Add(rows.Column("offsets", static (record, _) => record.Offset));
            AddFlattened(p, rows);
        },
    };

    /// <summary>The medians, band quantiles and band values of every row, each one real[] in row order, and where each
    /// row's slice starts.</summary>
    private static void AddFlattened(NpgsqlParameterCollection p, EventRows<CgmForecast> rows)
    {
        var n = rows.Count;
        var medians = new List<float>(n * 12);
        var levels = new List<float>(n * 4);
        var bands = new List<float>(n * 48);
        var medianStart = new int[n];
        var levelStart = new int[n];
        var bandStart = new int[n];
        for (var i = 0; i < n; i++)
        {
            var f = rows[i].Value;
            // PostgreSQL arrays are 1-based.
            medianStart[i] = medians.Count + 1;
            levelStart[i] = levels.Count + 1;
            bandStart[i] = bands.Count + 1;
            medians.AddRange(f.median_mg_dl);
            foreach (var band in f.bands)
            {
                levels.Add(band.quantile);
                bands.AddRange(band.glucose_mg_dl);
            }
        }
        p.Add(new NpgsqlParameter("medians", NpgsqlDbType.Array | NpgsqlDbType.Real) { Value = medians });
        p.Add(new NpgsqlParameter("levels", NpgsqlDbType.Array | NpgsqlDbType.Real) { Value = levels });
        p.Add(new NpgsqlParameter("bands", NpgsqlDbType.Array | NpgsqlDbType.Real) { Value = bands });
        p.AddWithValue("medianStart", medianStart);
        p.AddWithValue("levelStart", levelStart);
        p.AddWithValue("bandStart", bandStart);
    }

    private static long TimeMs(CgmForecast f) => AvroTime.ToUnixMs(f.event_time_unix_ms);
}

/// <summary>A user's latest forecast as the cache holds it: median and bands per step (mg/dL).</summary>
public sealed record ForecastValue(string UserId, string RequestId, long EventTimeUnixMs, int StepMinutes, float[] MedianMgDl,
    IReadOnlyList<(float Quantile, float[] GlucoseMgDl)> Bands, string ModelVersion, int McSamples);

/// <summary>Redis hash <c>streamhealth:cgm:forecast:{userId}</c>: the user's latest forecast, written through from
/// cgm.forecasts with compare-and-set on event time (a replayed or older forecast never overwrites a newer one),
/// expiring a day after the last write (a forecast an hour old is history, not a forecast). Series are comma-separated
/// mg/dL; a band's field is <c>q{percent}_mg_dl</c>, e.g. <c>q5_mg_dl</c>, <c>q95_mg_dl</c>.</summary>
public static class ForecastCache
{
    public const string KeyPrefix = "streamhealth:cgm:forecast:";
    public static readonly TimeSpan Ttl = TimeSpan.FromDays(1);

    public static RedisKey Key(string userId) => KeyPrefix + userId;

    public static string BandField(float quantile) => $"q{(quantile * 100).ToString("0.###", CultureInfo.InvariantCulture)}_mg_dl";

    public static Task<RedisResult> WriteAsync(IDatabaseAsync redis, CgmForecast f)
    {
        var timeMs = AvroTime.ToUnixMs(f.event_time_unix_ms);
        var fields = new List<RedisValue>(16 + 2 * f.bands.Count)
        {
            "user_id", f.user_id,
            RedisLatestHash.EventTimeField, timeMs,
            "request_id", f.request_id,
            "step_minutes", f.step_minutes,
            "model_version", f.model_version,
            "mc_samples", f.mc_samples,
            "median_mg_dl", Join(f.median_mg_dl),
            "quantiles", string.Join(',', f.bands.Select(b => b.quantile.ToString("R", CultureInfo.InvariantCulture))),
        };
        foreach (var band in f.bands)
        {
            fields.Add(BandField(band.quantile));
            fields.Add(Join(band.glucose_mg_dl));
        }
        return RedisLatestHash.WriteAsync(redis, Key(f.user_id), timeMs, Ttl, [.. fields]);
    }

    public static async Task<ForecastValue?> ReadAsync(IDatabaseAsync redis, string userId)
    {
        var entries = await redis.HashGetAllAsync(Key(userId));
        if (entries.Length == 0) return null;
        var d = entries.ToDictionary(e => (string)e.Name!, e => (string)e.Value!);
        var quantiles = d["quantiles"].Length == 0 ? [] : d["quantiles"].Split(',').Select(s => float.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        return new ForecastValue(d["user_id"], d["request_id"], long.Parse(d[RedisLatestHash.EventTimeField], CultureInfo.InvariantCulture),
            int.Parse(d["step_minutes"], CultureInfo.InvariantCulture), Parse(d["median_mg_dl"]),
            [.. quantiles.Select(q => (q, Parse(d[BandField(q)])))], d["model_version"], int.Parse(d["mc_samples"], CultureInfo.InvariantCulture));
    }

    private static string Join(IEnumerable<float> values) => string.Join(',', values.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));

    private static float[] Parse(string values) => values.Length == 0 ? [] : [.. values.Split(',').Select(s => float.Parse(s, CultureInfo.InvariantCulture))];
}

/// <summary>cgm.forecasts → <see cref="ForecastCache"/>; values are Avro CgmForecast records read through <c>registry</c>.</summary>
public static class ForecastRedisWriter
{
    public const string Name = "cgm-forecasts-redis";

    public static ISinkWriter Create(IConnectionMultiplexer redis, SchemaRegistryConnection registry)
    {
        var values = registry.SerDes<CgmForecast>();
        return new RedisWriteThrough<CgmForecast>(Name, "forecast", redis,
            record => values.ReadValue(record.Value, record.Topic), f => !string.IsNullOrEmpty(f.user_id), ForecastCache.WriteAsync);
    }
}
