using System.Globalization;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;
using StreamHealth.Runtime.Sinks;
using StreamHealth.Runtime.Storage;
using StreamHealth.Runtime.Validation;
using StreamHealth.Schemas;

namespace StreamHealth.Forecast.Service;

/// <summary>cgm.forecasts → cgm.forecasts table: one row per request id, all-or-nothing per batch. Each request id has
/// one owner whatever its time (<see cref="EventIds"/>, workload <see cref="Workload"/>, fingerprint: user and forecast
/// time): a replayed forecast is stored once, one reusing another user's or another forecast's id is dead-lettered. A
/// record that does not decode or holds what PostgreSQL or the API cannot carry faithfully (control characters in ids
/// or the model version, non-finite values) goes to streamhealth.dead_letters with the reason, in the same transaction,
/// never dropped silently.</summary>
public sealed class ForecastPostgresWriter(NpgsqlDataSource db, ILogger? log = null, EventTimeRule? timeRule = null) : ISinkWriter
{
    private readonly EventTimeRule _timeRule = timeRule ?? EventTimeRule.Default;

    public const string Workload = "forecast";
    public const int MaxModelVersionLength = 128;

    public string Name => "cgm-forecasts-postgres";

    /// <summary>Null when the forecast can be stored, else why (naming the field).</summary>
    public static string? Validate(CgmForecast f)
    {
        if ((InputRules.CheckId("request_id", f.RequestId) ?? InputRules.CheckId("user_id", f.UserId)) is { } badId) return badId;
        if (InputRules.CheckText("model_version", f.ModelVersion, MaxModelVersionLength) is { } badText) return badText;
        if (f.Bands.Any(b => b.GlucoseMgDl.Count != f.MedianMgDl.Count)) return "a band's length differs from the median's";
        if (FirstNonFinite(f.MedianMgDl) is { } m) return $"median_mg_dl[{m}] is not a finite number";
        for (var k = 0; k < f.Bands.Count; k++)
        {
            if (!float.IsFinite(f.Bands[k].Quantile)) return $"bands[{k}].quantile is not a finite number";
            if (FirstNonFinite(f.Bands[k].GlucoseMgDl) is { } b) return $"bands[{k}].glucose_mg_dl[{b}] is not a finite number";
        }
        return null;
    }

    private static int? FirstNonFinite(IReadOnlyList<float> values)
    {
        for (var i = 0; i < values.Count; i++) if (!float.IsFinite(values[i])) return i;
        return null;
    }

    public void Write(IReadOnlyList<SinkRecord> batch)
    {
        var n = batch.Count;
        var ids = new List<string>(n);
        var users = new List<string>(n);
        var times = new List<DateTime>(n);
        var steps = new List<int>(n);
        var horizons = new List<int>(n);
        var levelCounts = new List<int>(n);
        var models = new List<string>(n);
        var samples = new List<int>(n);
        var partitions = new List<int>(n);
        var offsets = new List<long>(n);
        // Arrays travel flattened (one parameter each, unnest cannot return arrays per row) and are sliced per row in SQL.
        var medians = new List<float>(n * 12);
        var levels = new List<float>(n * 4);
        var bands = new List<float>(n * 48);
        var dead = new List<(SinkRecord Record, string Error)>();
        var fingerprints = new List<string>(n);
        var parsed = new List<(SinkRecord Record, CgmForecast Forecast)>(n);
        var wallMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        foreach (var record in batch)
        {
            CgmForecast f;
            try
            {
                f = CgmForecast.Parser.ParseFrom(record.Value ?? throw new FormatException("record has no value"));
            }
            catch (Exception e) when (e is FormatException or Google.Protobuf.InvalidProtocolBufferException)
            {
                dead.Add((record, "cannot decode CgmForecast: " + e.Message));
                continue;
            }
            // The forecast carries its request's timestamp, so this is the judgement the forecaster made of the request.
            var receivedAtMs = EventTimeRule.ReceivedAt(record.TimestampUnixMs, wallMs);
            if ((Validate(f) ?? _timeRule.Check("event_time_unix_ms", f.EventTimeUnixMs, receivedAtMs)) is { } problem)
            {
                dead.Add((record, "forecast cannot be stored: " + problem));
                continue;
            }
            parsed.Add((record, f));
            ids.Add(f.RequestId);
            users.Add(f.UserId);
            fingerprints.Add(f.EventTimeUnixMs.ToString(CultureInfo.InvariantCulture));
        }
        using var connection = db.OpenConnection();
        using var tx = connection.BeginTransaction();
        var claims = EventIds.Claim(connection, tx, Workload, ids, users, fingerprints);
        ids.Clear();
        users.Clear();
        for (var i = 0; i < parsed.Count; i++)
        {
            var (record, f) = parsed[i];
            if (EventIds.ConflictReason(claims[i], "request_id", f.RequestId, "forecast (another forecast time)") is { } conflict)
            {
                dead.Add((record, conflict));
                continue;
            }
            ids.Add(f.RequestId);
            users.Add(f.UserId);
            times.Add(DateTime.UnixEpoch.AddMilliseconds(f.EventTimeUnixMs));
            steps.Add(f.StepMinutes);
            horizons.Add(f.MedianMgDl.Count);
            levelCounts.Add(f.Bands.Count);
            models.Add(f.ModelVersion);
            samples.Add(f.McSamples);
            partitions.Add(record.Partition);
            offsets.Add(record.Offset);
            medians.AddRange(f.MedianMgDl);
            foreach (var band in f.Bands)
            {
                levels.Add(band.Quantile);
                bands.AddRange(band.GlucoseMgDl);
            }
        }
        if (ids.Count > 0)
        {
            // Row i's slices start after the rows before it: running sums of horizon and level counts.
            var medianStart = new List<int>(ids.Count);
            var levelStart = new List<int>(ids.Count);
            var bandStart = new List<int>(ids.Count);
            int m = 1, l = 1, b = 1;
            for (var i = 0; i < ids.Count; i++)
            {
                medianStart.Add(m);
                levelStart.Add(l);
                bandStart.Add(b);
                m += horizons[i];
                l += levelCounts[i];
                b += horizons[i] * levelCounts[i];
            }
            using var insert = new NpgsqlCommand("""
                INSERT INTO cgm.forecasts (request_id, user_id, forecast_time, step_minutes, horizon_steps, median_mg_dl, quantiles,
                    bands_mg_dl, model_version, mc_samples, source_partition, source_offset)
                SELECT (@ids)[i], (@users)[i], (@times)[i], (@steps)[i], (@horizons)[i],
                       (@medians)[(@medianStart)[i] : (@medianStart)[i] + (@horizons)[i] - 1],
                       coalesce((@levels)[(@levelStart)[i] : (@levelStart)[i] + (@levelCounts)[i] - 1], '{}'),
                       coalesce((@bands)[(@bandStart)[i] : (@bandStart)[i] + (@horizons)[i] * (@levelCounts)[i] - 1], '{}'),
                       (@models)[i], (@samples)[i], (@partitions)[i], (@offsets)[i]
                FROM generate_series(1, cardinality(@ids)) AS i
                ON CONFLICT (request_id, forecast_time) DO NOTHING
                """, connection, tx);
            insert.Parameters.AddWithValue("ids", ids);
            insert.Parameters.AddWithValue("users", users);
            insert.Parameters.Add(new NpgsqlParameter("times", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { Value = times });
            insert.Parameters.AddWithValue("steps", steps);
            insert.Parameters.AddWithValue("horizons", horizons);
            insert.Parameters.AddWithValue("levelCounts", levelCounts);
            insert.Parameters.Add(new NpgsqlParameter("medians", NpgsqlDbType.Array | NpgsqlDbType.Real) { Value = medians });
            insert.Parameters.Add(new NpgsqlParameter("levels", NpgsqlDbType.Array | NpgsqlDbType.Real) { Value = levels });
            insert.Parameters.Add(new NpgsqlParameter("bands", NpgsqlDbType.Array | NpgsqlDbType.Real) { Value = bands });
            insert.Parameters.AddWithValue("medianStart", medianStart);
            insert.Parameters.AddWithValue("levelStart", levelStart);
            insert.Parameters.AddWithValue("bandStart", bandStart);
            insert.Parameters.AddWithValue("models", models);
            insert.Parameters.AddWithValue("samples", samples);
            insert.Parameters.AddWithValue("partitions", partitions);
            insert.Parameters.AddWithValue("offsets", offsets);
            insert.ExecuteNonQuery();
        }
        foreach (var (record, message) in dead)
            DeadLetters.Insert(connection, tx, record, Name, message, log);
        tx.Commit();
    }
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
        var fields = new List<RedisValue>(16 + 2 * f.Bands.Count)
        {
            "user_id", f.UserId,
            RedisLatestHash.EventTimeField, f.EventTimeUnixMs,
            "request_id", f.RequestId,
            "step_minutes", f.StepMinutes,
            "model_version", f.ModelVersion,
            "mc_samples", f.McSamples,
            "median_mg_dl", Join(f.MedianMgDl),
            "quantiles", string.Join(',', f.Bands.Select(b => b.Quantile.ToString("R", CultureInfo.InvariantCulture))),
        };
        foreach (var band in f.Bands)
        {
            fields.Add(BandField(band.Quantile));
            fields.Add(Join(band.GlucoseMgDl));
        }
        return RedisLatestHash.WriteAsync(redis, Key(f.UserId), f.EventTimeUnixMs, Ttl, [.. fields]);
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

/// <summary>cgm.forecasts → <see cref="ForecastCache"/>.</summary>
public static class ForecastRedisWriter
{
    public static ISinkWriter Create(IConnectionMultiplexer redis) => new RedisWriteThrough<CgmForecast>(
        "cgm-forecasts-redis", "forecast", redis, CgmForecast.Parser, f => f.UserId.Length > 0, ForecastCache.WriteAsync);
}
